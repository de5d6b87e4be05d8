"""21 Points: stage player.hit has two alternatives, ``hit_value_hard`` and ``hit_value_soft``;
the state (is the hand soft?) says which one is right, and the wrong one can change the choice."""
import pytest

from ldengine.agents import AgentContext, expert_agent
from ldengine.functionbase import FunctionBase
from ldengine_plugins.twentyone.rules import CARDS, Hand, best, dealer_final, optimal_choice

SOFT_HANDS = [[1, 1], [1, 2], [1, 5], [1, 6], [1, 7], [1, 10], [1, 2, 3], [1, 1, 9]]
HARD_HANDS = [[5, 3], [2, 2], [10, 2], [10, 6], [9, 9], [10, 6, 1], [10, 10, 1], [1, 1, 10], [6, 3, 1, 1, 9]]


@pytest.fixture(scope="module")
def base(registry):
    return FunctionBase.build("twentyone", registry.modules_for("twentyone"))


def observe(base, hand, shown):
    """The player.hit stage's input: the pipeline's first three stages run in the sandbox."""
    obs = base.call("hand_total", {"player": hand, "dealer": shown}).value
    obs = base.call("dealer_final_totals", obs).value
    return base.call("stand_value", obs).value


def ev_hit(base, name, obs):
    result = base.call(name, obs)
    assert result.ok, result
    assert set(result.value) == set(obs) | {"ev_hit"}
    return result.value["ev_hit"]


def test_the_stage_has_the_two_alternatives_each_saying_when_it_applies(base):
    """It lists hit_value_hard then hit_value_soft for player.hit, both with a When: field and a
    predicate, and no old hit_value any more."""
    entries = base.for_stage("player.hit")
    assert [e.name for e in entries] == ["hit_value_hard", "hit_value_soft"]
    assert all(e.when and e.predicate == "when_" + e.name for e in entries)
    assert "soft" in entries[1].when and "hard" in entries[0].when
    assert "hit_value" not in base.entries and "when_hit_value_hard" not in base.entries


def test_the_oracle_picks_hard_or_soft_by_the_hand(base):
    """It picks hit_value_soft when an ace counts 11 and hit_value_hard otherwise, including a
    hand whose ace must count 1 ([10, 6, 1])."""
    for hand in SOFT_HANDS:
        assert base.oracle("player.hit", observe(base, hand, 10)).name == "hit_value_soft", hand
    for hand in HARD_HANDS:
        assert base.oracle("player.hit", observe(base, hand, 10)).name == "hit_value_hard", hand


def test_the_state_summary_says_whether_the_hand_is_soft_or_hard(registry, base):
    """It adds "hand soft" / "hand hard" once the hand is valued, and nothing before."""
    task = registry.get("tasks", "twentyone").obj
    before = task.summarize_state({"player": [1, 6], "dealer": 9})
    assert "soft" not in before and "hard" not in before and "hand not valued" in before
    soft = task.summarize_state(observe(base, [1, 6], 9))
    hard = task.summarize_state(observe(base, [10, 6, 1], 9))
    assert "hand soft (an ace counts 11)" in soft and "hand hard" not in soft
    assert "hand hard (no ace counts 11)" in hard and "hand soft" not in hard
    assert soft.startswith("hand valued; hand soft") and "return of hitting not known" in soft


def test_each_alternative_is_exact_on_its_own_kind_of_hand(base):
    """It gives, in the sandbox, the exact return of hitting (rules.best) for every shown card:
    hit_value_soft on soft hands, hit_value_hard on hard ones (an ace counting 1 included)."""
    for hands, name in ((SOFT_HANDS, "hit_value_soft"), (HARD_HANDS, "hit_value_hard")):
        for hand in hands:
            for shown in CARDS:
                exact = float(best(sum(hand), 1 in hand, shown)[1])
                assert abs(ev_hit(base, name, observe(base, hand, shown)) - exact) < 1e-12, (name, hand, shown)


def test_each_alternative_is_wrong_on_some_hand_of_the_other_kind(base):
    """It shows the wrong alternative's value is off: hit_value_hard on soft 17 ([1, 6]) and
    hit_value_soft on hard 8 ([5, 3]); on a soft hand it can even flip hit/stand."""
    for hand, wrong in (([1, 6], "hit_value_hard"), ([5, 3], "hit_value_soft")):
        obs = observe(base, hand, 9)
        assert abs(ev_hit(base, wrong, obs) - float(best(sum(hand), 1 in hand, 9)[1])) > 0.01, (hand, wrong)
    flips = []
    for hand in SOFT_HANDS:
        for shown in CARDS:
            obs = observe(base, hand, shown)
            if (ev_hit(base, "hit_value_hard", obs) > obs["ev_stand"]) != (optimal_choice(hand, shown) == "hit"):
                flips.append((hand, shown))
    assert flips


def test_the_wrong_alternative_changes_decisions_on_the_seeded_hands():
    """It plays the hands of seeds 0..1999 optimally; at every decision the right alternative
    decides like the optimal policy, while forcing the wrong one changes some decisions on soft
    hands (on hard hands it only differs in value for hard totals up to 10, where hitting still
    wins). The functions are called directly here (plain Python, same code) to stay fast."""
    from ldengine_function_base.twentyone.hand import hand_total
    from ldengine_function_base.twentyone.value import hit_value_hard, hit_value_soft, stand_value
    finals = {shown: [float(p) for p in dealer_final(shown)] for shown in CARDS}
    decisions = {True: 0, False: 0}
    changed = {True: 0, False: 0}
    for seed in range(2000):
        hand = Hand.deal(seed)
        while not hand.over:
            state = hand.state()
            obs = stand_value(dict(hand_total(state), dealer_final=finals[state["dealer"]]))
            right, wrong = (hit_value_soft, hit_value_hard) if obs["soft"] else (hit_value_hard, hit_value_soft)
            choose = [("hit" if f(obs)["ev_hit"] > obs["ev_stand"] else "stand") for f in (right, wrong)]
            optimal = optimal_choice(state["player"], state["dealer"])
            assert choose[0] == optimal, state
            decisions[obs["soft"]] += 1
            changed[obs["soft"]] += choose[0] != choose[1]
            hand.act(optimal)
    assert decisions[True] > 300 and decisions[False] > 2000
    assert changed[True] >= 10 and changed[False] == 0


def test_the_expert_runs_the_alternative_the_oracle_picks(registry, base):
    """It runs hit_value_soft on a soft hand and hit_value_hard on a hard one, choosing optimally."""
    agent = expert_agent(AgentContext(registry.get("tasks", "twentyone").obj, base))
    for hand, name in (([1, 7], "hit_value_soft"), ([10, 6, 1], "hit_value_hard"), ([5, 3], "hit_value_hard")):
        for shown in (2, 9, 10):
            assert agent.act({"player": hand, "dealer": shown}) == optimal_choice(hand, shown)
            assert name in agent.last_functions and len(agent.last_functions) == 5, agent.last_functions
