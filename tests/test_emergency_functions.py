"""Generated functions are hostile until proven otherwise: verification runs them only in
the isolated sandbox and rejects bad ones with a reason; an adopted one runs only there
too, and a game goes on when it breaks."""
import json

import pytest

from ldengine.agents import AgentContext, expert_agent
from ldengine.emergency.rule import under_emergency, with_stage
from ldengine.emergency.store import load_stored, module_source, save
from ldengine.emergency.verify import check_function
from ldengine.emergency.write import Written, body_done, body_of
from ldengine.functionbase import FunctionBase, StoredCodeChanged
from ldengine.sandbox import IsolatedSandbox
from ldengine_plugins.pursuit.emergencies import KINDS

KIND = next(k for k in KINDS if k.name == "restricted-area")
PARAMS = KIND.params(0)
NAME = KIND.function_name()


@pytest.fixture(scope="module")
def sandbox():
    with IsolatedSandbox() as isolated:
        yield isolated


def check(body, sandbox):
    return check_function(KIND.header(PARAMS) + body, NAME, KIND.cases(PARAMS), KIND.properties, sandbox,
                          difference=KIND.difference)


HOSTILE = {
    "an endless loop": ("    while True:\n        pass\n", "Timeout"),
    "an import": ("    import os\n    return os.listdir('.')\n", "import of 'os' is not allowed"),
    "a dunder walk": ("    return ().__class__.__bases__[0].__subclasses__()\n", "__class__"),
    "a memory bomb": ("    return [0] * (10 ** 10)\n", "Error"),
    "changing the state": ("    obs['pursuers'] = []\n    return obs\n", "changes obs['pursuers']"),
    "returning something else": ("    return 42\n", "not the state dict"),
    "inventing cells": ("    out = dict(obs)\n    out['candidates'] = [[[99, 99]] for c in obs['candidates']]\n"
                        "    return out\n", "not a subset"),
    "ignoring the rule": ("    return dict(obs)\n", "keeps cells the rule forbids"),
    "an empty answer": ("    out = dict(obs)\n    out['candidates'] = [[] for c in obs['candidates']]\n"
                        "    return out\n", "drops cells the rule allows"),
}


@pytest.mark.parametrize("what", list(HOSTILE))
def test_it_rejects_a_bad_function_with_its_reason(what, sandbox):
    """It rejects a function with an endless loop, an import, a dunder walk, a memory bomb,
    a change to the state, a wrong type, invented cells, an ignored rule, an empty answer,
    and says why."""
    body, reason = HOSTILE[what]
    result = check(body, sandbox)
    assert not result.passed
    assert reason in " ".join(result.reasons), result.reasons


def test_the_sandbox_still_works_after_hostile_code(sandbox):
    check(HOSTILE["an endless loop"][0], sandbox)
    assert check(KIND.reference(PARAMS)[len(KIND.header(PARAMS)):], sandbox).passed


def test_stored_functions_are_verified_again_when_loaded(tmp_path, sandbox):
    """A stored function is verified again when loaded (on fresh inputs too); one edited
    afterwards (here: made to ignore the rule) is refused, naming its file."""
    written = Written(KIND.name, PARAMS, NAME, [], KIND.reference(PARAMS),
                         {"task": "pursuit", "function": NAME})
    path = save(written, tmp_path)
    assert json.loads(path.with_suffix(".json").read_text())["function"] == NAME
    loaded = load_stored(KIND, PARAMS, tmp_path)
    assert loaded.source == written.source and loaded.check.passed and loaded.check.cases > 100
    path.write_text(path.read_text().replace("return out", "return dict(obs)"))
    with pytest.raises(StoredCodeChanged, match=f"{path} was changed after it was stored"):
        load_stored(KIND, PARAMS, tmp_path)


def test_an_adopted_function_loads_and_runs_only_in_the_isolated_worker(pursuit_base, registry):
    """add_generated compiles without executing; calls go to a worker process; the
    teacher's hash (what adapters match) is unchanged while the base's hash pins it."""
    base = FunctionBase.build("pursuit", registry.modules_for("pursuit"))
    before, teacher = base.hash, base.teacher_hash
    written = Written(KIND.name, PARAMS, NAME, [], KIND.reference(PARAMS), {"task": "pursuit"})
    filename = "pursuit/emergencies/test.py"
    base.add_generated(module_source(written), filename)
    assert base.modules[filename]._namespace is None            # not loaded here
    obs, expected = KIND.cases(PARAMS)[0]
    result = base.call(NAME, obs)
    assert result.ok and result.value == expected
    assert base.isolated is not None and base.isolated.worker_pid not in (None, __import__("os").getpid())
    assert base.modules[filename]._namespace is None             # still not loaded here
    assert base.hash != before and base.teacher_hash == teacher
    base.isolated.close()


BREAKS_LATER = '''"""A generated function that passes its cases but raises later in a game."""

VERSION = "1.0.0"


def obey_restricted_area(obs):
    """Drop the candidate cells that the new rule forbids.

    Stage: pursuer.emergency
    Reads: obs["candidates"], obs["pursuers"]
    Returns: obs with "candidates" narrowed
    Rules: a broken rule
    Example:
        >>> obey_restricted_area({"pursuers": [[0, 0]], "candidates": [[[0, 0]]]})
        {"pursuers": [[0, 0]], "candidates": [[[0, 0]]]}
    """
    if obs["step"] >= 2:
        while True:
            pass
    return dict(obs)
'''


def test_an_adopted_function_that_breaks_is_quarantined_after_its_first_failure(registry, pursuit_task):
    """A generated function that hangs from step 2 on: its first hang costs one deadline and
    drops it (and its stage) from the pipeline with one logged line, also in the trace;
    that step's input goes on to decide unchanged, no step fails, and the game reaches its end."""
    task = under_emergency(registry, pursuit_task, "restricted-area", 0)
    base = FunctionBase.build("pursuit", registry.modules_for("pursuit"))
    base.add_generated(BREAKS_LATER, "pursuit/emergencies/broken.py")
    lines, records = [], []
    agent = expert_agent(AgentContext(task, base, {"log": lines.append}))
    agent.pipeline = with_stage(agent.pipeline, "pursuer.emergency", "pursuer.filter")
    result = task.play(agent, 0, 5, registry.get("evaders", "greedy").obj, records.append)
    stats = agent.stats()
    assert result.outcome in ("success", "failure_with_violation", "failure_without_violation")
    assert result.steps > 3 and base.isolated.errors == 1       # called again after the hang: never
    assert stats["function_errors"] == 1 and stats["failed_steps"] == 0
    # the hang ends at the wall-clock or the CPU limit, whichever the machine's load makes first
    why = stats["quarantined"]["obey_restricted_area"]
    assert list(stats["quarantined"]) == ["obey_restricted_area"] and ("Timeout" in why or "CPULimit" in why), why
    assert len(lines) == 1 and "obey_restricted_area quarantined after its first failure" in lines[0]
    assert "pursuer.emergency" not in agent.pipeline
    noted = [s["quarantined"] for r in records if r["type"] == "pursuers" for s in r.get("selections", [])
             if "quarantined" in s]
    assert noted == lines
    base.isolated.close()


BROKEN_PLUGIN = '''VERSION = "0.1.0"


def chase_broken(obs):
    """Move every pursuer by a plan that breaks on every state.

    Stage: pursuer.decide
    When: never (a plan that breaks)
    Reads: obs["candidates"]
    Returns: the action, a list with one cell [x, y] per pursuer
    Rules: none; it reads a key no state has.
    Example:
        >>> chase_broken({"candidates": []})
        []
    """
    return obs["no such key"]


def when_chase_broken(obs):
    """Never."""
    return False
'''


def test_a_third_party_function_that_fails_is_no_longer_offered(registry, pursuit_task):
    """A plugin's function (not one the engine ships) that raises: the step it failed in fails, it is
    quarantined with one logged line (also in the trace) and never offered again; the stage's other
    candidates play on, and the summary lists it."""
    from ldengine.agents import LoopAgent
    from ldengine.loop import OracleSelector, WholeBase
    from ldengine.registry import ModuleSource

    class Prefers(OracleSelector):            # a selector that picks the plugin's function when offered
        def select(self, stage, state, candidates):
            names = [c.name for c in candidates if c.stage == stage]
            if stage == "pursuer.decide" and "chase_broken" in names:
                return [c.name for c in candidates].index("chase_broken")
            return super().select(stage, state, candidates)

    modules = registry.modules_for("pursuit") + [ModuleSource("pursuit", BROKEN_PLUGIN, "pursuit/broken.py",
                                                              "ldtest_broken")]
    base = FunctionBase.build("pursuit", modules)
    lines, records = [], []
    agent = LoopAgent(AgentContext(pursuit_task, base, {"log": lines.append}), WholeBase(base), Prefers(base))
    result = pursuit_task.play(agent, 0, 30, registry.get("evaders", "greedy").obj, records.append)
    stats = agent.stats()
    assert stats["failed_steps"] == 1 and result.steps > 2
    assert stats["quarantined"] == {"chase_broken": "KeyError: 'no such key'"}
    assert lines == ["chase_broken (ldtest_broken) quarantined after its first failure (KeyError: 'no such key'); "
                     "not offered at pursuer.decide again"]
    chosen = [s["chosen"] for r in records if r["type"] == "pursuers" for s in r.get("selections", [])]
    assert chosen.count("chase_broken") == 1
    noted = [s["quarantined"] for r in records if r["type"] == "pursuers" for s in r.get("selections", [])
             if "quarantined" in s]
    assert noted == lines


def test_writing_stops_at_the_bodys_own_return_and_keeps_only_the_body():
    """Generation stops when the body returns at its own level or a new unindented line
    starts; a return nested in an ``if`` does not stop it; the body keeps indented lines."""
    assert body_done("    out = dict(obs)\n    return out\n")
    assert not body_done("    for c in cells:\n        if c:\n            return c\n")
    assert body_done("    x = 1\ndef other(obs):\n")
    assert body_of("    x = 1\n\n    return x\n\ndef other(obs):\n    pass\n") == "    x = 1\n\n    return x\n"
    assert body_of("\ndef other(obs):\n").strip() == ""


OFF_BOARD_PLUGIN = '''VERSION = "0.1.0"


def chase_off_board(obs):
    """Move every pursuer to a cell off the board: a plan that runs and returns a well-formed
    action every referee rejects.

    Stage: pursuer.decide
    When: never (a plan the referee rejects)
    Reads: obs["pursuers"]
    Returns: the action, a list with one cell [x, y] per pursuer
    Rules: none.
    Example:
        >>> chase_off_board({"pursuers": [[0, 0]]})
        [[-5, -5]]
    """
    return [[-5, -5] for _ in obs["pursuers"]]


def when_chase_off_board(obs):
    """Never."""
    return False
'''


def test_a_third_party_function_whose_move_the_referee_rejects_is_quarantined_at_once(registry, pursuit_task):
    """The run-time monitor: a plugin's function that runs without error but shapes a move the
    referee rejects is quarantined at once (one logged line, in the trace's step record and in the
    summary) and never offered again; the engine's own functions play on. A move the engine's own
    functions shaped quarantines nothing."""
    from ldengine.agents import LoopAgent
    from ldengine.loop import OracleSelector, WholeBase
    from ldengine.registry import ModuleSource
    from ldengine.runner import Emitter, play_games

    class Prefers(OracleSelector):            # a selector that picks the plugin's function when offered
        def select(self, stage, state, candidates):
            names = [c.name for c in candidates]
            if stage == "pursuer.decide" and "chase_off_board" in names:
                return names.index("chase_off_board")
            return super().select(stage, state, candidates)

    class Kept(Emitter):
        def __init__(self):
            super().__init__(None)
            self.records = []

        def __call__(self, record):
            self.records.append(record)

    modules = registry.modules_for("pursuit") + [ModuleSource("pursuit", OFF_BOARD_PLUGIN, "pursuit/off_board.py",
                                                              "ldtest_off_board")]
    base = FunctionBase.build("pursuit", modules)
    evader = registry.get("evaders", "greedy").obj
    for batch in (1, 4):
        lines, emit = [], Kept()
        agent = LoopAgent(AgentContext(pursuit_task, base, {"log": lines.append}), WholeBase(base), Prefers(base))
        [played] = play_games(pursuit_task, agent, [(0, 30)], evader, emit, batch=batch)
        steps = [r for r in emit.records if r["type"] == "pursuers"]
        assert played.result.violations == 3 and played.result.steps > 2, played.result    # 3 pursuers, 1 step
        assert agent.stats()["quarantined"] == {"chase_off_board": "the referee rejected a move it shaped"}
        assert lines == ["chase_off_board (ldtest_off_board) quarantined at once: the referee rejected a move it "
                         "shaped; not offered at pursuer.decide again"]
        assert [r.get("quarantined") for r in steps if r.get("quarantined")] == lines
        assert [s["chosen"] for r in steps for s in r["selections"]].count("chase_off_board") == 1
    # the engine's own functions under a rule nobody adapted to: violations, nothing quarantined
    task = under_emergency(registry, pursuit_task, "restricted-area", 0)
    agent = expert_agent(AgentContext(task, FunctionBase.build("pursuit", registry.modules_for("pursuit")), {}))
    results = [p.result for p in play_games(task, agent, [(i, i) for i in range(6)], evader, Kept())]
    assert sum(r.violations for r in results) > 0 and "quarantined" not in agent.stats()
