"""Conditions written in the rule language's symbols (ldengine/notation.py, pursuit's
``rule_program.notation``): each primitive's own condition, with drawn numbers, denotes that
primitive; prose forms (``=``, ``|a|``, commas) read as the symbols say; hostile text is never
run and never raises; and only clauses whose words add nothing to their symbols are read by
them (a negation or a part in words is left to the parses)."""
import re
import time

import pytest
from hypothesis import given, settings, strategies as st

from ldengine import notation as nt
from ldengine import rulelang as rl
from ldengine_plugins.pursuit import rule_program as rp
from ldengine_plugins.pursuit import rule_shapes as rs

LANGUAGE = rp.PursuitRules()
NAMES = {"x", "y", "px", "py"}
# The primitives whose manual condition is written in symbols (the others: border, walls, in words).


def _filled(name, values):
    """The primitive's manual condition with ``values`` in place of its parameters."""
    signature, condition = rp.SIGNATURES[name].split(": ", 1)
    for param, value in zip(re.findall(r"\w+", signature.partition("(")[2]), values):
        condition = re.sub(rf"\b{param}\b", str(value), condition)
    return condition


SYMBOLIC = [name for name in rp.SIGNATURES if nt.segments(_filled(name, [7] * 4), NAMES)]
SIGNATURES_WITH_PARAMS = [n for n in SYMBOLIC if n not in ("wall_x", "wall_y", "border")]


def _drawn(data, name):
    params = rp.PRIMITIVES[name][1]
    lo = data.draw(st.integers(1, rs.SIZE - 4), label="low")
    values = []
    for i, allowed in enumerate(params):
        if allowed is not None:
            values.append(data.draw(st.sampled_from(allowed)))
        elif name in ("rectangle", "start") and i % 2:
            values.append(values[-1] + data.draw(st.integers(1, 3)))        # x0 < x1, y0 < y1
        else:
            values.append(data.draw(st.integers(lo, rs.SIZE - 3)))
    return values


def test_the_manuals_conditions_are_written_in_symbols():
    assert {"column", "rectangle", "distance", "goes_east", "length", "start", "sum_mod"} <= set(SYMBOLIC)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_each_primitives_own_condition_with_its_numbers_denotes_that_primitive(data):
    name = data.draw(st.sampled_from(SIGNATURES_WITH_PARAMS))
    values = _drawn(data, name)
    if name in ("x_mod", "y_mod", "sum_mod"):
        values[1] = min(values[1], values[0] - 1)
    text = _filled(name, values)
    program = (name, *values)
    if rs.region_mask(rp.region(program), rs.move_domain()) is None:
        return                                      # holds on no move (or every move): not a rule
    assert program in rp.notation(text), (text, rp.notation(text))


@pytest.mark.parametrize("text, program", [
    ("the move ends in row y = 8", ("row", 8)),
    ("the move ends south of row y = 15 (y < 15)", ("south_of", 15)),
    ("x >= 13", ("east_of", 12)),
    ("the move ends inside the rectangle 1 <= x <= 4, 11 <= y <= 17", ("rectangle", 1, 4, 11, 17)),
    ("a move needs |x - px| + |y - py| <= 1", ("Not", ("length", 2))),
    ("min(px, x) <= 3 < max(px, x) and (8 <= py <= 15 or 8 <= y <= 15)", ("wall_x", 3, 8, 15)),
    ("(x, y) == (3, 4)", ("cell", 3, 4)),
    ("x - y == -2", ("diagonal", -2)),
])
def test_prose_forms_read_as_their_symbols_say(text, program):
    assert program in rp.notation(text)


@pytest.mark.parametrize("text", [
    "__import__('os').system('echo hi') == 0", "x ** 99999 > 1", "(" * 5000 + "x" + ")" * 5000 + " > 1",
    "x % 0 == 1", "x " * 20000 + "== 1 +", "(lambda: 1)() == x", "[x for x in y] == 1", "x > 10**100000",
    "x.real > 1", "open('f') == 1", "11 <= x <= 15",
])
def test_hostile_or_partial_text_is_no_condition_and_never_raises(text):
    began = time.perf_counter()
    assert rp.notation(text) == ()
    assert time.perf_counter() - began < 30


def test_only_clauses_whose_words_add_nothing_are_read_by_their_symbols():
    clauses = ["11 <= x <= 15 and 11 <= y <= 15", "it is not the case that x > 3",
               "both x + y is even and y % 2 == 0", "the move ends in column x = 17"]
    assert rl.symbolic(LANGUAGE, clauses) == {clauses[0]: (("rectangle", 11, 15, 11, 15),),
                                              clauses[3]: (("column", 17),)}


def test_a_clause_with_symbols_is_read_only_into_what_they_denote(tokenizer):
    """The grammar of a clause whose symbols denote a primitive admits that one and none."""
    grammar = rl.clause_grammar(LANGUAGE, [11, 15], True, [("rectangle", 11, 15, 11, 15)])
    assert '"rectangle(11, 15, 11, 15)"' in grammar and "column" not in grammar
    rl.GrammarMask(tokenizer, grammar)          # llguidance accepts it


def test_the_student_reads_the_evaluated_kinds_written_in_symbols():
    """The real student, untuned: each evaluated kind whose words state the condition in
    symbols is read exactly, whatever the adapter learnt of the words."""
    from ldengine.models.loading import load_student
    student = load_student()
    for text, want in [
        ("A 5x5 restricted area appeared: no piece may enter a cell (x, y) with 11 <= x <= 15 and 11 <= y <= 15.",
         ("rectangle", 11, 15, 11, 15)),
        ("Deep mud: pursuers may now move at most 1 cell per step: a move from (px, py) to (x, y) needs "
         "|x - px| + |y - py| <= 1.", ("length", 2)),
    ]:
        readings = rl.read(student, LANGUAGE, text)
        assert LANGUAGE.denotation(readings[0].program) == LANGUAGE.denotation(want), readings[0].text


@pytest.fixture(scope="module")
def tokenizer():
    from ldengine.models.loading import load_student
    return load_student().tokenizer
