"""A clause read by the rule language's lexicon and a grammar, no model (ldengine/lexicon.py,
pursuit's plugins/pursuit/lexicon.py): words are tagged by the longest entry, a Lark grammar
composes them into conditions of the notation, and the language names the programs that
denote exactly those moves. Clauses the grammar cannot parse, or whose words the lexicon must
not read past, have no lexical reading (the student reads them)."""
import pytest
from hypothesis import given, settings, strategies as st

from ldengine import lexicon as lx
from ldengine import rulelang as rl
from ldengine.errors import LDEngineError
from ldengine_plugins.pursuit import rule_program as rp

LANGUAGE = rp.PursuitRules()
LEXICON = LANGUAGE.lexicon


def read(clause: str) -> tuple:
    return lx.readings(LANGUAGE, [clause]).get(clause, ())


def test_the_tagger_takes_the_longest_entry_and_skips_words_it_does_not_know():
    tags = lx.tag(LEXICON, "a cell whose x coordinate is exactly 11 more than its y")
    assert [(t.kind, t.words) for t in tags] == [("TERM", "x coordinate"), ("CMP", "is exactly"),
                                                  ("DIFF", "11 more than"), ("TERM", "y")]
    assert [t.kind for t in lx.tag(LEXICON, "columns 11 or more")] == ["TERM", "NUM", "POST"]


@pytest.mark.parametrize("clause, program", [
    ("the square at (4, 13)", ("cell", 4, 13)),
    ("the tile sitting in column 17, row 2", ("cell", 17, 2)),
    ("any cell whose x coordinate is 15", ("column", 15)),
    ("a cell whose two coordinates add up to 18", ("anti_diagonal", 18)),
    ("a cell whose x is exactly 11 more than its y", ("diagonal", 11)),
    ("the block spanning columns 3 through 7 and rows 12 through 16", ("rectangle", 3, 7, 12, 16)),
    ("the perimeter cells of the box covering columns 5 to 15 and rows 5 to 15", ("border", 5, 15, 5, 15)),
    ("everything west of column 5", ("west_of", 5)),
    ("columns 11 or more", ("east_of", 10)),
    ("odd-numbered rows", ("y_mod", 2, 1)),
    ("columns whose number leaves a remainder of 1 when divided by 3", ("x_mod", 3, 1)),
    ("cells whose coordinates sum to a multiple of 3", ("sum_mod", 3, 0)),
    ("within 3 steps of the centre square (10, 10)", ("distance", 10, 10, 3)),
    ("moving east", ("goes_east",)),
    ("the pursuer stays put", ("length", 0)),
    ("a move that covers two squares", ("length", 2)),
    ("a wall between columns 13 and 14 from row 2 to row 8", ("wall_x", 13, 2, 8)),
    ("a pursuer standing in columns 3 to 7 and rows 2 to 5", ("start", 3, 7, 2, 5)),
    ("outside the box from (2, 3) to (6, 9)", ("Not", ("rectangle", 2, 6, 3, 9))),
])
def test_a_clause_reads_into_the_program_that_forbids_its_moves(clause, program):
    """Every reading denotes exactly the moves of the clause's own program."""
    found = read(clause)
    assert found, clause
    assert {LANGUAGE.denotation(p) for p in found} == {LANGUAGE.denotation(program)}, (clause, found)


def test_conditions_no_primitive_denotes_are_composed_with_the_languages_combinators():
    """Two conditions in one clause become And of their primitives; places listed with "and"
    (a conjunction that forbids nothing) are either of them; "straight north" is two conditions."""
    assert LANGUAGE.denotation(read("row 7 anywhere east of column 10")[0]) == \
        LANGUAGE.denotation(("And", ("row", 7), ("east_of", 10)))
    assert LANGUAGE.denotation(read("the squares (5, 5) and (15, 15)")[0]) == \
        LANGUAGE.denotation(("Or", ("cell", 5, 5), ("cell", 15, 15)))
    assert LANGUAGE.denotation(read("columns 3 and 17")[0]) == LANGUAGE.denotation(("Or", ("column", 3), ("column", 17)))
    assert LANGUAGE.denotation(read("moving straight north")[0]) == \
        LANGUAGE.denotation(("And", ("goes_north",), ("keeps_column",)))


@pytest.mark.parametrize("clause", [
    "column 8, except where it meets row 10",          # a connective's words: the splitter's, not the lexicon's
    "x > 5 and the move goes east",                    # symbols: the notation reads them
    "column 5 17",                                     # a number no condition takes
    "it is false that the move goes east",
    "the cell two steps beyond the evader",            # nothing the grammar composes
    "",
])
def test_clauses_the_lexicon_must_not_read_have_no_reading(clause):
    assert read(clause) == ()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20), st.integers(0, 20),
       st.sampled_from(["the block of columns {a} through {b} and rows {c} through {d}",
                        "cells with x from {a} to {b} and y from {c} to {d}",
                        "the box from ({a}, {c}) to ({b}, {d})",
                        "the rectangle spanning columns {a}-{b} and rows {c}-{d}"]))
def test_any_box_in_words_reads_as_its_rectangle(a, b, c, d, words):
    """Property: any box of the board, in any of these wordings, reads exactly as its rectangle."""
    a, b, c, d = min(a, b), max(a, b), min(c, d), max(c, d)
    found = read(words.format(a=a, b=b, c=c, d=d))
    assert found and LANGUAGE.denotation(found[0]) == LANGUAGE.denotation(("rectangle", a, b, c, d))


def test_a_bad_pattern_is_refused_and_a_language_without_a_lexicon_reads_nothing():
    with pytest.raises(LDEngineError, match="not a pattern"):
        lx.Lexicon((lx.Entry("TERM", "x(", "x"),))

    class Wordless(rp.PursuitRules):
        lexicon = None
    assert lx.readings(Wordless(), ["column 5"]) == {}


def test_the_lexicon_constrains_the_reading_of_a_whole_rule_without_a_model():
    """Through ``rulelang.read`` with a clause reader that takes the lexicon's (or the symbols')
    first reading: a rule in words the student was never taught reads exactly, frames and
    connectives split as before."""
    text = "Pursuers may not land on cells whose coordinates add up to an odd number, unless x equals 10."
    [best, *_] = rl.read(None, LANGUAGE, text, clause_reader=first_reading)
    assert LANGUAGE.denotation(best.program) == LANGUAGE.denotation(("Except", ("sum_mod", 2, 1), ("column", 10)))
    assert rl.read(None, LANGUAGE, text, clause_reader=first_reading, lexical=False) == []


def first_reading(student, language, clauses, only=None):
    """A clause reader without a model: the lexicon's (or the symbols') first reading."""
    return {c: ((only[c][0], 0.0) if only and only.get(c) else (None, float("-inf"))) for c in clauses}


@pytest.mark.parametrize("clause, program", [
    # a marker in words on a condition in symbols: the symbols alone say the rectangle
    ("the move ends on the border of the rectangle 6 <= x <= 11, 1 <= y <= 5", ("border", 6, 11, 1, 5)),
    ("a cell outside the rectangle 3 <= x <= 7, 2 <= y <= 9", ("Not", ("rectangle", 3, 7, 2, 9))),
    # a compass word before "of" names a place, not a move; "up" only after a verb of moving
    ("a cell north of row 13", ("north_of", 13)),
    ("end up east of column 15", ("east_of", 15)),
    ("end up in row 16", ("row", 16)),
    ("the north-west corner cell (0, 20)", ("cell", 0, 20)),
    ("moves up", ("goes_north",)),
    # "edges included": the whole box, not its border
    ("the area from column 12 to column 19 and from row 0 to row 5, edges included", ("rectangle", 12, 19, 0, 5)),
    # a part that restates another is left out, not read as a list
    ("moving straight north, staying in the same column", ("And", ("goes_north",), ("keeps_column",))),
])
def test_markers_and_directions_are_read_where_the_words_put_them(clause, program):
    found = read(clause)
    assert found, clause
    assert LANGUAGE.denotation(found[0]) == LANGUAGE.denotation(program), (clause, found)


def test_symbols_a_marker_does_not_change_are_left_to_the_notation():
    assert read("the move ends inside the rectangle 6 <= x <= 11, 1 <= y <= 5") == ()


@pytest.mark.parametrize("text, unread", [
    ("Pursuers may not enter the shaded cells of column 5.", "shaded"),
    # a word no entry reads, in the region
    ("Pursuers may not enter the diamond around (10, 10).", "diamond"),
])
def test_yes_stores_no_reading_that_left_words_unread(text, unread):
    """Words the lexicon does not know (or a condition outside the rule's region) make the reading
    advisory: shown, never stored by --yes."""
    from ldengine.emergency.read import compile_reading
    readings = rl.read(None, LANGUAGE, text, clause_reader=first_reading)
    assert readings and unread in readings[0].unread
    compiled, why = compile_reading(LANGUAGE, readings, text, unanimous=True)
    assert compiled is None and "not in the rule language's lexicon" in why and unread in why


@pytest.mark.parametrize("text", [
    "Pursuers may not land on cells whose coordinates add up to an odd number, unless x equals 10.",
    "A move from (px, py) to (x, y) is now forbidden when the move ends on the border of the rectangle "
    "6 <= x <= 11, 1 <= y <= 5 (a cell of it in column 6 or 11, or in row 1 or 5).",
    "From now on, a pursuer standing on (px, py) must not go to (x, y) whenever the pursuer lands exactly on (11, 15).",
])
def test_a_rule_whose_every_word_is_read_is_stored_with_yes(text):
    from ldengine.emergency.read import compile_reading
    readings = rl.read(None, LANGUAGE, text, clause_reader=first_reading)
    assert readings[0].unread == ()
    assert compile_reading(LANGUAGE, readings, text, unanimous=True)[0] is not None


@pytest.mark.parametrize("text, program", [
    # words before a frame that state a condition are the rule's subject: the moves it holds for
    ("Pursuers starting in columns 0 to 4, rows 6 to 14 are not allowed to move west.",
     ("And", ("start", 0, 4, 6, 14), ("goes_west",))),
    ("East of column 10, pursuers may only land in even rows.", ("And", ("east_of", 10), ("Not", ("y_mod", 2, 0)))),
    ("Pursuers standing west of column 6 may not move east.", ("And", ("start", 0, 5, 0, 20), ("goes_east",))),
    # ... but no frame is taken past words the lexicon must not read past
    ("Eastward moves are forbidden except when they end north of row 15.",
     ("Except", ("goes_east",), ("north_of", 15))),
])
def test_words_before_the_frame_are_read_as_its_subject(text, program):
    [best, *_] = rl.read(None, LANGUAGE, text, clause_reader=first_reading)
    assert LANGUAGE.denotation(best.program) == LANGUAGE.denotation(program), best.program


def test_a_text_the_lexicon_reads_one_way_is_read_without_the_model():
    """``read_without_model``: every clause read one way by the lexicon or the symbols, every
    parse agreeing: that reading (its unread words still listed, so --yes still refuses them);
    a clause no entry reads needs the student (None). ``rules read`` then loads no model and
    says so in its JSON."""
    import json
    from click.testing import CliRunner
    from ldengine.cli import cli
    from ldengine.rulelang import read_without_model
    [reading] = read_without_model(LANGUAGE, "Pursuers may not enter column 7 or row 3.")
    assert reading.text == "Or(column(7), row(3))" and not reading.unread and not reading.guessed
    [reading] = read_without_model(LANGUAGE, "Pursuers may not enter the shaded cells of column 5.")
    assert reading.text == "column(5)" and reading.unread == ("shaded",)
    assert read_without_model(LANGUAGE, "Pursuers must keep off the purple region of the board.") is None
    result = CliRunner().invoke(cli, ["rules", "read", "No pursuer may move east.", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output[result.output.index("{"):])
    assert answer["reader"] == "lexicon" and answer["adapter"] is None
    assert [r["program"] for r in answer["readings"]] == ["goes_east()"]


def test_pursuers_named_with_where_they_are_is_where_the_move_starts():
    """A subject naming the pursuers with a place ("pursuers in columns 15 to 20", "pursuers on
    row 3") is where they stand before moving; it was read as where the move ends ("in columns
    15 to 20"), or, as a term and a number ("row 3"), not read at all, and both were stored wrong."""
    from ldengine.rulelang import read_without_model
    for text, program in (("Pursuers in columns 15 to 20 may only move west.",
                           "And(start(15, 20, 0, 20), Not(goes_west()))"),
                          ("Pursuers on row 3 may not move north.", "And(start(0, 20, 3, 3), goes_north())"),
                          ("Pursuers may not move into column 5.", "column(5)")):
        [reading] = read_without_model(LANGUAGE, text)
        assert reading.text == program and not reading.unread, (text, reading.text, reading.unread)


@pytest.mark.parametrize("text, program", [
    # an obligation is the complement of what is forbidden
    ("Every move must be exactly one step long.", "Not(length(1))"),
    ("Pursuers must end every move within 8 steps (Manhattan distance) of the centre cell (10, 10).",
     "Not(distance(10, 10, 8))"),
    ("Pursuers in the lower half (rows 0-9) must keep their column.",
     "And(start(0, 20, 0, 9), Not(keeps_column()))"),
    # a wall whose span is not said runs the whole line
    ("A wall runs the full height of the board between column 9 and column 10.", "wall_x(9, 0, 20)"),
    ("No move may cross the line between row 0 and row 1, anywhere along the board.", "wall_y(0, 0, 20)"),
    ("A wall between columns 3 and 4 along rows 2 to 6 may not be crossed.", "wall_x(3, 2, 6)"),
    # both coordinates at once
    ("Cells with both coordinates even are forbidden.", "And(x_mod(2, 0), y_mod(2, 0))"),
    # the board's own places: a compass word before "corner" or "edge" is a place, not a move
    ("Pursuers may not end up on the south-west corner square of the board.", "cell(0, 0)"),
    ("Pursuers may not enter the column along the east edge of the board.", "column(20)"),
    ("No pursuer may enter the southernmost row.", "row(0)"),
    ("Pursuers may not step onto the outer ring of the board.", "border(0, 20, 0, 20)"),
])
def test_obligations_whole_walls_and_both_coordinates_are_read_by_the_lexicon(text, program):
    """Referees' rules the reading missed (session 19): "must" with no negation after it is a
    region of allowed moves (its complement is forbidden); a wall between two lines with no
    span is across the whole board; "both coordinates even" is both conditions; the board's
    corners, edge lines and outer ring are places (they were read as moves north or east)."""
    [best, *_] = rl.read(None, LANGUAGE, text, clause_reader=first_reading)
    assert best.text == program, (text, best.text)


def test_a_negated_obligation_and_an_allowed_part_are_not_read_as_what_is_allowed():
    """"must not cross" is no region of allowed moves (a frame of allowed moves never takes a
    region that opens with a negation); "row 10 itself is still allowed" is no part of the
    forbidden region (it was read as a list, "below row 10" and "row 10", and stored wrong)."""
    from ldengine.rulelang import framed
    [(forbids, words, _, _)] = framed(LANGUAGE, "Pursuers must not cross column 5 going east.")
    assert forbids
    assert not read("Everything below row 10 is closed; row 10 itself is still allowed")


def test_a_condition_beside_alternatives_is_read_both_ways():
    """"row 5 or row 15 within columns 5 to 15": the columns may hold for row 15 alone or for
    both rows; both readings are kept, so the reading is not one way (the student ranks them,
    and --yes refuses where they differ). It was read only the first way and stored wrong."""
    from ldengine.rulelang import read_without_model
    text = "It is forbidden to move onto row 5 or row 15 within columns 5 to 15."
    assert set(read(text[:-1])) == {("Or", ("row", 5), ("rectangle", 5, 15, 15, 15)),
                                    ("And", ("Or", ("row", 5), ("row", 15)), ("rectangle", 5, 15, 0, 20))}
    assert read_without_model(LANGUAGE, text) is None
