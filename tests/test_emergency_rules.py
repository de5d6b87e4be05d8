"""Emergencies change the rules: the referee applies them to every move, and each kind's
rule, its reference function and its verification cases agree."""
import pytest
from hypothesis import given, strategies as st

from ldengine.emergency.rule import Instance, under_emergency
from ldengine.errors import LDEngineError
from ldengine.sandbox import IsolatedSandbox
from ldengine_plugins.pursuit.emergencies import KINDS
from ldengine_plugins.pursuit.rules import REACH, PursuitGame, manhattan

EVALUATED = [k for k in KINDS if k.split == "eval"]
cells = st.tuples(st.integers(0, 20), st.integers(0, 20))


@pytest.fixture(scope="module")
def sandbox():
    with IsolatedSandbox() as isolated:
        yield isolated


def test_there_are_at_least_three_evaluated_kinds_and_training_kinds_apart():
    """restricted-area and at least two more kinds are evaluated; none of them is a training kind."""
    names = {k.name for k in EVALUATED}
    assert "restricted-area" in names and len(names) >= 3
    assert not names & {k.name for k in KINDS if k.split == "train"}


@pytest.mark.parametrize("kind", EVALUATED, ids=lambda k: k.name)
@given(seed=st.integers(0, 10_000), src=cells, moves=st.lists(st.tuples(st.integers(-2, 2), st.integers(-2, 2)),
                                                                 min_size=3, max_size=3))
def test_the_referee_counts_a_violation_exactly_when_the_new_rule_forbids_a_move(kind, seed, src, moves):
    """A pursuer move that is legal under the old rules is a violation exactly when the
    emergency's rule forbids it; the pursuer then stays."""
    params = kind.params(seed)
    instance = Instance(kind, params)
    evader = (20, 20) if manhattan(src, (20, 20)) > 2 else (0, 0)
    game = PursuitGame(21, [src] * 3, evader, frozenset(), instance)
    proposals = [[src[0] + dx, src[1] + dy] for dx, dy in moves]
    step = game.pursuer_step(proposals)
    for proposal, illegal, position in zip(proposals, step.illegal, step.positions):
        old_legal = (0 <= proposal[0] <= 20 and 0 <= proposal[1] <= 20
                     and manhattan(src, tuple(proposal)) <= REACH and tuple(proposal) != evader)
        assert illegal == (not old_legal or not kind.allows(params, "pursuer", src, tuple(proposal)))
        assert position == (src if illegal else tuple(proposal))


@pytest.mark.parametrize("kind", EVALUATED, ids=lambda k: k.name)
@given(seed=st.integers(0, 10_000), evader=cells, pursuers=st.lists(cells, min_size=3, max_size=3))
def test_the_evader_only_moves_where_the_new_rule_allows(kind, seed, evader, pursuers):
    params = kind.params(seed)
    game = PursuitGame(21, pursuers, evader, frozenset(), Instance(kind, params))
    before = game.evader
    after = game.evader_step(lambda legal, g: legal[-1])
    assert after == before or kind.allows(params, "evader", before, after)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_the_reference_function_obeys_the_rule_on_its_cases(kind, sandbox):
    """The teacher's function for each kind passes the kind's own verification (in the
    isolated sandbox), on several parameter draws."""
    from ldengine.emergency.verify import check_function
    for seed in (0, 1, 2):
        params = kind.params(seed)
        check = check_function(kind.reference(params), kind.function_name(), kind.cases(params, seed),
                               kind.properties, sandbox)
        assert check.passed, (params, check.reasons)


@pytest.mark.parametrize("kind", EVALUATED, ids=lambda k: k.name)
def test_the_cases_catch_a_function_that_ignores_the_rule(kind, sandbox):
    """Every evaluated kind's cases reject the identity function: the rule must be applied."""
    from ldengine.emergency.verify import check_function
    params = kind.params(0)
    name = kind.function_name()
    ignore = kind.header(params) + "    return dict(obs)\n"
    check = check_function(ignore, name, kind.cases(params), kind.properties, sandbox, difference=kind.difference)
    assert not check.passed and "forbids" in check.reasons[0]


def test_games_start_outside_the_restricted_area_and_the_state_names_the_rule(registry, pursuit_task):
    task = under_emergency(registry, pursuit_task, "restricted-area", 3)
    blocked = task.blocked()
    assert len(blocked) == 25
    for seed in range(30):
        game, _ = task.new_game(seed)
        assert not blocked & {*game.pursuers, game.evader}
    state = game.state()
    assert state["emergency"]["name"] == "restricted-area" and "5x5" in state["emergency"]["rule"]
    assert "New rule:" in task.rules and "pursuer.emergency" in task.stages
    assert task.pipeline == pursuit_task.pipeline      # only an adopting agent adds the stage


def test_an_unknown_or_foreign_emergency_is_a_clear_error(registry, pursuit_task):
    with pytest.raises(LDEngineError, match="unknown emergency 'lava'"):
        under_emergency(registry, pursuit_task, "lava")
