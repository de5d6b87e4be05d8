"""Move legality and game bookkeeping, property-tested against the README's rules."""
import random

from hypothesis import given, strategies as st

from ldengine_plugins.pursuit import evaders
from ldengine_plugins.pursuit.rules import (MAX_VIOLATIONS, PursuitGame, captured, evader_moves,
                                   is_legal_pursuer_move, random_start)

SIZES = st.integers(min_value=5, max_value=25)


@st.composite
def boards(draw):
    """A board size, distinct cells for three pursuers and an evader, and forbidden cells."""
    size = draw(SIZES)
    cell = st.tuples(st.integers(0, size - 1), st.integers(0, size - 1))
    evader = draw(cell)
    pursuers = draw(st.lists(cell.filter(lambda c: c != evader), min_size=3, max_size=3))
    forbidden = draw(st.frozensets(cell, max_size=12))
    forbidden -= {evader, *pursuers}
    return size, pursuers, evader, forbidden


def proposals(size):
    near = st.tuples(st.integers(-3, size + 2), st.integers(-3, size + 2))
    junk = st.one_of(st.none(), st.text(max_size=3), st.just([1]), st.just([1.0, 2]), st.just([True, 1]))
    return st.one_of(near.map(list), near, junk)


@given(boards(), st.data())
def test_it_judges_a_proposal_by_the_legality_rule(board, data):
    """It accepts a cell iff on the board, within distance 2, not forbidden, not the evader's."""
    size, pursuers, evader, forbidden = board
    prop = data.draw(proposals(size))
    cell = tuple(prop) if isinstance(prop, (list, tuple)) and len(prop) == 2 else None
    expected = (cell is not None and all(type(v) is int for v in cell)
                and 0 <= cell[0] < size and 0 <= cell[1] < size
                and abs(cell[0] - pursuers[0][0]) + abs(cell[1] - pursuers[0][1]) <= 2
                and cell not in forbidden and cell != evader)
    assert is_legal_pursuer_move(pursuers[0], prop, evader, size, forbidden) == expected


@given(boards(), st.data())
def test_it_counts_one_violation_per_illegal_proposal_and_keeps_that_pursuer(board, data):
    """It counts a violation for each illegal proposal, and that pursuer stays where it was."""
    size, pursuers, evader, forbidden = board
    game = PursuitGame(size, list(pursuers), evader, forbidden)
    props = data.draw(st.lists(proposals(size), min_size=3, max_size=3))
    step = game.pursuer_step(props)
    for src, prop, pos, bad in zip(pursuers, props, step.positions, step.illegal):
        assert bad == (not is_legal_pursuer_move(src, prop, evader, size, forbidden))
        assert pos == (src if bad else tuple(prop))
    assert game.violations == sum(step.illegal)
    assert all(0 <= x < size and 0 <= y < size for x, y in game.pursuers)


@given(boards(), st.data())
def test_it_counts_a_missing_or_unreadable_answer_as_three_violations(board, data):
    """It counts every pursuer without a readable proposal as a violation."""
    size, pursuers, evader, forbidden = board
    game = PursuitGame(size, list(pursuers), evader, forbidden)
    game.pursuer_step(data.draw(st.one_of(st.none(), st.text(max_size=5), st.just([]))))
    assert game.violations == 3 and game.pursuers == list(pursuers)


@given(boards())
def test_it_detects_capture_exactly_when_every_pursuer_is_adjacent(board):
    """It ends in success iff all pursuers are within distance 1 after their move."""
    size, pursuers, evader, forbidden = board
    game = PursuitGame(size, list(pursuers), evader, forbidden)
    game.pursuer_step(list(pursuers))
    adjacent = all(abs(p[0] - evader[0]) + abs(p[1] - evader[1]) <= 1 for p in pursuers)
    assert (game.outcome == "success") == adjacent == captured(evader, pursuers)


@given(boards(), st.sampled_from(["greedy", "uniform"]), st.integers(0, 10**6))
def test_it_moves_the_evader_only_to_legal_cells(board, name, seed):
    """It moves the evader at most 1, on the board, never onto a pursuer or forbidden cell."""
    size, pursuers, evader, forbidden = board
    policy = getattr(evaders, name)
    game = PursuitGame(size, list(pursuers), evader, forbidden)
    rng = random.Random(seed)
    new = game.evader_step(lambda legal, g: policy(legal, g.pursuers, rng))
    assert abs(new[0] - evader[0]) + abs(new[1] - evader[1]) <= 1
    assert 0 <= new[0] < size and 0 <= new[1] < size
    assert new not in pursuers and new not in forbidden
    assert new in evader_moves(evader, pursuers, size, forbidden)


@given(st.integers(0, 10**6), SIZES)
def test_it_starts_on_distinct_cells_at_distance_three_or_more(seed, size):
    """It places distinct pieces, each pursuer at distance >= 3 from the evader."""
    pursuers, evader = random_start(random.Random(seed), size)
    assert len({*pursuers, evader}) == 4
    assert all(abs(p[0] - evader[0]) + abs(p[1] - evader[1]) >= 3 for p in pursuers)


def test_it_ends_in_failure_with_violation_at_the_eighth():
    """It ends the game with failure_with_violation on the 8th violation, not before."""
    game = PursuitGame(21, [(0, 0), (0, 5), (5, 0)], (10, 10))
    game.pursuer_step([None, None, None])
    game.pursuer_step([None, None, None])
    assert game.violations == 6 and game.outcome is None
    game.pursuer_step([None, (0, 5), (5, 0)])
    assert game.violations == 7 and game.outcome is None
    game.pursuer_step([None, (0, 5), (5, 0)])
    assert game.violations == MAX_VIOLATIONS + 1 and game.outcome == "failure_with_violation"


def test_it_counts_violations_before_it_checks_capture():
    """It ends with failure_with_violation when the 8th violation comes in the step that would capture
    (the rules: violations are counted first, then capture is checked)."""
    game = PursuitGame(21, [(9, 10), (11, 10), (10, 13)], (10, 10))
    game.violations = MAX_VIOLATIONS - 1
    step = game.pursuer_step([(9, 10), (11, 10), (10, 10)])    # the third proposal is the evader's cell
    assert step.illegal == [False, False, True] and game.outcome is None
    game = PursuitGame(21, [(9, 10), (11, 10), (10, 12)], (10, 10))
    game.violations = MAX_VIOLATIONS
    game.pursuer_step([(9, 10), (11, 10), (10, 11)])            # a capture, but ...
    assert game.outcome == "success"
    game = PursuitGame(21, [(9, 10), (11, 10), (10, 11)], (10, 10))
    game.violations = MAX_VIOLATIONS
    game.pursuer_step([(9, 10), (11, 10), (10, 10)])            # ... with an 8th violation it is a failure
    assert game.violations == MAX_VIOLATIONS + 1 and game.outcome == "failure_with_violation"


def test_it_ends_in_failure_without_violation_after_100_steps():
    """It ends with failure_without_violation when 100 pursuer moves bring no capture."""
    game = PursuitGame(21, [(0, 0), (0, 1), (1, 0)], (20, 20))
    while game.outcome is None:
        game.pursuer_step(list(game.pursuers))
        if game.outcome is None:
            game.evader_step(lambda legal, g: legal[0])
    assert game.outcome == "failure_without_violation" and game.steps == 100


def test_greedy_breaks_ties_in_the_order_stay_right_left_up_down():
    """It picks the first best cell in the order stay, x+1, x-1, y+1, y-1."""
    assert evaders.greedy([(5, 5), (6, 5), (4, 5)], [(5, 0)], random.Random(0)) == (6, 5)
    assert evaders.greedy([(5, 5), (6, 5), (4, 5)], [(5, 0), (5, 10)], random.Random(0)) == (6, 5)
    assert evaders.greedy([(5, 5), (6, 5)], [(0, 5), (10, 5)], random.Random(0)) == (5, 5)
