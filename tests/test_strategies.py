"""pursuer.decide's four strategies: their predicates, the oracle's choice, legal and capturing moves."""
import pytest

from ldengine_plugins.pursuit.task import capture_ready, near_edge, pursuer_blocked

STAGE = "pursuer.decide"
STRATEGIES = ("capture_adjacent", "route_around_block", "pin_against_edge", "encircle_evader")


def decide_input(pursuers, evader, size=21, forbidden=()):
    """The stage's input: the state plus each pursuer's legal cells (the README's rules)."""
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


def walled(obs, x=6, y0=11, y1=17):
    """``obs`` with the wall emergency's rule applied to the candidates: no move crosses the wall
    between columns x and x + 1 for rows y0..y1 (plugins/pursuit/emergencies.py, kind "wall")."""
    out = dict(obs)
    out["candidates"] = [[c for c in cells if not (min(p[0], c[0]) <= x < max(p[0], c[0])
                                                  and (y0 <= p[1] <= y1 or y0 <= c[1] <= y1))]
                         for p, cells in zip(obs["pursuers"], obs["candidates"])]
    return out


# The first pursuer stands west of the wall, level with the evader: every move east crosses it.
WALLED = walled(decide_input([[6, 15], [12, 13], [12, 17]], [10, 15]))
# The same wall, but every pursuer has a way to the evader (the first one around the wall's end).
WALLED_OPEN = walled(decide_input([[6, 19], [12, 13], [12, 17]], [10, 15]))
STATES = {"ready": READY, "edge": EDGE, "open": OPEN, "ready at edge": READY_AT_EDGE, "blocked": BLOCKED,
          "walled": WALLED, "walled, way open": WALLED_OPEN}


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
                                           (BLOCKED, "encircle_evader"), (WALLED, "route_around_block"),
                                           (WALLED_OPEN, "encircle_evader")])
def test_oracle_picks_the_strategy_of_the_state(pursuit_base, obs, expected):
    """It chooses capture first, then routing around an obstacle, then the edge pin, else the default encircle."""
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


def test_route_predicate_holds_when_a_pursuer_is_blocked(pursuit_base):
    """It holds exactly when the state summary says some pursuer is blocked: on the walled state,
    not on the open ones (forbidden cells that leave a way around included)."""
    for name, obs in STATES.items():
        assert pursuit_base.applies(pursuit_base.entry("route_around_block"), obs) is pursuer_blocked(obs), name
    assert pursuer_blocked(WALLED)
    assert not any(pursuer_blocked(obs) for name, obs in STATES.items() if name != "walled")
    assert "a pursuer is blocked" in pursuit_base.entry("route_around_block").when


def test_a_pursuer_the_wall_blocks_is_not_ready_to_capture(pursuit_base):
    """Two pursuers could step next to the evader, the third is within 2 of the cell west of it
    but the wall is in between: capture is not ready (its candidates decide, not the distance),
    and the oracle routes that pursuer around the wall."""
    state = walled(decide_input([[6, 12], [10, 13], [8, 10]], [8, 12]), y0=8, y1=14)
    assert not capture_ready(state) and pursuer_blocked(state)
    assert pursuit_base.oracle(STAGE, state).name == "route_around_block"


def test_a_blocked_pursuer_slides_along_the_wall_toward_its_end(pursuit_base):
    """It sends the blocked pursuer along the wall, toward the edge on the evader's side (y = 15 > 10:
    down, to y = 17), and the others as encircle_evader does with that pursuer's cell fixed."""
    cells = pursuit_base.call("route_around_block", WALLED).value
    assert cells[0] == [6, 17]
    fixed = dict(WALLED, candidates=[[[6, 17]]] + WALLED["candidates"][1:])
    assert cells == pursuit_base.call("encircle_evader", fixed).value
    # With no pursuer blocked it has nothing to route around: the plain chase, not encircle_evader's move.
    chase = pursuit_base.call("chase_nearest", OPEN).value
    assert pursuit_base.call("route_around_block", OPEN).value == chase != pursuit_base.call("encircle_evader", OPEN).value


def test_the_specialists_play_the_plain_chase_outside_their_state(pursuit_base):
    """route_around_block (no pursuer blocked) and pin_against_edge (the evader far from every
    edge) do not fall back to encircle_evader: played in the wrong state they cost steps, so
    choosing among the alternatives matters."""
    chase = pursuit_base.call("chase_nearest", OPEN).value
    assert chase != pursuit_base.call("encircle_evader", OPEN).value
    for name in ("route_around_block", "pin_against_edge"):
        assert pursuit_base.call(name, OPEN).value == chase, name
    assert pursuit_base.call("route_around_block", WALLED).value != pursuit_base.call("chase_nearest", WALLED).value


def test_route_examples_hold(pursuit_base):
    """Its manual's Example runs in the sandbox and gives the documented cells."""
    entry = pursuit_base.entry("route_around_block")
    assert entry.examples
    for ex in entry.examples:
        assert pursuit_base.call("route_around_block", *ex.args).value == ex.expected


def _expert_games(registry, seeds, emergency_seed=None, rule="wall"):
    """The expert's results and its pursuer.decide choices; with ``emergency_seed``, under that
    ``rule``, with the teacher's function for it in the pipeline (as an agent that adopted one plays)."""
    from ldengine.agents import AgentContext, expert_agent
    from ldengine.emergency.rule import Instance, with_stage
    from ldengine.emergency.rule import reference_module
    from ldengine.functionbase import FunctionBase
    task = registry.get("tasks", "pursuit").obj
    base = FunctionBase.build("pursuit", registry.modules_for("pursuit"))
    kind = None
    if emergency_seed is not None:
        kind = registry.get("emergencies", rule).obj
        params = kind.params(emergency_seed, task.size)
        task = task.with_emergency(Instance(kind, params))
        base.add_generated(reference_module(kind, params), f"pursuit/emergencies/reference-{rule}-test.py")
    agent = expert_agent(AgentContext(task, base))
    if kind is not None:
        agent.pipeline = with_stage(agent.pipeline, kind.stage, kind.after)
    decided = []
    agent.observers.append(lambda d: decided.append(d.functions[-1]))
    evader = registry.get("evaders", "greedy").obj
    try:
        results = [task.play(agent, i, seed, evader, lambda r: None) for i, seed in enumerate(seeds)]
    finally:
        if base.isolated is not None:
            base.isolated.close()
    return results, decided


def test_open_games_never_route(registry):
    """It is never chosen in games without an obstacle (the expert's figures there stay as they were)."""
    results, decided = _expert_games(registry, range(10))
    assert all(r.outcome == "success" for r in results)
    assert "route_around_block" not in decided


def test_wall_games_that_timed_out_are_captured(registry):
    """Under the wall (emergency seed 0: columns 6|7, rows 11-17) the games in which a pursuer
    stayed stuck behind the wall until the 100-step limit are captured."""
    results, decided = _expert_games(registry, [10, 14, 28, 29], emergency_seed=0)
    assert [r.outcome for r in results] == ["success"] * 4, [(r.seed, r.outcome, r.steps) for r in results]
    assert "route_around_block" in decided


def test_capture_is_ready_only_when_the_candidates_reach_the_evader(pursuit_base):
    """Under a rule that shortens the reach to 1 (short-reach), pursuers 3 cells from the evader
    cannot all step next to it: capture is not ready, for the oracle and in the state summary."""
    shortened = dict(READY, candidates=[[c for c in cells if abs(c[0] - p[0]) + abs(c[1] - p[1]) <= 1]
                                        for p, cells in zip(READY["pursuers"], READY["candidates"])])
    assert capture_ready(READY) and not capture_ready(shortened)
    assert not pursuit_base.applies(pursuit_base.entry("capture_adjacent"), shortened)


def test_short_reach_games_are_captured(registry):
    """With the reach cut to 1 the oracle once took "every pursuer within 2 of a cell next to the
    evader" for capture ready and chased in a corner until the 100-step limit (seeds 0-5 among them)."""
    results, decided = _expert_games(registry, range(6), emergency_seed=0, rule="short-reach")
    assert [r.outcome for r in results] == ["success"] * 6, [(r.seed, r.outcome, r.steps) for r in results]


def test_pin_reads_the_reach_from_the_candidates(registry):
    """Under short-reach (emergency seed 0) game seed 27 took the oracle 38 steps while
    encircle_evader alone took 25: pin_against_edge counted on every pursuer reaching 2 cells
    next step. It reads each pursuer's reach from its candidates now, and the game is as short as
    encircle's."""
    results, decided = _expert_games(registry, [27], emergency_seed=0, rule="short-reach")
    assert results[0].outcome == "success" and results[0].steps <= 25, (results[0].outcome, results[0].steps)
    assert "pin_against_edge" in decided
