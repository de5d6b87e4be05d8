"""Facts are part of the plugin contract; the data that teaches reading; the word matcher (no model)."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from ldengine.cli import cli
from ldengine.errors import ManualError
from ldengine.functionbase import FunctionBase
from ldengine.ld import RetrieverProvider, stage_inputs, stage_query
from ldengine.lexical import lexical_choice, text_choice
from ldengine.manual import entries_from_source, facts_from_source
from ldengine.reading import GENERIC, families, reading_examples
from ldengine.registry import ModuleSource
from ldengine.retriever import Retriever

RUSH = (Path(__file__).resolve().parent.parent / "plugins" / "ldengine-pursuit-extras" / "ldengine_pursuit_extras"
        / "functions" / "rush.py").read_text()
DECIDE = "pursuer.decide"


def _decide_state(pursuit_task, pursuit_base, registry, seed=3):
    pairs = stage_inputs(pursuit_task, pursuit_base, registry.get("evaders", "greedy").obj, [seed])
    return next(state for stage, state in pairs if stage == DECIDE)


def test_a_fact_is_not_a_manual_entry_and_needs_a_sentence_and_a_stage():
    """It reads a ``fact_`` def as a fact of its stage, not as a function; one without a Stage line is refused."""
    source = RUSH
    assert "fact_all_far" not in {e.def_name for e in entries_from_source(source, "rush.py", "pursuit", "x")}
    (fact,) = facts_from_source(source, "rush.py", "x")
    assert fact.stage == DECIDE and fact.sentence == "no pursuer is closer than 6 cells to the evader"
    bad = 'VERSION = "1"\n\ndef fact_x(obs):\n    """something holds"""\n    return True\n'
    with pytest.raises(ManualError, match="Stage:"):
        facts_from_source(bad, "bad.py", "x")


def test_the_decide_query_states_the_bases_facts_with_yes_or_no(pursuit_task, pursuit_base, registry):
    """It states each fact of pursuer.decide (computed in the sandbox) at decide, and none at other stages."""
    state = _decide_state(pursuit_task, pursuit_base, registry)
    query = stage_query(pursuit_task, DECIDE, state, pursuit_base)
    for fact in pursuit_base.facts_for(DECIDE):
        assert f"{fact.sentence}: yes" in query or f"{fact.sentence}: no" in query
    assert ": yes" not in stage_query(pursuit_task, "pursuer.observe", state, pursuit_base)
    # the words are the facts' own, not copies of a When: field
    whens = [e.when for e in pursuit_base.for_stage(DECIDE) if e.when]
    assert not any(f.sentence in w for f in pursuit_base.facts.values() for w in whens)


def test_a_plugin_brings_the_fact_its_alternative_needs(registry, pursuit_task, pursuit_base):
    """It states the extras plugin's fact only when the plugin's module is in the base, with its real value."""
    grown = FunctionBase.build("pursuit", registry.modules_for("pursuit")
                               + [ModuleSource("pursuit", RUSH, "extras/rush.py", "pursuit_extras")])
    far = {"size": 21, "evader": [10, 10], "pursuers": [[0, 0], [20, 20], [0, 20]], "forbidden": [],
           "candidates": [[[1, 1]], [[19, 19]], [[1, 19]]], "distances": [20, 20, 20]}
    sentence = "no pursuer is closer than 6 cells to the evader"
    assert f"{sentence}: yes" in stage_query(pursuit_task, DECIDE, far, grown)
    assert sentence not in stage_query(pursuit_task, DECIDE, far, pursuit_base)
    assert grown.hash != pursuit_base.hash


def test_reading_examples_have_one_right_answer_and_hold_families_out(registry, pursuit_task, pursuit_base):
    """It builds synthetic selections whose right option's When: holds (else the default), and the held-out
    families, phrasings and naming style never appear in the training split."""
    pairs = stage_inputs(pursuit_task, pursuit_base, registry.get("evaders", "greedy").obj, [4])
    provider = RetrieverProvider(pursuit_task, pursuit_base, Retriever.for_base(pursuit_base), 5)
    train = reading_examples(pursuit_task, pursuit_base, provider, pairs, 60, seed=0)
    held = reading_examples(pursuit_task, pursuit_base, provider, pairs, 30, seed=1, split="eval",
                            heldout_phrasing=True, heldout_names=True)
    assert len(train) == 60 and len(held) == 30
    eval_words = [f.said.split("{")[0] for f in families(pursuit_task, "eval")]
    last_means = [f.means[-1].split("{")[0] for f in GENERIC + pursuit_task.fact_families]
    for e in train:
        text = e.query + " ".join(e.options)
        assert not any(w and w in text for w in eval_words if len(w) > 12)
        assert not any(w and f"Use when: {w}" in text for w in last_means if len(w) > 12)
        assert not any(o.startswith(("plan_", "scheme_", "tactic_", "play_")) for o in e.options)
    for e in train + held:
        right = e.options[e.answer]
        assert f"(stage {DECIDE})" in right
    assert any("Use when:" not in e.options[e.answer] for e in held)     # some defaults
    assert any("Use when:" in e.options[e.answer] for e in held)


def test_the_word_matcher_matches_a_paraphrase_and_falls_back_to_the_default():
    """It takes the alternative whose When: words match a fact stated yes, handles a denial, and takes the
    stage's default when none holds (a denial only in its negation variant); other stages' candidates are never taken at a stage with alternatives."""
    stage = "s.decide"
    options = [("s.other", ""), ("s.decide", "the red lamp is lit"), ("s.decide", "the gate stands open"),
               ("s.decide", "")]
    assert lexical_choice(stage, options, [("the red light is on", False), ("the gate is open", True)]) == 2
    assert lexical_choice(stage, options, [("the red light is on", False), ("the gate is open", False)]) == 3
    denied = [("s.decide", "the gate is not open"), ("s.decide", "")]
    assert lexical_choice(stage, denied, [("the gate is open", False)], negation=True) == 0
    assert lexical_choice(stage, denied, [("the gate is open", False)]) == 1
    query = f"Stage: {stage}\nState: summary; the gate is open: yes\n"
    assert text_choice(query, ["g_a (stage s.decide): x. Use when: the gate stands open",
                               "g_b (stage s.decide): default"]) == 0


def test_the_lexical_agent_plays_a_game():
    """It plays a seeded game as an agent (no model), naming itself in the summary."""
    result = CliRunner().invoke(cli, ["run", "pursuit", "--agent", "lexical", "--games", "1", "--seed", "2"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "agent lexical" in result.output and "success 1.000" in result.output


def test_reading_draws_are_seeded():
    """It draws the same synthetic fact for the same seed."""
    from ldengine.reading import draw_fact
    a = draw_fact(random.Random(3), GENERIC[0], False)
    b = draw_fact(random.Random(3), GENERIC[0], False)
    assert a == b
