"""The generated rule language (plugins/pursuit/rule_shapes.py): rules drawn from primitives
and combinators are deterministic, non-trivial, held out by shape and by wording, and each
rule's condition (run only in the isolated sandbox) agrees with its closure on every move."""
import random
from collections import Counter

import pytest

from ldengine.emergency.verify import check_function, verify
from ldengine.sandbox import IsolatedSandbox
from ldengine_plugins.pursuit import rule_shapes as rs
from ldengine_plugins.pursuit.emergencies import PursuitEmergency, legal_obs

SAMPLE = 20             # rules (half of each split) given the full verification


@pytest.fixture(scope="module")
def sandbox():
    with IsolatedSandbox() as isolated:
        yield isolated


@pytest.fixture(scope="module")
def train_rules():
    return rs.draw_rules(2000, seed=0, split="train")


@pytest.fixture(scope="module")
def eval_rules():
    return rs.draw_rules(500, seed=0, split="eval")


def column(a: int) -> rs.Primitive:
    return rs.Primitive("column", f"x == {a}", (("cell", lambda x, y: x == a),), (f"x == {a}",), (f"x is {a}",))


def box(a0: int, a1: int, b0: int, b1: int) -> rs.Primitive:
    return rs.Primitive("rectangle", f"{a0} <= x <= {a1} and {b0} <= y <= {b1}",
                        (("cell", lambda x, y: a0 <= x <= a1 and b0 <= y <= b1),), ("box",), ("box",))


def every_move_obs(size: int = rs.SIZE) -> dict:
    """One state holding every move of the board: a pursuer on each cell, each with all its
    on-board destinations within reach."""
    domain = rs.move_domain(size)
    cells = domain.values["cell"]
    cands: dict[tuple, list] = {cell: [] for cell in cells}
    for x, y, px, py in domain.moves:
        cands[(px, py)].append([x, y])
    return {"pursuers": [list(c) for c in cells], "candidates": [cands[c] for c in cells]}


def covering(rules: list) -> list:
    """The first rule with each primitive type and each combinator, then the first 60."""
    chosen: dict[str, rs.ShapeRule] = {}
    for rule in rules:
        for part in {p.type for p in rs.primitives_of(rule.region)} | set(combinators(rule.region)):
            chosen.setdefault(part, rule)
    return list({r.cond: r for r in [*chosen.values(), *rules[:60]]}.values())


def combinators(region) -> list[str]:
    if isinstance(region, rs.Primitive):
        return []
    return [region.op] + [op for part in region.parts for op in combinators(part)]


# ---- generation ------------------------------------------------------------------------------

def test_the_same_arguments_give_the_same_rules():
    """It draws the same rules, conditions and words, for the same seed, and a longer call
    starts with the rules of a shorter one."""
    first, again = rs.draw_rules(60, seed=7), rs.draw_rules(60, seed=7)
    assert [(r.cond, r.text) for r in first] == [(r.cond, r.text) for r in again]
    assert [r.cond for r in rs.draw_rules(20, seed=7)] == [r.cond for r in first[:20]]
    assert [r.cond for r in rs.draw_rules(60, seed=8)] != [r.cond for r in first]
    assert [k.name for k in rs.shape_rules(30, seed=7)] == [k.name for k in rs.shape_rules(30, seed=7)]


def test_no_eval_shape_is_ever_drawn_for_training(train_rules, eval_rules):
    """It never draws a rule of a held-out shape for training, and draws only held-out shapes for eval."""
    assert {rs.split_of(r.signature) for r in train_rules} == {"train"}
    assert {rs.split_of(r.signature) for r in eval_rules} == {"eval"}
    assert not {r.signature for r in train_rules} & {r.signature for r in eval_rules}
    assert {k.split for k in rs.shape_rules(50, split="eval")} == {"eval"}


def test_about_a_fifth_of_the_shapes_are_held_out():
    signatures = rs.all_signatures()
    held = [s for s in signatures if rs.split_of(s) == "eval"]
    assert len(signatures) > 10_000 and 0.15 < len(held) / len(signatures) < 0.25


def test_a_shape_signature_ignores_the_order_and_grouping_of_and_and_or():
    """It names and(a,and(b,c)) and and(and(c,b),a) alike, but keeps except's order."""
    a, b, c = rs.Shape("column"), rs.Shape("row"), rs.Shape("distance")
    left = rs.Shape("and", (a, rs.Shape("and", (b, c))))
    right = rs.Shape("and", (rs.Shape("and", (c, b)), a))
    assert rs.signature(left) == rs.signature(right) == "and(column,distance,row)"
    assert rs.signature(rs.Shape("except", (a, b))) != rs.signature(rs.Shape("except", (b, a)))
    assert rs.signature(rs.Shape("not", (rs.Shape("or", (b, a)),))) == "not(or(column,row))"


def test_every_primitive_and_every_combinator_occurs_in_both_splits(train_rules, eval_rules):
    for rules in (train_rules, eval_rules):
        types = Counter(p.type for r in rules for p in rs.primitives_of(r.region))
        ops = Counter(op for r in rules for op in combinators(r.region))
        assert set(types) == set(rs.PRIMITIVE_TYPES) and set(ops) == set(rs.COMBINATORS)


def test_rules_nest_at_most_two_deep_with_at_most_three_primitives(train_rules):
    def depth(region) -> int:
        return 0 if isinstance(region, rs.Primitive) else 1 + max(depth(p) for p in region.parts)
    assert max(depth(r.region) for r in train_rules) == 2
    assert max(len(rs.primitives_of(r.region)) for r in train_rules) == rs.MAX_PRIMITIVES


# ---- non-trivial rules -----------------------------------------------------------------------

def test_every_rule_forbids_some_but_not_most_moves(train_rules, eval_rules):
    """Counted with the closure on every move of the board, for a sample."""
    domain = rs.move_domain()
    for rule in train_rules[:40] + eval_rules[:40]:
        forbidden = rs.full_mask(rs.predicate(rule.region), domain).bit_count() / len(domain.moves)
        assert 0 < forbidden <= rs.MAX_FORBIDDEN and round(forbidden, 4) == rule.forbidden_share


def test_it_refuses_trivial_rules_and_idle_clauses():
    """It refuses a rule forbidding nothing, one forbidding almost every move, and one with a
    clause that changes nothing; it takes a sensible one."""
    domain = rs.move_domain()
    nothing = rs.Combined("and", (column(3), column(4)))
    almost_all = rs.Combined("not", (column(3),))
    idle = rs.Combined("and", (box(4, 6, 4, 6), box(2, 8, 2, 8)))     # the first lies inside the second
    assert rs.usable(nothing, domain) is None
    assert rs.usable(almost_all, domain) is None
    assert rs.usable(idle, domain) is None
    assert rs.usable(rs.Combined("except", (box(2, 8, 2, 8), box(4, 6, 4, 6))), domain) is not None


def test_the_fast_masks_equal_the_closures_on_every_move():
    """The tabulated masks (generation's speed) are the closures' regions, move for move."""
    domain, rng = rs.move_domain(), random.Random(0)
    for kind in rs.PRIMITIVE_TYPES:
        for _ in range(15):
            primitive = rs.PRIMITIVES[kind](rng, rs.SIZE)
            assert rs.primitive_mask(primitive, domain) == rs.full_mask(primitive.test, domain), primitive.cond
    for rule in rs.draw_rules(60, seed=3):
        assert rs.region_mask(rule.region, domain) == rs.full_mask(rs.predicate(rule.region), domain)


# ---- the rules as kinds, in the sandbox ------------------------------------------------------

def test_a_rule_is_an_emergency_kind_like_the_hand_written_ones():
    """describe, condition, allows, reference, cases, blocked and properties all work, with no
    {param} fields left and only pursuers bound."""
    rule = rs.draw_rules(1, seed=11)[0]
    kind = rule.kind()
    assert isinstance(kind, PursuitEmergency) and kind.params(0) == {} and kind.pieces == ("pursuer",)
    assert kind.describe({}) == rule.text and kind.condition({}) == rule.cond == f"not ({rs.condition(rule.region)})"
    assert rs.allowed_condition(rs.Combined("not", (column(3),))) == "x == 3"
    assert kind.summary == rule.signature and "{" not in rule.text + rule.cond
    assert rule.text in kind.reference({}) and kind.reference({}).startswith(f"def {kind.function_name()}(obs):")
    assert kind.allows({}, "evader", (0, 0), (5, 5))
    given, expected = kind.cases({})[0]
    assert kind.properties(given, expected) == [] and isinstance(kind.blocked({}), frozenset)


@pytest.mark.slow
def test_each_condition_agrees_with_its_closure_on_every_move_in_the_sandbox(train_rules, eval_rules, sandbox):
    """The reference function (the condition in text) runs in the isolated sandbox on a state
    holding every move of the board, and keeps exactly the moves the closure allows."""
    obs = every_move_obs()
    for rule in covering(train_rules) + covering(eval_rules):
        kind = rule.kind()
        result = sandbox.call(kind.reference({}), kind.function_name(), obs)
        assert result.ok, result.error
        expected = [[c for c in cells if kind.allows({}, "pursuer", tuple(p), tuple(c))]
                    for p, cells in zip(obs["pursuers"], obs["candidates"])]
        assert result.value["candidates"] == expected, rule.cond


def test_the_reference_passes_the_exhaustive_verification(sandbox):
    """verify: the kind's cases, every move of the board and fresh random states."""
    kinds = rs.shape_rules(SAMPLE // 2, seed=5, split="train") + rs.shape_rules(SAMPLE // 2, seed=5, split="eval")
    for kind in kinds:
        check = verify(kind, {}, kind.reference({}), kind.function_name(), sandbox, seed=1)
        assert check.passed, (kind.summary, kind.condition({}), check.reasons)


def test_a_condition_that_disagrees_with_its_closure_is_caught(sandbox):
    """It would notice a primitive whose text says one column and whose closure another."""
    wrong = rs.Primitive("column", "x == 4", (("cell", lambda x, y: x == 3),), ("x == 4",), ("x is 4",))
    kind = rs.ShapeRule(wrong, "A move from (px, py) to (x, y) is now forbidden when x == 4.", "train", "train",
                        0.05).kind()
    assert not verify(kind, {}, kind.reference({}), kind.function_name(), sandbox, seed=1).passed
    result = sandbox.call(kind.reference({}), kind.function_name(), every_move_obs())
    assert result.ok and result.value["candidates"] != [
        [c for c in cells if kind.allows({}, "pursuer", tuple(p), tuple(c))]
        for p, cells in zip(result.value["pursuers"], every_move_obs()["candidates"])]


def test_the_verification_rejects_a_function_that_ignores_the_rule(sandbox):
    kind = rs.shape_rules(1, seed=5)[0]
    ignore = kind.header({}) + "    return dict(obs)\n"
    assert not verify(kind, {}, ignore, kind.function_name(), sandbox, seed=1).passed
    obs = legal_obs([(10, 10)], (0, 0))
    assert check_function(ignore, kind.function_name(), [(obs, obs)], kind.properties, sandbox).passed


# ---- wordings --------------------------------------------------------------------------------

def test_a_rule_has_several_wordings_and_the_eval_ones_are_apart():
    """Renderings of one rule differ (frames and clauses); the eval wordings never coincide
    with a training one."""
    for rule in rs.draw_rules(10, seed=2):
        train, held = set(rule.rewordings(30)), set(rule.rewordings(30, wording="eval"))
        assert len(train) > 1 and not train & held
        assert len({t.split()[0] for t in train}) > 1                               # the frame varies too


def test_train_texts_use_no_eval_wording(train_rules):
    """No training text has an eval frame or an eval combinator's words; a rule drawn with
    eval wordings uses only those."""
    eval_frames = [f.split("{r}")[0] for f in rs.FRAMES["eval"]]
    eval_joins = [w.replace("{a}", "").replace("{b}", "").strip(" ,;")
                  for op in rs.COMBINATOR_WORDS.values() for w in op["eval"]]
    texts = [r.text for r in train_rules]
    assert not [t for t in texts if any(t.startswith(f) for f in eval_frames)]
    assert not [t for t in texts if any(j.split(":")[0] in t for j in eval_joins)]
    worded = rs.draw_rules(50, seed=0, split="train", wording="eval")
    assert all(any(r.text.startswith(f) for f in eval_frames) for r in worded)
    assert [r.signature for r in worded] and {rs.split_of(r.signature) for r in worded} == {"train"}


def test_every_piece_has_at_least_two_training_wordings_and_its_own_eval_ones():
    rng = random.Random(0)
    for kind in rs.PRIMITIVE_TYPES:
        primitive = rs.PRIMITIVES[kind](rng, rs.SIZE)
        assert len(set(primitive.train_words)) >= 2 and primitive.eval_words
        assert not set(primitive.train_words) & set(primitive.eval_words)
    for words in [*rs.COMBINATOR_WORDS.values(), rs.FRAMES]:
        assert len(words["train"]) >= 2 and words["eval"] and not set(words["train"]) & set(words["eval"])


def test_the_writers_training_data_takes_generated_rules_of_the_training_shapes_only():
    """`finetune --method write --generated-rules N` adds N rules of the pursuit task's rule
    language to the hand-written kinds' functions, each of a training shape; the held-out
    shapes come from the same hook with split "eval"; a task without a rule language is a
    clear error."""
    from ldengine.emergency.teach import rule_languages, writing_data
    from ldengine.errors import LDEngineError
    from ldengine.registry import Registry
    reg = Registry.load()
    plain = writing_data(reg, "pursuit", [1])
    grown = writing_data(reg, "pursuit", [1], generated=12)
    added = grown[len(plain):]
    assert grown[:len(plain)] == plain and len(added) == 12
    train = rule_languages(reg, "pursuit", 12, split="train")
    assert [head for _, head, _ in added] == [kind.header({}) for kind in train]
    assert all(rs.split_of(kind.summary) == "train" for kind in train)
    held = rule_languages(reg, "pursuit", 6, split="eval", wording="eval")
    assert all(rs.split_of(kind.summary) == "eval" for kind in held)
    with pytest.raises(LDEngineError, match="no generated rule language"):
        writing_data(reg, "twentyone", [1], generated=1)


def test_generated_rules_are_a_writing_option_only():
    from click.testing import CliRunner

    from ldengine.cli import cli
    result = CliRunner().invoke(cli, ["finetune", "--generated-rules", "5"])
    assert result.exit_code == 2 and "use them with --method write" in result.output
