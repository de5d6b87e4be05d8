"""pursuer.decide's three strategies: their predicates, the oracle's choice, legal and capturing moves."""
import pytest

from plugins.pursuit.task import capture_ready, near_edge

STAGE = "pursuer.decide"
STRATEGIES = ("capture_adjacent", "pin_against_edge", "encircle_evader")


def decide_input(pursuers, evader, size=21, forbidden=()):
    """The stage's input: the state plus each pursuer's legal cells (DESIGN.md rules)."""
    forbidden = [list(c) for c in forbidden]
    closed = {tuple(c) for c in forbidden} | {tuple(evader)}
    candidates = [[[p[0] + dx, p[1] + dy] for dx in range(-2, 3) for dy in range(-2, 3)
                   if abs(dx) + abs(dy) <= 2 and 0 <= p[0] + dx < size and 0 <= p[1] + dy < size
                   and (p[0] + dx, p[1] + dy) not in closed] for p in pursuers]
    return {"size": size, "step": 0, "reach": 2, "pursuers": [list(p) for p in pursuers], "evader": list(evader),
            "forbidden": forbidden, "candidates": candidates}


READY = decide_input([[10, 7], [12, 11], [7, 10]], [10, 10])           # each within 3 of the evader, mid-board
EDGE = decide_input([[6, 3], [1, 8], [9, 9]], [1, 2])                  # evader 1 from an edge, far pursuers
OPEN = decide_input([[2, 2], [18, 3], [10, 19]], [10, 10])             # mid-board, far pursuers
READY_AT_EDGE = decide_input([[2, 5], [0, 7], [2, 3]], [0, 4])
BLOCKED = decide_input([[3, 10], [10, 7], [12, 12]], [10, 10], forbidden=[[9, 10], [10, 9]])
STATES = {"ready": READY, "edge": EDGE, "open": OPEN, "ready at edge": READY_AT_EDGE, "blocked": BLOCKED}


def test_capture_predicate_matches_the_state_summary(pursuit_base):
    """It says capture is ready exactly when the task's state summary does."""
    for name, obs in STATES.items():
        assert pursuit_base.applies(pursuit_base.entry("capture_adjacent"), obs) is capture_ready(obs), name
    assert capture_ready(READY) and capture_ready(READY_AT_EDGE) and not capture_ready(OPEN)


def test_pin_predicate_is_near_edge_and_not_ready(pursuit_base):
    """It holds only near an edge while capture is not ready."""
    for name, obs in STATES.items():
        expected = near_edge(obs) and not capture_ready(obs)
        assert pursuit_base.applies(pursuit_base.entry("pin_against_edge"), obs) is expected, name
    assert near_edge(EDGE) and near_edge(READY_AT_EDGE)


@pytest.mark.parametrize("obs, expected", [(READY, "capture_adjacent"), (READY_AT_EDGE, "capture_adjacent"),
                                           (EDGE, "pin_against_edge"), (OPEN, "encircle_evader"),
                                           (BLOCKED, "encircle_evader")])
def test_oracle_picks_the_strategy_of_the_state(pursuit_base, obs, expected):
    """It chooses capture first, then the edge pin, else the default encircle."""
    assert pursuit_base.oracle(STAGE, obs).name == expected


def test_stage_has_one_default(pursuit_base):
    """It keeps encircle_evader as the stage's only function without a predicate."""
    entries = pursuit_base.for_stage(STAGE)
    assert [e.name for e in entries] == list(STRATEGIES)
    assert [e.name for e in entries if not e.predicate] == ["encircle_evader"]
    assert all(e.when for e in entries if e.predicate)


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_moves_only_to_candidates(pursuit_base, name):
    """It returns one cell per pursuer, each one of that pursuer's legal candidates."""
    for label, obs in STATES.items():
        result = pursuit_base.call(name, obs)
        assert result.ok, (label, result.error)
        assert len(result.value) == 3
        for cell, cells in zip(result.value, obs["candidates"]):
            assert cell in cells, (label, cell)


@pytest.mark.parametrize("name", STRATEGIES)
def test_capture_when_ready(pursuit_base, name):
    """It captures at once when every pursuer can step next to the evader."""
    for obs in (READY, READY_AT_EDGE):
        ex, ey = obs["evader"]
        cells = pursuit_base.call(name, obs).value
        assert all(abs(x - ex) + abs(y - ey) == 1 for x, y in cells), cells


def test_capture_adjacent_falls_back_to_the_nearest_candidate(pursuit_base):
    """It sends a pursuer that cannot reach the evader to its candidate nearest the evader."""
    cells = pursuit_base.call("capture_adjacent", OPEN).value
    assert cells == [[2, 4], [16, 3], [10, 17]]   # first of the nearest, in candidate order
