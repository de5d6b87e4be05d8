"""Which adapter plays: a new one only when promoted, one that no longer fits the function
base refused (or, when asked for by name, warned about) before any model loads."""
import json
import shutil
from dataclasses import replace

import pytest
from click.testing import CliRunner

from ldengine.adapters import find_adapter
from ldengine.agents import AgentContext
from ldengine.cli import cli
from ldengine.errors import LDEngineError
from ldengine.functionbase import FunctionBase
from ldengine.ld import selection_adapter


@pytest.fixture(scope="module")
def committed(pursuit_base):
    return find_adapter("pursuit", pursuit_base)


@pytest.fixture
def changed_base(registry):
    """The pursuit base with capture_adjacent's summary reworded (its source hash changes)."""
    modules = [replace(m, source=m.source.replace("the capture, when every pursuer", "capturing, when every pursuer"))
               for m in registry.modules_for("pursuit")]
    return FunctionBase.build("pursuit", modules)


def copy_adapter(source, folder, **manifest_changes):
    shutil.copytree(source, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, **manifest_changes}))
    return folder


def test_a_new_adapter_becomes_the_default_only_when_promoted(committed, pursuit_base, tmp_path):
    """It passes over a newer adapter whose manifest says it was not promoted (finetune
    without --promote), and takes it once promoted; the committed ones predate the flag."""
    old = copy_adapter(committed, tmp_path / "old")
    new = copy_adapter(committed, tmp_path / "new", created="2999-01-01T00:00:00Z", promoted=False)
    assert find_adapter("pursuit", pursuit_base, root=tmp_path) == old
    copy_adapter(new, tmp_path / "newer", created="2999-01-01T00:00:01Z", promoted=True)
    assert find_adapter("pursuit", pursuit_base, root=tmp_path) == tmp_path / "newer"


def test_the_committed_adapter_is_the_default(committed, pursuit_base):
    """The committed pursuit adapter (trained on the facts its queries state) is the default for ld."""
    assert committed.parent.name == "adapters" and committed.parent.parent.name == "pursuit"
    manifest = json.loads((committed / "manifest.json").read_text())
    assert set(manifest["trained_facts"]["pursuit"]) == set(pursuit_base.facts)


def test_an_adapter_whose_facts_were_reworded_no_longer_fits(registry, committed, tmp_path):
    """It refuses an adapter whose queries stated a fact that has since been reworded, naming the fact; a new
    fact (a plugin's) does not stop it."""
    modules = [replace(m, source=m.source.replace("at most 2 cells from the border", "near the border"))
               for m in registry.modules_for("pursuit")]
    with pytest.raises(LDEngineError, match="1 changed: fact near_edge"):
        find_adapter("pursuit", FunctionBase.build("pursuit", modules), root=committed.parent)


def test_promote_is_refused_where_the_default_is_not_looked_for(tmp_path):
    """--promote with --quick (saved in the cache) or an --out elsewhere: one line, before training."""
    for args in (["--quick"], ["--out", str(tmp_path / "a")]):
        result = CliRunner().invoke(cli, ["finetune", "--task", "pursuit", "--promote", *args])
        assert result.exit_code == 1 and result.output.startswith("Error: --promote: the default adapter is")
        assert len(result.output.strip().splitlines()) == 1


def test_a_base_whose_functions_changed_names_the_adapter_that_no_longer_fits(changed_base, committed):
    """It refuses the default adapter for a base where a function it learnt changed, naming
    the adapter's folder and the function, and saying how to train one."""
    with pytest.raises(LDEngineError) as refused:
        find_adapter("pursuit", changed_base)
    message = str(refused.value)
    assert f"{committed} was trained on another pursuit function base (1 changed: capture_adjacent)" in message
    assert "ldengine finetune --task pursuit" in message


def test_an_adapter_named_for_another_base_gets_a_warning_line(registry, pursuit_task, changed_base, committed):
    """--adapter DIR on a base it was not trained on: used as asked, with one warning line."""
    lines = []
    context = AgentContext(pursuit_task, changed_base, {"adapter": str(committed)}, registry)
    assert selection_adapter(context, lines.append) == str(committed)
    assert lines == [f"warning: the adapter {committed.name} was trained on another pursuit function base "
                     "(1 changed: capture_adjacent); its selections may be wrong"]
    fitting = AgentContext(pursuit_task, FunctionBase.build("pursuit", registry.modules_for("pursuit")),
                           {"adapter": str(committed)}, registry)
    selection_adapter(fitting, lines.append)
    assert len(lines) == 1


@pytest.mark.parametrize("damage", ["no adapter_hash", "damaged weights header"])
@pytest.mark.slow
def test_an_adapter_that_cannot_be_checked_is_refused_in_one_line(committed, tmp_path, damage):
    """Its weights are hashed against the manifest before they are used: an adapter whose
    manifest records no hash, or whose safetensors header is damaged, is refused in one line."""
    from ldengine.models.loading import load_student
    folder = copy_adapter(committed, tmp_path / "a")
    if damage == "no adapter_hash":
        manifest = json.loads((folder / "manifest.json").read_text())
        del manifest["adapter_hash"]
        (folder / "manifest.json").write_text(json.dumps(manifest))
        said = "no adapter_hash"
    else:
        weights = folder / "adapter_model.safetensors"
        data = bytearray(weights.read_bytes())
        data[8:40] = b"{" * 32                  # the JSON header after its 8-byte length
        weights.write_bytes(bytes(data))
        said = "cannot be loaded"
    with pytest.raises(LDEngineError, match=said):
        load_student(adapter=folder)
    result = CliRunner().invoke(cli, ["run", "pursuit", "--games", "1", "--adapter", str(folder)])
    assert result.exit_code != 0 and said in result.output and "Traceback" not in result.output, result.output[-400:]


def test_an_adapter_in_the_users_folder_is_the_default_only_when_signed_here(committed, pursuit_base, changed_base,
                                                                               tmp_path, monkeypatch):
    """finetune saves in the user's data folder, and signs the manifest; one dropped there that
    this machine did not sign (or whose manifest was changed) is passed over for the shipped one,
    and the refusal names it."""
    from ldengine.adapters import default_adapter_dir
    from ldengine.signing import sign
    monkeypatch.setenv("LDENGINE_DATA", str(tmp_path / "data"))
    assert default_adapter_dir("pursuit") == tmp_path / "data" / "pursuit" / "adapters"
    dropped = copy_adapter(committed, default_adapter_dir("pursuit") / "dropped",
                           created="2999-01-01T00:00:00Z", promoted=True)
    assert find_adapter("pursuit", pursuit_base) == committed
    manifest = json.loads((dropped / "manifest.json").read_text())
    (dropped / "manifest.json").write_text(json.dumps(sign(manifest)))
    assert find_adapter("pursuit", pursuit_base) == dropped
    (dropped / "manifest.json").write_text(json.dumps({**sign(manifest), "heldout_accuracy": 1.0, "steps": 1}))
    with pytest.raises(LDEngineError, match="dropped is not signed with this machine's key"):
        find_adapter("pursuit", changed_base)


def test_adapters_list_show_and_remove_as_a_user_runs_them(committed, tmp_path, monkeypatch):
    """The package's adapters are listed with their method and the default of each marked; one in
    the data folder is listed as unsigned until signed here, shown with its manifest, and removed
    (with --yes); one that ships with the package is never removed."""
    from ldengine.adapters import default_adapter_dir
    from ldengine.signing import sign
    monkeypatch.setenv("LDENGINE_DATA", str(tmp_path / "data"))
    mine = copy_adapter(committed, default_adapter_dir("pursuit") / "mine", promoted=False)
    listed = CliRunner().invoke(cli, ["adapters", "list"])
    assert listed.exit_code == 0, listed.output
    lines = {line.split()[0]: line for line in listed.output.splitlines()[:-1]}
    assert committed.name in lines and "package" in lines[committed.name] and "default" in lines[committed.name]
    assert "data (unsigned)" in lines["mine"] and "not promoted" in lines["mine"]
    assert any(" read " in line and "default" in line for line in lines.values())
    (mine / "manifest.json").write_text(json.dumps(sign(json.loads((mine / "manifest.json").read_text()))))
    as_json = json.loads(CliRunner().invoke(cli, ["adapters", "list", "--json"]).output)
    assert {"name": "mine", "shipped": False, "signed": True, "default": False}.items() <= \
        next(a for a in as_json if a["name"] == "mine").items()
    shown = CliRunner().invoke(cli, ["adapters", "show", "mine"])
    assert shown.exit_code == 0 and f"path: {mine}" in shown.output and '"adapter_hash"' in shown.output
    refused = CliRunner().invoke(cli, ["adapters", "remove", committed.name, "--yes"])
    assert refused.exit_code == 1 and "ships with the package" in refused.output and committed.exists()
    unknown = CliRunner().invoke(cli, ["adapters", "show", "nope"])
    assert unknown.exit_code == 1 and "no adapter 'nope' for pursuit (known: " in unknown.output
    removed = CliRunner().invoke(cli, ["adapters", "remove", "mine", "--yes"])
    assert removed.exit_code == 0 and not mine.exists()


def test_quick_smoke_adapters_in_the_cache_are_listed_and_removable(committed, tmp_path, monkeypatch):
    """``finetune --quick`` saves its smoke runs in the cache; they are listed (never a default) so
    that they can be found and removed rather than piling up unseen."""
    from ldengine.adapters import quick_adapter_dir
    monkeypatch.setenv("LDENGINE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("LDENGINE_CACHE", str(tmp_path / "cache"))
    quick = copy_adapter(committed, quick_adapter_dir() / "quick-pursuit-20261208-000000", promoted=False)
    listed = CliRunner().invoke(cli, ["adapters", "list"])
    line = next(line for line in listed.output.splitlines() if line.startswith(quick.name))
    assert " cache " in line and "not promoted" in line and "default" not in line, listed.output
    removed = CliRunner().invoke(cli, ["adapters", "remove", quick.name, "--yes"])
    assert removed.exit_code == 0 and not quick.exists(), removed.output
