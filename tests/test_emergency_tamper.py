"""Stored generated code is tamper-evident: a stored emergency function whose file changed
after it was stored is refused in one line naming the file, wherever it would load (the
adopting agent, ``ldengine generated``); ``ldengine generated`` lists, shows, verifies and
removes what is stored. Real files in temporary stores, the real isolated sandbox."""
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ldengine.agents import AgentContext
from ldengine.cli import cli
from ldengine.emergency.adopt import adopt
from ldengine.emergency.rule import under_emergency
from ldengine.emergency.store import load_stored, save
from ldengine.emergency.write import Written
from ldengine.functionbase import FunctionBase, StoredCodeChanged, file_sha256, text_sha256
from ldengine.signing import sign
from ldengine_plugins.pursuit.emergencies import KINDS

KIND = next(k for k in KINDS if k.name == "restricted-area")
PARAMS = KIND.params(0)
NAME = KIND.function_name()
COMMITTED = Path(__file__).resolve().parent.parent / "function_base" / "pursuit" / "emergencies"


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An emergency store of its own, holding the teacher's function for restricted-area."""
    monkeypatch.setenv("LDENGINE_EMERGENCY_DIR", str(tmp_path))
    written = Written(KIND.name, PARAMS, NAME, [], KIND.reference(PARAMS),
                         {"task": "pursuit", "kind": KIND.name, "params": PARAMS, "function": NAME})
    return save(written)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_naming(result, path) -> bool:
    lines = result.output.strip().splitlines()
    return (result.exit_code == 1 and "Traceback" not in result.output
            and any(str(path) in line and "changed after it was stored" in line for line in lines))


def test_it_records_the_whole_module_and_loads_it_when_intact(store):
    """The provenance records the module file's sha256; an intact file loads and verifies again."""
    provenance = json.loads(store.with_suffix(".json").read_text())
    assert provenance["module_sha256"] == text_sha256(store.read_text()) and provenance["file"] == store.name
    assert load_stored(KIND, PARAMS).check.passed


@pytest.mark.parametrize("edit", ["a changed constant", "an added constant", "a changed body"])
def test_it_refuses_a_stored_function_changed_after_it_was_stored(store, edit):
    """It refuses a stored function whose file changed in any way, even outside the def (which
    the agent never runs), naming the file."""
    text = store.read_text()
    store.write_text({"a changed constant": text.replace('VERSION = "1.0.0"', 'VERSION = "1.0.1"'),
                      "an added constant": text + "\nPADDING = [0] * 10\n",
                      "a changed body": text.replace("return out", "return dict(obs)")}[edit])
    with pytest.raises(StoredCodeChanged, match=f"^{store} was changed after it was stored"):
        load_stored(KIND, PARAMS)


def test_the_adopting_agent_refuses_a_changed_function_before_loading_any_model(store, registry, pursuit_task):
    """``adopt`` (what the ld agent does under an emergency) stops at the changed file."""
    store.write_text(store.read_text().replace("x <= ", "x <  ", 1))
    task = under_emergency(registry, pursuit_task, KIND.name, 0)
    context = AgentContext(task, FunctionBase.build("pursuit", registry.modules_for("pursuit")), {}, registry)
    with pytest.raises(StoredCodeChanged, match=store.name):
        adopt(context)


def test_functions_stored_before_module_hashes_are_checked_against_their_accepted_attempt(tmp_path):
    """The committed functions (stored before ``module_sha256``) load; a copy with a constant
    added is refused, because the file is no longer exactly what the engine wrote around the
    accepted attempt's function."""
    for path in sorted(COMMITTED.glob("*.json")):
        provenance = json.loads(path.read_text())
        kind = next(k for k in KINDS if k.name == provenance["kind"])
        assert "module_sha256" not in provenance
        assert load_stored(kind, provenance["params"], COMMITTED).check.passed, path
    module = COMMITTED / "wall-ddf6cde496.py"
    shutil.copy(module, tmp_path / module.name)
    shutil.copy(module.with_suffix(".json"), tmp_path / module.with_suffix(".json").name)
    (tmp_path / module.name).write_text(module.read_text() + "\nX = 99\n")
    wall = next(k for k in KINDS if k.name == "wall")
    with pytest.raises(StoredCodeChanged, match=module.name):
        load_stored(wall, json.loads(module.with_suffix(".json").read_text())["params"], tmp_path)


def test_generated_list_show_and_verify_an_intact_function(store):
    """It lists the stored function with its status, shows its files' sha256 and its code,
    and verifies it again on fresh inputs."""
    listed = invoke("generated", "list", "--task", "pursuit")
    assert listed.exit_code == 0 and store.stem in listed.output and " ok " in listed.output
    assert json.loads(invoke("generated", "list", "--json").output)[0]["status"] == "ok"
    shown = invoke("generated", "show", store.stem)
    assert shown.exit_code == 0 and file_sha256(store) in shown.output and f"def {NAME}(obs)" in shown.output
    verified = invoke("generated", "verify", store.stem)
    assert verified.exit_code == 0, verified.output
    assert "hashes match; verified again: passed" in verified.output and "fresh seed" in verified.output


def test_generated_marks_a_changed_function_and_verify_fails_in_one_line(store):
    store.write_text(store.read_text() + "\nPADDING = [0] * 10\n")
    listed = invoke("generated", "list")
    assert listed.exit_code == 0 and "CHANGED" in listed.output
    verified = invoke("generated", "verify")
    assert one_line_naming(verified, store) and "failed: restricted-area-" in verified.output


def test_generated_verify_fails_a_function_that_no_longer_passes(store):
    """Its hashes and signature hold (provenance rewritten and signed again, as only someone with this
    machine's key can) but the function ignores the rule: verify says so."""
    store.write_text(store.read_text().replace("return out", "return dict(obs)"))
    provenance = json.loads(store.with_suffix(".json").read_text())
    store.with_suffix(".json").write_text(json.dumps(sign({**provenance, "module_sha256": file_sha256(store)})))
    verified = invoke("generated", "verify", store.stem)
    assert verified.exit_code == 1 and "keeps cells the rule forbids" in verified.output


def test_generated_remove_deletes_the_function_and_its_provenance(store):
    refused = CliRunner().invoke(cli, ["generated", "remove", store.stem], input="n\n")
    assert refused.exit_code == 1 and store.is_file()
    removed = invoke("generated", "remove", store.stem, "--yes")
    assert removed.exit_code == 0 and not store.exists() and not store.with_suffix(".json").exists()
    unknown = invoke("generated", "show", store.stem + "-none")
    assert unknown.exit_code == 1 and "no stored generated code" in unknown.output
    shipped = invoke("generated", "list", "--task", "pursuit")     # the package's own function of that name is left
    assert store.stem in shipped.output and "ships with the package" in shipped.output


def test_a_function_rewritten_with_its_hash_recomputed_is_refused_as_unsigned(store):
    """The attack of issue 34: the rule weakened and the provenance's module_sha256 rewritten to
    match. The hash agrees; the signature (this machine's key) does not, and it is refused."""
    text = store.read_text().replace("x <= ", "x <  ", 1)
    store.write_text(text)
    meta = store.with_suffix(".json")
    provenance = json.loads(meta.read_text())
    meta.write_text(json.dumps({**provenance, "module_sha256": text_sha256(text)}))
    with pytest.raises(StoredCodeChanged, match="not signed with this machine's key"):
        load_stored(KIND, PARAMS)
    result = invoke("generated", "show", store.stem, "--task", "pursuit")
    assert result.exit_code == 0 and "status: CHANGED:" in result.output and "Traceback" not in result.output
    assert "not signed with this machine's key" in result.output and str(store.with_suffix(".json")) in result.output


def test_functions_are_stored_in_the_users_data_folder_and_the_shipped_ones_still_load(monkeypatch, tmp_path):
    """Without $LDENGINE_EMERGENCY_DIR a run stores under the data folder, never the package; the
    functions that ship with the package are found there, and cannot be removed."""
    from ldengine.emergency.store import module_path, save, shipped_dir, store_dir
    monkeypatch.delenv("LDENGINE_EMERGENCY_DIR", raising=False)
    monkeypatch.setenv("LDENGINE_DATA", str(tmp_path / "data"))
    assert store_dir("pursuit") == tmp_path / "data" / "pursuit" / "emergencies"
    assert module_path(KIND, PARAMS).parent == shipped_dir("pursuit")       # the shipped seed-0 function
    assert load_stored(KIND, PARAMS).check.passed
    result = invoke("generated", "remove", module_path(KIND, PARAMS).stem, "--task", "pursuit", "--yes")
    assert result.exit_code == 1 and "ships with the package" in result.output
    written = Written(KIND.name, PARAMS, NAME, [], KIND.reference(PARAMS),
                      {"task": "pursuit", "kind": KIND.name, "params": PARAMS, "function": NAME})
    path = save(written)
    assert path.parent == store_dir("pursuit") and module_path(KIND, PARAMS) == path
    with pytest.raises(Exception, match="package's own folder"):
        save(written, shipped_dir("pursuit"))
