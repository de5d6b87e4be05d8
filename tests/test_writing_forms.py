"""The two writing forms: the student writes a rule's whole function body, or only its
allowed-move condition, one line inside a body the engine writes. Either way the whole
function goes through the isolated worker and the exhaustive verification."""
import json

import pytest

from ldengine.emergency.adopt import writing_form
from ldengine.emergency.teach import writing_data
from ldengine.emergency.verify import check_function
from ldengine.emergency.write import scaffold_of, training_pair, write_function
from ldengine.errors import LDEngineError
from ldengine.sandbox import IsolatedSandbox
from ldengine_plugins.pursuit.emergencies import KINDS, SCAFFOLD
from ldengine_plugins.pursuit.rule_shapes import shape_rules

RESTRICTED = next(k for k in KINDS if k.name == "restricted-area")


@pytest.fixture(scope="module")
def sandbox():
    with IsolatedSandbox() as box:
        yield box


class WritesLines:
    """A stand-in student (no model loaded) whose every completion is ``text``."""
    name, model_hash, adapter_hash = "stand-in", "0" * 64, None

    def __init__(self, text):
        self.text, self.prompts = text, []

    def generate_batch(self, prompts, **options):
        self.prompts.extend(prompts)
        return [self.text for _ in prompts]


@pytest.mark.parametrize("kind", [*KINDS, *shape_rules(4, seed=3)], ids=lambda k: k.name)
def test_the_condition_form_leaves_the_student_one_line_of_the_reference_function(kind, sandbox):
    """Prompt and target split the condition-form reference function: the prompt ends inside
    the scaffold, the target is the kind's condition and a newline; joined with the scaffold's
    end they are the whole function, which obeys the rule on the kind's cases."""
    params = kind.params(1)
    head, target = training_pair(kind, params, "condition")
    full = kind.reference(params, form="condition")
    assert head == kind.header(params) + SCAFFOLD[0] and target == kind.condition(params) + "\n"
    assert head + target[:-1] + SCAFFOLD[1] == full
    assert training_pair(kind, params, "body") == (kind.header(params), kind.reference(params)[len(head) - len(SCAFFOLD[0]):])
    check = check_function(full, kind.function_name(), kind.cases(params, 1), kind.properties, sandbox)
    assert check.passed, check.reasons


def test_the_engine_keeps_the_first_line_and_writes_the_rest():
    """A condition-form completion is cut at its first line: whatever follows it (here a
    second function body) is dropped, and the function the engine assembles is the teacher's.
    The prompt ends inside the scaffold, after the examples written in the same form."""
    params = RESTRICTED.params(0)
    student = WritesLines(RESTRICTED.condition(params) + "\n    return dict(obs)\n")
    examples = [RESTRICTED.reference(params, form="condition")]
    written = write_function(RESTRICTED, params, student, examples, attempts=1, form="condition")
    assert written.passed and written.source == RESTRICTED.reference(params, form="condition")
    assert written.provenance["form"] == "condition"
    assert student.prompts[0].endswith(SCAFFOLD[0])


def test_an_empty_or_broken_condition_is_a_failed_attempt_not_a_crash():
    params = RESTRICTED.params(0)
    empty = write_function(RESTRICTED, params, WritesLines("\n"), [], attempts=1, form="condition")
    assert not empty.passed and "no condition" in empty.attempts[0].check.reasons[0]
    broken = write_function(RESTRICTED, params, WritesLines("not (x == 3 and (y\n"), [], attempts=1, form="condition")
    assert not broken.passed and broken.attempts[0].check.reasons


def test_the_writing_data_of_the_condition_form_targets_conditions_only(registry):
    rows = writing_data(registry, "pursuit", [1], generated=3, form="condition")
    assert rows and all(head.endswith(SCAFFOLD[0]) and answer.count("\n") == 1 and answer.endswith("\n")
                        for _, head, answer in rows)
    assert "def allowed(x, y, px, py):" in rows[0][0]          # the worked examples are in the form too
    assert len(rows) == len(writing_data(registry, "pursuit", [1], generated=3))


def test_the_adapter_manifest_says_which_form_its_writer_learnt(tmp_path):
    assert writing_form(None) == "body"
    (tmp_path / "manifest.json").write_text(json.dumps({"method": "write"}))
    assert writing_form(tmp_path) == "body"                  # saved before forms existed
    (tmp_path / "manifest.json").write_text(json.dumps({"method": "write", "form": "condition"}))
    assert writing_form(tmp_path) == "condition"
    (tmp_path / "manifest.json").write_text(json.dumps({"method": "write", "form": "haiku"}))
    with pytest.raises(LDEngineError, match="unknown writing form 'haiku'"):
        writing_form(tmp_path)
    with pytest.raises(LDEngineError, match="unknown writing form"):
        scaffold_of(RESTRICTED, "haiku")


def test_the_real_student_writes_one_line_in_the_condition_form():
    """With the real student (no adapter), generation stops at the end of the condition's
    line, and the attempt's function is the header, that line and the scaffold."""
    from ldengine.models import load_student
    params = RESTRICTED.params(0)
    examples = [k.reference(k.params(0), form="condition") for k in KINDS if k.split == "train"][:2]
    written = write_function(RESTRICTED, params, load_student(), examples, attempts=1, form="condition")
    [attempt] = written.attempts
    head = RESTRICTED.header(params) + SCAFFOLD[0]
    assert attempt.source.startswith(head) and attempt.source.endswith(SCAFFOLD[1])
    assert "\n" not in attempt.source[len(head):len(attempt.source) - len(SCAFFOLD[1])]


def test_the_form_is_a_writing_option_only():
    from click.testing import CliRunner

    from ldengine.cli import cli
    result = CliRunner().invoke(cli, ["finetune", "--form", "condition"])
    assert result.exit_code == 2 and "use them with --method write" in result.output
