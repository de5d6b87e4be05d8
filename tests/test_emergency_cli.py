"""Emergencies end to end, as a user runs them: the real student (with the committed
writing adapter) writes, the isolated sandbox verifies, games are played under the new rule."""
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from ldengine.cli import cli
from tests.referee import check_trace

AREA = ["--param", "x0=4", "--param", "y0=10", "--param", "x1=8", "--param", "y1=14"]


def invoke(*args, answer=None):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, input=answer)


@pytest.mark.slow
def test_a_user_describes_a_rule_and_gets_a_verified_stored_function():
    """A rule in words ({name} fields filled from --param) whose parameters match a known
    kind: examples are derived from that kind; each attempt is shown with its verdict and time;
    the passing function's board map is shown and the user confirms it; it is stored with its
    provenance, and verifies again when read back."""
    result = invoke("emergency", "Lava: no piece may enter a cell (x, y) with {x0} <= x <= {x1} and "
                    "{y0} <= y <= {y1}.", *AREA, "--attempts", "4", answer="y\n")
    assert result.exit_code == 0, result.output
    assert "attempt 1 (temperature 0.0, " in result.output and "passed at attempt" in result.output
    assert "Is this the rule? Store this function" in result.output
    assert "forbids 325 of the board's 5,317 single moves (6.1%): 25 cells closed (#)" in result.output
    stored = Path(result.output.split("stored ")[1].split(" (+")[0])
    provenance = json.loads(stored.with_suffix(".json").read_text())
    assert stored.parent.parent == Path(os.environ["LDENGINE_EMERGENCY_DIR"])
    assert provenance["params"] == {"x0": 4, "y0": 10, "x1": 8, "y1": 14}
    assert provenance["attempts"][-1]["passed"] and provenance["adapter_hash"]
    assert {"model", "model_sha256", "prompt_sha256", "accepted_attempt", "version"} <= set(provenance)
    # listed with the user's own words, not only the kind it resembles
    listed = invoke("generated", "list", "--task", "pursuit").output
    assert f"for the rule {provenance['custom_rule']['text']!r}" in listed and "Lava: no piece may enter" in listed


@pytest.mark.slow
def test_user_examples_check_a_rule_no_kind_knows():
    """--allow/--forbid moves are the checks when no kind matches; every attempt is reported."""
    result = CliRunner().invoke(cli, ["emergency", "Pursuers may no longer enter a cell (x, y) with x == 10.",
                                      "--forbid", "10,5", "--forbid", "9,5>10,6", "--allow", "9,6",
                                      "--attempts", "2", "--no-store"])
    assert "checking against 3 examples" in result.output
    assert "attempt 1 (temperature 0.0, " in result.output
    assert result.exit_code == 0 and "not stored" in result.output or \
        result.exit_code == 1 and "no function passed verification in 2 attempts" in result.output


def test_a_rule_over_several_pieces_or_with_a_bad_example_is_refused_in_one_line_before_any_model_loads():
    """A rule function judges one pursuer's own move: a rule about where pieces stand relative to
    each other is refused at once, with the reason; so is an example that is not a cell."""
    for text in ("No two pursuers may stand on the same cell.", "A pursuer may not move next to another pursuer.",
                 "Pursuers must keep 3 cells apart from each other."):
        result = CliRunner().invoke(cli, ["emergency", text])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert "about several pieces at once" in result.output and "judges one pursuer's own move" in result.output
        assert "attempt" not in result.output
    result = CliRunner().invoke(cli, ["emergency", "x", "--forbid", "ten,5"])
    assert result.exit_code != 0 and "is not X,Y" in result.output


def test_words_unlike_every_kind_with_those_params_are_not_taken_for_one():
    """Nonsense text with restricted-area's parameter names is refused in one line (naming
    the closest kind and --kind), not checked against that kind's rule; --kind still can."""
    result = CliRunner().invoke(cli, ["emergency", "Bananas are yellow.", *AREA])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "share almost nothing with the known rules that take x0, x1, y0, y1" in result.output
    assert "--kind restricted-area" in result.output


def test_the_expert_nobody_adapted_breaks_the_new_rule_and_the_trace_shows_it(tmp_path):
    """Under restricted-area the teacher's base alone walks into the area: violations; the
    trace's game record names the emergency and lists the 25 cells; an independent referee
    (which treats them as forbidden) accepts the trace."""
    out, trace = tmp_path / "r.json", tmp_path / "t.jsonl"
    result = invoke("run", "pursuit", "--agent", "expert", "--games", "6", "--emergency", "restricted-area",
                    "--json", str(out), "--trace", str(trace), "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads(trace.read_text().splitlines()[0])
    assert record["emergency"]["name"] == "restricted-area" and len(record["forbidden"]) == 25
    check_trace(trace)
    assert json.loads(out.read_text())["violations"] > 0


@pytest.mark.slow
def test_ld_adopts_the_students_function_and_obeys_the_new_rule(tmp_path):
    """The ld agent has the student write the function (or reuses the stored one), puts it
    after the legality filter, and plays without a violation. The student selects it at the new
    stage at nearly every step: the committed adapter picks filter_legal_cells there at the
    capturing step of these games (docs/emergencies.md, Table 2), so not at every one."""
    out, trace = tmp_path / "r.json", tmp_path / "t.jsonl"
    result = invoke("run", "pursuit", "--agent", "ld", "--games", "4", "--emergency", "restricted-area",
                    "--json", str(out), "--trace", str(trace), "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["emergency_function"] == "obey_restricted_area"
    assert summary["violations"] == 0 and summary["success"] == 1.0
    check_trace(trace)
    steps = [json.loads(line) for line in trace.read_text().splitlines() if '"pursuers"' in line]
    steps = [s for s in steps if s.get("type") == "pursuers"]
    assert all(any(x["stage"] == "pursuer.emergency" for x in s["selections"]) for s in steps)
    assert sum("obey_restricted_area" in s["functions"] for s in steps) >= 0.85 * len(steps)


def test_top1_adopts_the_same_function_as_ld(tmp_path):
    """The retriever-first-hit ablation adopts the rule's function as ld does (the stored one, or
    one the student writes), so under an emergency the two differ only in how a stage's function
    is chosen: it plays the new stage and breaks no rule."""
    out, trace = tmp_path / "r.json", tmp_path / "t.jsonl"
    result = invoke("run", "pursuit", "--agent", "top1", "--games", "3", "--emergency", "restricted-area",
                    "--json", str(out), "--trace", str(trace), "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["emergency_function"] == "obey_restricted_area" and summary["violations"] == 0
    steps = [json.loads(line) for line in trace.read_text().splitlines() if '"pursuers"' in line]
    assert all("obey_restricted_area" in s["functions"] for s in steps if s.get("type") == "pursuers")


def test_a_rule_in_words_alone_shows_each_passing_functions_board_map():
    """No examples, no kind: the function is checked for its form on every move, its board map is
    drawn, and one that forbids nothing is refused without asking (the committed writer's greedy
    attempt for this rule keeps every cell); the run ends in one line saying so."""
    result = CliRunner().invoke(cli, ["emergency", "Pursuers may not enter column 10.", "--attempts", "1",
                                      "--no-store"])
    assert "no examples: each function is checked on every move of the board" in result.output
    assert "attempt 1 (temperature 0.0, " in result.output and "Traceback" not in result.output
    assert "   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0" in result.output
    assert "forbids 0 of the board's 5,317 single moves" in result.output
    assert "attempt 1 refused: forbids no move, so it is no rule" in result.output
    assert result.exit_code == 1 and "1 passed it but were refused on their board map" in result.output
