"""The pursuit function base: its manual, its examples, and the expert built on it."""

import pytest
from hypothesis import given, strategies as st

from ldengine.agents import AgentContext, expert_agent
from ldengine.manual import FIELDS
from ldengine_plugins.pursuit.rules import is_legal_pursuer_move


def all_examples(base):
    return [(entry.name, ex) for entry in base.entries.values() for ex in entry.examples]


def test_every_example_in_the_manual_holds_when_run_in_the_sandbox(pursuit_base):
    """It runs each docstring Example through the sandbox and gets the documented value."""
    examples = all_examples(pursuit_base)
    assert len(examples) >= len(pursuit_base)
    for name, ex in examples:
        target = name if ex.function == pursuit_base.entry(name).def_name else ex.function
        result = pursuit_base.call(target, *ex.args)
        assert result.ok, f"{name}: {ex.text} -> {result.error}"
        assert result.value == ex.expected, f"{name}: {ex.text}"


def test_each_pipeline_stage_has_exactly_one_function_and_there_are_distractors(pursuit_base, pursuit_task):
    """It has one function per stage of the pursuer pipeline, and others that are not."""
    chosen = {pursuit_base.oracle(stage).name for stage in pursuit_task.pipeline}
    distractors = set(pursuit_base.entries) - chosen
    assert len(chosen) == len(pursuit_task.pipeline)
    assert len(distractors) >= 6
    assert any(pursuit_base.entry(n).stage.startswith("evader.") for n in distractors)


def test_every_entry_has_every_manual_field_and_a_version(pursuit_base):
    """It documents each function with summary, the manual fields and a versioned hash."""
    for entry in pursuit_base.entries.values():
        assert entry.summary and all(getattr(entry, f.lower()) for f in FIELDS)
        assert "+" in entry.version and len(entry.source_hash) == 64


@st.composite
def states(draw):
    size = draw(st.integers(6, 21))
    cell = st.lists(st.integers(0, size - 1), min_size=2, max_size=2)
    evader = draw(cell)
    pursuers = draw(st.lists(cell.filter(lambda c: c != evader), min_size=3, max_size=3))
    forbidden = draw(st.lists(cell.filter(lambda c: c != evader and c not in pursuers), max_size=15))
    return {"size": size, "step": 0, "reach": 2, "pursuers": pursuers, "evader": evader,
            "forbidden": [list(c) for c in {tuple(c) for c in forbidden}]}


@pytest.fixture(scope="module")
def expert(pursuit_base, pursuit_task):
    return expert_agent(AgentContext(pursuit_task, pursuit_base))


@given(states())
def test_the_expert_never_proposes_an_illegal_move(expert, state):
    """It proposes, for any board, positions and forbidden cells, only legal moves."""
    action = expert.act(state)
    forbidden = frozenset(tuple(c) for c in state["forbidden"])
    evader = tuple(state["evader"])
    for src, dst in zip(state["pursuers"], action):
        assert is_legal_pursuer_move(tuple(src), dst, evader, state["size"], forbidden)
    assert len(action) == 3


def test_the_expert_captures_the_greedy_evader(pursuit_task, expert, registry):
    """It wins 10 seeded games against the greedy evader without a violation."""
    greedy = registry.get("evaders", "greedy").obj
    results = [pursuit_task.play(expert, i, i, greedy, lambda r: None) for i in range(10)]
    assert all(r.outcome == "success" and r.violations == 0 for r in results)
