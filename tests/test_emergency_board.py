"""A rule in words alone: the board map of what a written function forbids, its judge, and the
rule restated from the map the user confirmed (real isolated sandbox, real rules)."""
import pytest

from ldengine.emergency.board import CLOSED, OPEN, BoardJudge, BoardMap
from ldengine.emergency.verify import verify
from ldengine_plugins.pursuit.verification import move_map
from ldengine.emergency.write import Attempt, Written, confirm
from ldengine.sandbox import IsolatedSandbox

TEXT = "Pursuers may not enter column 10."


def body(condition: str) -> str:
    return ("    out = dict(obs)\n"
            f"    out[\"candidates\"] = [[[x, y] for x, y in cells if {condition}] for cells in obs[\"candidates\"]]\n"
            "    return out\n")


@pytest.fixture(scope="module")
def sandbox():
    with IsolatedSandbox() as box:
        yield box


@pytest.fixture
def rule(pursuit_task):
    return pursuit_task.custom_emergency(TEXT, {})


def judge_of(rule, lines, ask=None):
    return BoardJudge("obey_new_rule", rule.cases({})[0][0], lines.append, rule.move_map, ask)


def test_words_alone_give_a_rule_with_one_state_to_check_the_form_on_and_no_worked_example(rule):
    """It checks a function for a rule known by its words only on its form: one state of the
    stage's input shape, no expectation beyond the properties, and no Example in the prompt."""
    assert not rule.examples_given and len(rule.cases({})) == 1
    assert "Rules: Pursuers may not enter column 10." in rule.header({}) and "Example:" not in rule.header({})


def test_the_map_shows_what_the_function_forbids_on_every_move(rule, sandbox):
    """It runs the function on every move of the board in the worker and draws closed cells."""
    source = rule.header({}) + body("x != 10")
    moves = move_map(source, "obey_new_rule", sandbox, rule.cases({})[0][0])
    board = BoardMap.of(moves, 21)
    assert board.moves == 5317 and len(board.forbidden_moves) == 263 and board.closed_cells == 21
    rows = board.text().splitlines()
    assert rows[0] == "20 " + " ".join(CLOSED if x == 10 else OPEN for x in range(21))
    assert "forbids 263 of the board's 5,317 single moves" in board.summary()


def test_the_judge_refuses_a_function_that_forbids_nothing_or_everything_and_asks_about_the_rest(rule, sandbox):
    """A function that keeps every cell (or none) is no rule: refused without asking; the user's
    no refuses a function; a yes keeps its map."""
    asked = []
    for condition, answer, refused in (("True", True, "forbids no move"), ("False", True, "forbids every move"),
                                       ("x != 10", False, "did not confirm"), ("x != 10", True, None)):
        lines = []
        judge = judge_of(rule, lines, lambda: asked.append(condition) or answer)
        source = rule.header({}) + body(condition)
        got = judge(Attempt(1, 0.0, 0, source, verify(rule, {}, source, "obey_new_rule", sandbox)), sandbox)
        assert (got is None) if refused is None else (refused in got), (condition, got)
        assert any("single moves" in line for line in lines)
    assert asked == ["x != 10", "x != 10"]
    assert judge.board is not None and judge.board.closed_cells == 21


def test_a_hostile_function_gets_an_error_on_the_map_not_a_hang(rule, sandbox):
    source = rule.header({}) + "    while True:\n        pass\n"
    assert isinstance(move_map(source, "obey_new_rule", sandbox, rule.cases({})[0][0]), str)
    source = rule.header({}) + "    return 7\n"
    assert move_map(source, "obey_new_rule", sandbox, rule.cases({})[0][0]) == "returns no candidate lists"


def test_the_confirmed_map_becomes_the_rules_examples_and_the_referees(rule, sandbox):
    """Once confirmed, the rule holds the map's forbidden moves (and a sample of allowed ones) as
    examples, the stored function gets a worked example from them, passes again against them,
    and the referee forbids exactly the confirmed moves."""
    source = rule.header({}) + body("x != 10")
    lines = []
    judge = judge_of(rule, lines)
    attempt = Attempt(1, 0.0, 0, source, verify(rule, {}, source, "obey_new_rule", sandbox))
    assert judge(attempt, sandbox) is None
    written = Written(rule.name, {}, "obey_new_rule", [attempt], source, {"kind": rule.name})
    check = confirm(written, rule, {}, judge.board)
    assert check.passed and check.cases >= 263 + 64     # its examples, then the move domain
    assert "Example:" in written.source and written.source.endswith(body("x != 10"))
    record = written.provenance["custom_rule"]
    assert len(record["forbidden"]) == 263 and len(record["allowed"]) == 64
    assert written.provenance["confirmed"]["forbidden_moves"] == 263
    restated = rule.confirmed(judge.board.forbidden_moves, [])
    assert not restated.allows({}, "pursuer", (9, 5), (10, 5)) and restated.allows({}, "pursuer", (9, 5), (9, 6))
    assert restated.name == rule.name


def test_each_map_drawn_to_png_gets_its_own_file_with_its_attempt_and_a_legend(rule, sandbox, tmp_path):
    """``--png FILE`` kept only the last map, untitled and without a legend: each map drawn now
    goes to its own file (FILE, then FILE-attemptN.png), titled with its attempt, with a legend."""
    from PIL import Image
    lines = []
    judge = BoardJudge("obey_new_rule", rule.cases({})[0][0], lines.append, rule.move_map, lambda: False,
                       str(tmp_path / "map.png"),
                       title=TEXT)
    for number, condition in ((1, "x != 10"), (2, "x != 9")):
        source = rule.header({}) + body(condition)
        judge(Attempt(number, 0.0, 0, source, verify(rule, {}, source, "obey_new_rule", sandbox)), sandbox)
    drawn = sorted(p.name for p in tmp_path.glob("*.png"))
    assert drawn == ["map-attempt2.png", "map.png"], drawn
    assert [line for line in lines if line.startswith("map drawn to")] == [
        f"map drawn to {tmp_path / 'map.png'}", f"map drawn to {tmp_path / 'map-attempt2.png'}"]
    assert all(Image.open(tmp_path / name).size[0] > 500 for name in drawn)      # the legend widens the figure
