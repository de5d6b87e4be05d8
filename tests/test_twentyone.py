"""21 Points: the referee's rules (property-tested), the exact optimal policy, the function
base that computes it in the sandbox, and the task through ``run`` and ``eval``."""
import json
import math
import random

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import ldengine.cli as cli_module
from ldengine.agents import AgentContext, expert_agent
from ldengine.functionbase import FunctionBase
from ldengine_plugins.twentyone.rules import (CARDS, P, Hand, best, dealer_final, hand_value, optimal_choice,
                                     optimal_return, settle)

cards = st.lists(st.sampled_from(CARDS), min_size=2, max_size=8)
choices = st.lists(st.sampled_from(["hit", "stand", "fold", "", None, 3]), min_size=1, max_size=8)


def run_cli(*args):
    return CliRunner().invoke(cli_module.cli, list(args), catch_exceptions=False)


@given(cards)
def test_an_ace_counts_eleven_only_when_that_does_not_bust(hand):
    """It values a hand as the best total not over 21 that some aces at 11 give."""
    totals = [sum(hand) + 10 * k for k in range(hand.count(1) + 1)]
    good = [t for t in totals if t <= 21]
    total, soft = hand_value(hand)
    assert total == (max(good) if good else sum(hand))
    assert soft == (bool(good) and max(good) != sum(hand))


@settings(max_examples=200)
@given(st.integers(0, 10**6), choices)
def test_the_referee_counts_a_violation_for_every_bad_or_late_choice(seed, plan):
    """It counts one violation per choice that is not hit/stand (the player then stands)
    and per choice after the hand ended; a bust loses at once; the dealer ends on 17+."""
    hand, expected = Hand.deal(seed), 0
    for choice in plan:
        late = hand.over
        legal = hand.act(choice)
        expected += late or choice not in ("hit", "stand")
        assert legal == (not late and choice in ("hit", "stand"))
    assert hand.violations == expected
    if hand.over:
        player = hand_value(hand.player)[0]
        assert hand.result in (-1, 0, 1)
        if player > 21:
            assert hand.result == -1 and len(hand.dealer) == 2
        else:
            assert hand_value(hand.dealer)[0] >= 17
            assert hand.result == settle(player, hand_value(hand.dealer)[0])


def test_the_dealer_distribution_and_the_optimal_return_are_exact():
    """It gives each shown card a distribution of final totals summing to exactly 1, and an
    optimal return that a 20,000-hand simulation of the optimal policy confirms."""
    for shown in CARDS:
        assert sum(dealer_final(shown)) == 1
    assert sum(P.values()) == 1
    value = float(optimal_return())
    assert -0.06 < value < -0.03
    rng, total, n = random.Random(7), 0, 20_000
    for _ in range(n):
        hand = Hand.deal(rng.randrange(10**9))
        while not hand.over:
            hand.act(optimal_choice(hand.player, hand.dealer[0]))
        total += hand.result
    assert abs(total / n - value) < 4 * 1.0 / math.sqrt(n)


@pytest.mark.slow
def test_the_function_base_decides_like_the_optimal_policy_on_every_hand(registry):
    """It runs the manual's pipeline in the sandbox on every player hand (each sum, with and
    without an ace) against every shown card: its choice is always the optimal one."""
    task = registry.get("tasks", "twentyone").obj
    base = FunctionBase.build("twentyone", registry.modules_for("twentyone"))
    agent = expert_agent(AgentContext(task, base))
    hands = [[a, b] for a in CARDS for b in CARDS if a <= b] + [[10, 2, c] for c in range(2, 10)]
    hands += [[1, 1, c] for c in CARDS]
    checked = 0
    for hand in hands:
        for shown in CARDS:
            assert agent.act({"player": hand, "dealer": shown}) == optimal_choice(hand, shown), (hand, shown)
            checked += 1
    assert checked > 600 and agent.stats()["selection_accuracy"] == 1.0


def test_every_twentyone_example_in_the_manual_holds_in_the_sandbox(registry):
    base = FunctionBase.build("twentyone", registry.modules_for("twentyone"))
    examples = [(e.name, ex) for e in base.entries.values() for ex in e.examples]
    assert len(examples) >= len(base) >= 8
    for name, ex in examples:
        result = base.call(name, *ex.args)
        assert result.ok and result.value == ex.expected, (name, ex.text, result)
    stages = {e.stage for e in base.entries.values()}
    assert set(registry.get("tasks", "twentyone").obj.pipeline) <= stages and "dealer.decide" in stages


def test_the_expected_returns_agree_with_the_exact_ones(registry):
    """It computes the returns of standing and hitting in the sandbox as the exact fractions do."""
    base = FunctionBase.build("twentyone", registry.modules_for("twentyone"))
    for hand, shown in [([10, 6], 10), ([1, 6], 9), ([10, 2], 4), ([5, 3], 1)]:
        obs = base.call("hand_total", {"player": hand, "dealer": shown}).value
        obs = base.call("dealer_final_totals", obs).value
        obs = base.call("stand_value", obs).value
        obs = base.call(base.oracle("player.hit", obs).name, obs).value
        stand, hit = best(sum(hand), 1 in hand, shown)
        assert abs(obs["ev_stand"] - float(stand)) < 1e-12 and abs(obs["ev_hit"] - float(hit)) < 1e-12


def test_run_and_eval_play_hands_and_report_the_optimal_return(tmp_path):
    """``run twentyone --hands`` prints the expected return next to the exact optimum;
    ``eval`` writes a table whose last row is the optimal policy."""
    result = run_cli("run", "twentyone", "--agent", "expert", "--hands", "40", "--quiet",
                     "--json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    assert "optimal policy, exact: -0.0466" in result.output and "evader" not in result.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["games"] == 40 and summary["agreement"] == 1.0 and summary["violations"] == 0
    out = tmp_path / "eval"
    result = run_cli("eval", "twentyone", "--agents", "expert", "--hands", "30", "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    table = (out / "table.md").read_text()
    assert "| Agent | Win | Push | Loss | Expected Return per Hand |" in table
    assert "| optimal policy (exact) |" in table and "-0.0466 (exact)" in table
    rows = [json.loads(line) for line in (out / "games.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and all(r["outcome"] in ("win", "push", "loss") for r in rows)


def test_the_untuned_student_plays_in_text_and_bad_answers_are_violations(tmp_path):
    """It asks the real student "hit or stand?" each decision; an answer with neither word is
    a violation (the player stands), so violations equal the unparseable answers."""
    result = run_cli("run", "twentyone", "--agent", "student", "--hands", "6", "--quiet",
                     "--json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["games"] == 6 and s["steps_answered"] >= 6
    assert s["violations"] == s["unparseable_answers"]


def test_kd_data_are_the_experts_choices_in_the_students_words(registry):
    """It turns every decision of seeded expert hands into question -> the expert's choice."""
    task = registry.get("tasks", "twentyone").obj
    base = FunctionBase.build("twentyone", registry.modules_for("twentyone"))
    examples = task.kd.move_examples(task, base, None, [1, 2, 3, 4, 5])
    assert len(examples) >= 5 and {e.answer for e in examples} <= {"hit", "stand"}
    assert all("The dealer shows" in e.question and "hit or stand" in e.question for e in examples)
    assert task.text.judge({}, "I would Stand here.")[0] == "stand"
    assert task.text.judge({}, "fold")[1] == {"unparseable_answers": 1}


def test_a_bfloat16_student_plays_and_its_identity_says_so(registry):
    """``--dtype bfloat16`` loads the student in bfloat16; the agent's identity (what eval
    pins per agent) records it, so a run cannot mix float32 and bfloat16 games."""
    from ldengine.runner import build_agent
    task = registry.get("tasks", "twentyone").obj
    agent, _ = build_agent(registry, task, "student", {"dtype": "bfloat16"})
    assert agent.identity()["dtype"] == "bfloat16"
    result = task.play(agent, 0, 3)
    assert result.outcome in ("win", "push", "loss")
    plain, _ = build_agent(registry, task, "student", {})
    assert "dtype" not in plain.identity()
