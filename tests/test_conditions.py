"""When: fields read into conditions over the stage's facts, checked against the code, used by ld."""
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from ldengine.agents import AgentContext
from ldengine.conditions import (Condition, EncoderProposer, LexicalProposer, Literal, Readings, called_for,
                                 check_states, clauses, conditions, negated, parse_condition, read_stage)
from ldengine.errors import LDEngineError
from ldengine.functionbase import FunctionBase
from ldengine.registry import ModuleSource

EXTRAS = Path(__file__).resolve().parent.parent / "plugins" / "ldengine-pursuit-extras" / "ldengine_pursuit_extras" \
    / "functions"
FACTS = {"a": None, "b": None, "c": None}
DECIDE = "pursuer.decide"


def test_conditions_parse_back_from_their_text_and_bad_programs_are_refused_in_one_line():
    for condition in conditions(list(FACTS)):
        assert parse_condition(condition.text(), FACTS) == condition
    assert len(conditions(["a", "b"])) == 4 + 2 * 4       # 4 literals; 2 connectives x 4 sign pairs
    for bad, said in (("a and b or c", "mixes"), ("d", "no fact 'd'"), ("a and a", "once"), ("", "no fact")):
        with pytest.raises(LDEngineError, match=said):
            parse_condition(bad, FACTS)


@given(st.sampled_from(conditions(list(FACTS))), st.fixed_dictionaries({n: st.booleans() for n in FACTS}))
def test_a_condition_holds_as_its_program_says(condition, values):
    said = [values[lit.fact] != lit.negated for lit in condition.literals]
    assert condition.holds(values) == (all(said) if condition.op == "and" else any(said))


def test_clauses_split_at_connectives_but_not_inside_numbers():
    assert clauses("every pursuer is 6 or more cells away (the nearest is 6 or more cells away)") == [
        "every pursuer is 6 or more cells away", "the nearest is 6 or more cells away"]
    assert clauses("the evader is near an edge and capture is not ready") == [
        "the evader is near an edge", "capture is not ready"]
    assert negated("capture is not ready") and negated("they cannot all step beside it") and not negated("it is ready")


@pytest.fixture(scope="module")
def grown(registry):
    """The pursuit base with the extras plugin's three decide alternatives (written after every
    committed adapter was trained) and their facts."""
    modules = registry.modules_for("pursuit") + [
        ModuleSource("pursuit", (EXTRAS / name).read_text(), f"extras/{name}", "pursuit_extras")
        for name in ("rush.py", "spread.py")]
    return FunctionBase.build("pursuit", modules)


@pytest.fixture(scope="module")
def decide_states(registry, pursuit_task, grown):
    """Decide inputs of two open-board games and one game under each registered rule change."""
    return check_states(registry, pursuit_task, grown, DECIDE, seeds=(0, 1), rule_seeds=(0,))


@pytest.mark.slow
def test_every_alternative_is_read_into_the_condition_its_code_checks(grown, decide_states):
    """Both proposers end at the same readings: the check against when_ decides; the words only rank."""
    expected = {"capture_adjacent": "capture_ready", "route_around_block": "blocked",
                "pin_against_edge": "not capture_ready and near_edge", "rush_from_three_sides": "all_far",
                "box_in_centre": "deep_inside", "bring_up_straggler": "straggler"}
    assert any(grown.fact_values(DECIDE, s)[1][1] for s in decide_states)   # a rule change blocks someone
    for proposer in (LexicalProposer(), EncoderProposer()):
        read = read_stage(grown, DECIDE, decide_states, proposer)
        assert {name: r.condition for name, r in read.items()} == expected, proposer.name
        assert all(r.status == "checked" and r.agree == r.states == len(decide_states) for r in read.values())


def test_words_that_no_condition_says_leave_the_alternative_unread_and_offered(registry, grown, decide_states):
    odd = '''VERSION = "0.1.0"


def hug_column_three(obs):
    """Keep to column three.

    Stage: pursuer.decide
    When: the evader stands in column three
    Reads: obs["candidates"]
    Returns: one cell per pursuer
    Rules: each pursuer takes its first candidate.
    Example:
        >>> hug_column_three({"candidates": [[[1, 1]], [[2, 2]], [[3, 3]]]})
        [[1, 1], [2, 2], [3, 3]]
    """
    return [cells[0] for cells in obs["candidates"]]


def when_hug_column_three(obs):
    return obs["evader"][0] == 3
'''
    base = FunctionBase.build("pursuit", registry.modules_for("pursuit") + [ModuleSource("pursuit", odd, "x/odd.py", "x")])
    read = read_stage(base, DECIDE, decide_states, LexicalProposer())
    assert read["hug_column_three"].status == "disagrees" and not read["hug_column_three"].read
    example = read["hug_column_three"].example
    assert example["code_says"] != parse_condition(example["condition"], base.facts).holds(example["facts"])
    assert read["capture_adjacent"].condition == "capture_ready"


def test_ld_is_offered_only_the_alternative_the_state_calls_for(registry, pursuit_task, grown, decide_states, tmp_path):
    readings = Readings(AgentContext(pursuit_task, grown, {}, registry), LexicalProposer(), cache_dir=tmp_path)
    readings._stages[DECIDE] = read_stage(grown, DECIDE, decide_states, LexicalProposer())
    for state in decide_states:
        offered, withheld = called_for(grown, readings, DECIDE, state)
        right = grown.oracle(DECIDE, state).name
        assert offered == {right}, (offered, right)
        assert withheld == {e.name for e in grown.for_stage(DECIDE)} - {right}


@pytest.mark.slow
def test_readings_are_cached_and_a_cached_program_over_an_unknown_fact_is_read_again(registry, pursuit_task,
                                                                                      pursuit_base, tmp_path):
    context = AgentContext(pursuit_task, pursuit_base, {}, registry)
    quick = {"cache_dir": tmp_path, "seeds": (0,), "rule_seeds": (0,)}
    first = Readings(context, LexicalProposer(), **quick).stage(DECIDE)
    files = sorted((tmp_path / "conditions" / "pursuit").glob("*.json"))
    assert len(files) == 3 and first["pin_against_edge"].condition == "not capture_ready and near_edge"
    files[0].write_text(files[0].read_text().replace('"condition": "', '"condition": "not_a_fact or '))
    again = Readings(context, LexicalProposer(), **quick)
    assert {n: r.condition for n, r in again.stage(DECIDE).items()} == {n: r.condition for n, r in first.items()}


def test_a_condition_is_words_of_its_facts(pursuit_base):
    facts = {f.name: f for f in pursuit_base.facts_for(DECIDE)}
    condition = Condition((Literal("capture_ready", True), Literal("near_edge")), "and")
    assert condition.words(facts) == ("it is not so that all three pursuers have a legal move that lands beside the "
                                      "evader and the evader stands at most 2 cells from the border of the board")


@pytest.mark.slow
def test_ld_plays_a_plugins_alternatives_zero_shot_as_the_oracle_would():
    """The extras plugin's three alternatives, never seen by the committed adapter: ld picks the
    oracle's function at every stage (the rush and straggler states come early in a game)."""
    from ldengine.registry import Registry
    from ldengine.runner import RunConfig, run_games
    reg = Registry.load()
    reg.modules += [ModuleSource("pursuit", (EXTRAS / name).read_text(), f"extras/{name}", "pursuit_extras")
                    for name in ("rush.py", "spread.py")]
    summary = run_games(reg, RunConfig("pursuit", "ld", 2, 40_000, "greedy", None, None, progress=False,
                                       options={"log": lambda line: None})).summary
    assert summary["success"] == 1.0 and summary["selection_accuracy"] == 1.0
    assert summary["conditions"]["rush_from_three_sides"] == "all_far"
    assert summary["alternatives_withheld"] > 0
