"""Verification the shown cases cannot fool: a written function meets inputs the student
never saw (every single move of the board, random states drawn from a fresh seed) and is
compared there with the rule's own answer. Hostile functions below are written by hand
to pass the eight cases a kind shows, and nothing else."""
import time

import pytest

from ldengine.emergency.rule import under_emergency
from ldengine.emergency.verify import RANDOM_STATES, check_function, game_inputs, verification_cases, verify
from ldengine.emergency.write import write_function
from ldengine.functionbase import FunctionBase
from ldengine.sandbox import IsolatedSandbox
from ldengine_plugins.pursuit.emergencies import KINDS

KIND = next(k for k in KINDS if k.name == "restricted-area")
PARAMS = KIND.params(0)
NAME = KIND.function_name()
SHOWN = KIND.cases(PARAMS)                       # what the old verification ran, and all it ran
SHOWN_EVADERS = [given["evader"] for given, _ in SHOWN]

# Right on exactly the shown states (told apart by the evader's cell), the rule ignored elsewhere.
RIGHT_ONLY_WHEN_SHOWN = '''    shown = {shown}
    out = dict(obs)
    if obs["evader"] in shown:
        out["candidates"] = [[[x, y] for x, y in cells if {cond}] for cells in obs["candidates"]]
    return out
'''

# Right on the shown states, an endless loop on any other.
LOOPS_WHEN_NOT_SHOWN = '''    shown = {shown}
    if obs["evader"] not in shown:
        while True:
            pass
    out = dict(obs)
    out["candidates"] = [[[x, y] for x, y in cells if {cond}] for cells in obs["candidates"]]
    return out
'''

# Right everywhere, but about a second per call off the shown states: each game step would pay it.
STALLS_WHEN_NOT_SHOWN = '''    shown = {shown}
    if obs["evader"] not in shown:
        t = 0
        for i in range(3000000):
            t += i
    out = dict(obs)
    out["candidates"] = [[[x, y] for x, y in cells if {cond}] for cells in obs["candidates"]]
    return out
'''


def hostile(body: str, kind=KIND, params=PARAMS, shown=SHOWN_EVADERS) -> str:
    return kind.header(params) + body.format(shown=shown, cond=kind.condition(params))


@pytest.fixture(scope="module")
def sandbox():
    with IsolatedSandbox() as isolated:
        yield isolated


def test_it_rejects_a_function_right_only_on_the_shown_cases(sandbox):
    """It rejects a function that is right on the eight shown states and ignores the rule on
    every other, which the shown cases alone accept: the move domain finds a forbidden cell kept."""
    source = hostile(RIGHT_ONLY_WHEN_SHOWN)
    assert check_function(source, NAME, SHOWN, KIND.properties, sandbox).passed    # the old check
    check = verify(KIND, PARAMS, source, NAME, sandbox)
    assert not check.passed and check.cases_passed >= len(SHOWN)
    assert "move domain" in check.reasons[0] and "keeps cells the rule forbids" in check.reasons[0]


def test_it_rejects_a_function_that_loops_on_any_input_it_was_not_shown(sandbox):
    """It rejects a function that loops on every unseen input, at the cost of one deadline."""
    source = hostile(LOOPS_WHEN_NOT_SHOWN)
    assert check_function(source, NAME, SHOWN, KIND.properties, sandbox).passed    # the old check
    start = time.perf_counter()
    check = verify(KIND, PARAMS, source, NAME, sandbox)
    assert not check.passed and "Timeout" in check.reasons[0] and "move domain 1" in check.reasons[0]
    assert time.perf_counter() - start < 15          # one 2 s deadline, not one per case


def test_it_rejects_a_function_that_stalls_off_the_shown_cases(sandbox):
    """It rejects a right function that takes far longer than it needs on unseen inputs."""
    check = verify(KIND, PARAMS, hostile(STALLS_WHEN_NOT_SHOWN), NAME, sandbox)
    assert not check.passed and ("TooSlow" in check.reasons[0] or "Timeout" in check.reasons[0])


def test_a_rule_known_only_by_examples_still_meets_the_move_domain(pursuit_task, sandbox):
    """A user's rule with examples only (no rule to compare with): the function still runs on
    every move of the board, its properties checked there, so a loop off the examples is found."""
    rule = pursuit_task.custom_emergency("Pursuers may no longer enter a cell (x, y) with x == 10.", {},
                                         allowed=[(9, 6)], forbidden=[(10, 5)])
    cases = rule.cases({})
    shown = [given["evader"] for given, _ in cases]
    body = LOOPS_WHEN_NOT_SHOWN.format(shown=shown, cond="x != 10")
    source = rule.header({}) + body
    assert check_function(source, rule.function_name(), cases, rule.properties, sandbox).passed
    check = verify(rule, {}, source, rule.function_name(), sandbox, cases)
    assert not check.passed and "Timeout" in check.reasons[0]
    right = rule.header({}) + body.replace("not in shown", "in []")
    assert verify(rule, {}, right, rule.function_name(), sandbox, cases).passed


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_the_teachers_function_of_every_kind_passes_on_fresh_inputs(kind, sandbox):
    """It accepts the reference function of every kind: the domain and the fresh states hold
    no case the rule itself gets wrong."""
    params = kind.params(3)
    check = verify(kind, params, kind.reference(params), kind.function_name(), sandbox)
    assert check.passed, check.reasons
    assert check.cases == check.cases_passed > 21 * 21 // 3 + RANDOM_STATES


def test_the_inputs_cover_every_move_and_are_drawn_from_the_seed():
    """Every cell of the board is some mover's source, each with every legal destination; the
    random states are the same for one seed and others for another."""
    extra = verification_cases(KIND, PARAMS, SHOWN, seed=7)
    domain = [given for label, given, _ in extra if label.startswith("move domain")]
    sources = {tuple(p) for given in domain for p in given["pursuers"]}
    assert len(sources) == 21 * 21
    assert sum(len(c) for given in domain for c in given["candidates"]) > 21 * 21 * 9
    drawn = [given for label, given, _ in extra if label.startswith("random state")]
    assert len(drawn) == RANDOM_STATES
    assert drawn == [g for label, g, _ in verification_cases(KIND, PARAMS, SHOWN, seed=7)
                     if label.startswith("random state")]
    assert drawn != [g for label, g, _ in verification_cases(KIND, PARAMS, SHOWN, seed=8)
                     if label.startswith("random state")]


class WritesTheReference:
    """A stand-in student that writes the teacher's body (no model is loaded)."""
    name, model_hash, adapter_hash = "stand-in", "0" * 64, None

    def __init__(self, kind, params):
        self.body = kind.reference(params)[len(kind.header(params)):]

    def generate_batch(self, prompts, **options):
        return [self.body for _ in prompts]


def test_the_fresh_seed_is_drawn_at_verification_and_recorded_in_the_provenance():
    """Each writing draws its own seed; the accepted attempt's check records it."""
    seeds = set()
    for _ in range(2):
        written = write_function(KIND, PARAMS, WritesTheReference(KIND, PARAMS), [], attempts=1)
        [attempt] = written.provenance["attempts"]
        assert written.passed and attempt["check"]["passed"] and attempt["check"]["cases"] > 200
        seeds.add(attempt["check"]["seed"])
    assert len(seeds) == 2 and all(isinstance(s, int) for s in seeds)


# Right wherever the input lacks a key every game state has: it can tell verification from play.
RIGHT_ONLY_OUTSIDE_GAMES = '''    if "step" in obs:
        return dict(obs)
    out = dict(obs)
    out["candidates"] = [[[x, y] for x, y in cells if {cond}] for cells in obs["candidates"]]
    return out
'''


def test_with_a_game_the_inputs_are_what_play_feeds_the_stage(registry, pursuit_task, sandbox):
    """Verification inputs computed by the game's own stages carry every key play does, so a
    function that ignores the rule only in games (told by a key) is rejected; the teacher's
    function and the committed student's pass."""
    task = under_emergency(registry, pursuit_task, KIND.name, 0)
    base = FunctionBase.build("pursuit", registry.modules_for("pursuit"))
    game = game_inputs(task, base, KIND)
    params = task.emergency.params
    [(_, state, _)] = verification_cases(KIND, params, KIND.cases(params), 5, game)[:1]
    assert {"step", "emergency", "distances", "nearest"} <= set(state)
    source = hostile(RIGHT_ONLY_OUTSIDE_GAMES, params=params)
    assert verify(KIND, params, source, NAME, sandbox).passed                 # synthetic inputs miss it
    check = verify(KIND, params, source, NAME, sandbox, game=game)
    assert not check.passed and "keeps cells the rule forbids" in check.reasons[0]
    assert verify(KIND, params, KIND.reference(params), NAME, sandbox, game=game).passed
