"""Stored generated functions are first-class: a rule of a user's own, stored by
``ldengine emergency``, is in force with ``--emergency NAME``, its function is adopted from
the store (hash-checked, verified again, run in the worker) and shown by ``ldengine
functions show``; a rule text with no words is refused before any model loads. Real files
in a temporary store, the real isolated sandbox."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ldengine.agents import AgentContext
from ldengine.cli import cli
from ldengine.emergency.adopt import adopt
from ldengine.emergency.rule import under_emergency
from ldengine.emergency.store import save
from ldengine.emergency.verify import PropertiesOnly, verification_cases
from ldengine.emergency.write import Written
from ldengine.functionbase import FunctionBase

ROOT = Path(__file__).resolve().parent.parent
COLUMN = "Pursuers may no longer enter a cell (x, y) with x == 10."
LAVA = "Lava: no piece may enter a cell (x, y) with {x0} <= x <= {x1} and {y0} <= y <= {y1}."
AREA = {"x0": 4, "y0": 10, "x1": 8, "y1": 14}
KEEP_OFF_COLUMN_10 = ('    out = dict(obs)\n'
                      '    out["candidates"] = [[[x, y] for x, y in cells if x != 10] for cells in obs["candidates"]]\n'
                      '    return out\n')


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def store_rule(registry, rule, params: dict, body: str) -> Path:
    """Store ``rule``'s function as ``ldengine emergency`` does, with the provenance it writes."""
    name = rule.function_name()
    custom = {"text": rule.text, "allowed": [[list(s), list(d)] for s, d in rule.allowed],
              "forbidden": [[list(s), list(d)] for s, d in rule.forbidden], "like": getattr(rule.like, "name", None)}
    written = Written(rule.name, params, name, [], rule.header(params, name) + body,
                         {"task": "pursuit", "kind": rule.name, "params": params, "function": name,
                          "custom_rule": custom})
    return save(written)


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("LDENGINE_EMERGENCY_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def column_rule(store, registry, pursuit_task):
    """A rule known only by the user's examples, and its stored function."""
    rule = pursuit_task.custom_emergency(COLUMN, {}, allowed=[(9, 6)], forbidden=[(10, 5), ((9, 5), (10, 6))])
    return rule, store_rule(registry, rule, {}, KEEP_OFF_COLUMN_10)


@pytest.fixture
def lava_rule(store, registry, pursuit_task):
    """A rule in the user's words, checked like restricted-area, and its stored function."""
    area = registry.get("emergencies", "restricted-area").obj
    rule = pursuit_task.custom_emergency(LAVA, AREA, like=area)
    body = area.reference(AREA)[len(area.header(AREA)):]
    return rule, store_rule(registry, rule, AREA, body)


def first_record(trace: Path) -> dict:
    return json.loads(trace.read_text().splitlines()[0])


def test_a_users_own_rule_is_in_force_by_its_name(column_rule, tmp_path):
    """It plays ``--emergency custom-XXXXXXXX`` (the rule's name) and the stored file's name alike:
    the game record names the rule."""
    rule, path = column_rule
    for name in (rule.name, path.stem):
        trace = tmp_path / f"{name}.jsonl"
        result = invoke("run", "pursuit", "--agent", "expert", "--games", "2", "--emergency", name,
                        "--trace", trace, "--quiet")
        assert result.exit_code == 0, result.output
        assert first_record(trace)["emergency"] == {"name": rule.name, "params": {}}


def test_a_rule_checked_like_a_kind_is_refereed_by_that_kinds_rule(lava_rule, tmp_path):
    """Under a stored rule checked like restricted-area, the referee closes the area's 25 cells
    at the stored parameters."""
    rule, _ = lava_rule
    trace = tmp_path / "t.jsonl"
    result = invoke("run", "pursuit", "--agent", "expert", "--emergency", rule.name, "--trace", trace, "--quiet")
    assert result.exit_code == 0, result.output
    area = {(x, y) for x in range(4, 9) for y in range(10, 15)}
    assert {tuple(c) for c in first_record(trace)["forbidden"]} == area


def test_a_rule_known_by_examples_is_refereed_by_its_examples(column_rule):
    """The referee refuses exactly the pursuer moves the examples forbid; verification still
    has no rule to compare with (the function's properties are checked, not its answers)."""
    rule, _ = column_rule
    assert not rule.allows({}, "pursuer", (11, 5), (10, 5)) and not rule.allows({}, "pursuer", (9, 5), (10, 6))
    assert rule.allows({}, "pursuer", (9, 5), (10, 5)) and rule.allows({}, "evader", (11, 5), (10, 5))
    extra = verification_cases(rule, {}, rule.cases({}), seed=1)
    domain = [expected for label, _, expected in extra if label.startswith("move domain")]
    assert domain and all(isinstance(expected, PropertiesOnly) for expected in domain)


def test_the_ld_agent_adopts_the_stored_function_without_writing_one(column_rule, registry, pursuit_task):
    """Adopting finds the stored function, checks its hash and verifies it again: no student
    is loaded (the context names a backend that does not exist), and the function joins the
    base as untrusted code."""
    rule, path = column_rule
    in_force = under_emergency(registry, pursuit_task, rule.name)
    base = FunctionBase.build("pursuit", registry.modules_for("pursuit"))
    written = adopt(AgentContext(in_force, base, {"backend": "no-such-backend"}, registry))
    assert written.passed and written.path == path and written.check.passed
    assert rule.function_name() in base.entries
    assert base.entries[rule.function_name()].module in base.untrusted


def test_an_unknown_name_lists_the_registered_and_the_stored(column_rule):
    _, path = column_rule
    result = invoke("run", "pursuit", "--agent", "expert", "--emergency", "custom-nothing", "--quiet")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "unknown emergency 'custom-nothing'" in result.output and path.stem in result.output


def test_emergencies_stored_lists_them_with_how_they_are_refereed(column_rule, lava_rule):
    result = invoke("emergencies", "stored")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    column, lava = column_rule[1].stem, lava_rule[1].stem
    assert any(line.startswith(column) and "the referee knows only its examples" in line for line in lines)
    assert any(line.startswith(lava) and "examples" not in line for line in lines)
    assert lines[-1].startswith("6 stored (4 ship with the package)")     # the user's two, and the shipped


def test_functions_show_finds_a_stored_function(column_rule):
    """By its file's name or, when one file alone has it, by its function's name."""
    rule, path = column_rule
    for name in (path.stem, rule.function_name()):
        result = invoke("functions", "show", name)
        assert result.exit_code == 0, result.output
        assert result.output.startswith(f"{rule.function_name()}  (stored emergency function {path.stem}")
        assert "Stage: pursuer.emergency" in result.output


def test_functions_show_refuses_a_stored_function_changed_after_it_was_stored(column_rule):
    _, path = column_rule
    path.write_text(path.read_text().replace("x != 10", "x != 11"))
    result = invoke("functions", "show", path.stem)
    assert result.exit_code == 1 and "changed after it was stored" in result.output


@pytest.mark.parametrize("text", ["", "   ", "12 >= 3 ?!"])
def test_a_rule_with_no_words_is_refused_in_one_line_before_any_model_loads(text):
    """It refuses an empty rule, or one without a letter, in one line, and torch is never imported."""
    code = ("import sys; from click.testing import CliRunner; from ldengine.cli import cli\n"
            f"r = CliRunner().invoke(cli, ['emergency', {text!r}, '--forbid', '10,5'])\n"
            "print(r.exit_code); print(r.output.strip()); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    exit_code, *message, torch = out.stdout.strip().splitlines()
    assert exit_code == "1" and len(message) == 1 and "has no words" in message[0], out.stdout + out.stderr
    assert torch == "False"
