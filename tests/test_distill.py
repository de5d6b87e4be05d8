"""``ldengine distill``: a teacher's answer becomes a stored, checked function base version.

The teacher is a replay server on localhost (stdlib ``http.server``) answering
``/v1/chat/completions`` with recorded transcripts from ``tests/data/teacher/``:
round n of a conversation (n = the assistant messages already in it) gets the
transcript's n-th answer, the last one once they run out.
"""
import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from ldengine.cli import cli
from ldengine.distill.check import check_answer, extract_code
from ldengine.functionbase import FunctionBase, StoredCodeChanged, _hash, base_for, file_sha256, version_hash, versions_dir
from ldengine.registry import ModuleSource
from ldengine.signing import sign
from tests.jsonhttp import send_json

TRANSCRIPTS = Path(__file__).parent / "data" / "teacher"


class ReplayTeacher:
    """An OpenAI-compatible chat endpoint that replays a recorded transcript."""

    def __init__(self, name: str):
        self.answers = [r["assistant"] for r in json.loads((TRANSCRIPTS / f"{name}.json").read_text())["rounds"]]
        self.requests: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _handler(self):
        teacher = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                teacher.requests.append(body)
                done = sum(m["role"] == "assistant" for m in body["messages"])
                text = teacher.answers[min(done, len(teacher.answers) - 1)]
                self._send(200, {"object": "chat.completion", "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}],
                                 "usage": {"total_tokens": len(text) // 4}})

            def _send(self, code, payload):
                send_json(self, code, payload)

            def log_message(self, *args):
                pass
        return Handler

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def distill_with(teacher, *extra):
    return invoke("distill", "pursuit", "--teacher-url", teacher.url, "--teacher-model", "recorded-teacher",
                  "--games", 3, *extra)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Distilled versions go to a temporary store, not function_base/."""
    folder = tmp_path_factory.mktemp("function-base")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LDENGINE_FUNCTION_BASE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def good(store):
    """The good transcript, distilled once: (command result, version name, its folder)."""
    with ReplayTeacher("pursuit-good") as teacher:
        result = distill_with(teacher)
    assert result.exit_code == 0, result.output
    [folder] = [p for p in versions_dir("pursuit").iterdir() if not p.name.startswith(".")]
    return result, folder.name, folder


def test_it_stores_a_good_decomposition_as_a_new_version_with_provenance(good, store):
    """It stores the teacher's module and a provenance file naming endpoint, model, prompt and checks."""
    result, version, folder = good
    assert folder.parent == store / "pursuit" / "versions"
    assert version.startswith("distilled-") and f"stored {version}" in result.output
    assert sorted(p.name for p in folder.iterdir()) == ["distilled.py", "provenance.json"]
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["teacher"]["url"].startswith("http://127.0.0.1:") and prov["teacher"]["model"] == "recorded-teacher"
    assert len(prov["prompt_sha256"]) == 64 and prov["rounds"] == 1 and prov["max_rounds"] == 3
    assert version == "distilled-" + prov["base_hash"][:8] and prov["engine_version"] and prov["created"]
    [round1] = prov["round_results"]
    assert round1["passed"] and {c["name"] for c in round1["checks"]} == {
        "code", "compile", "manual", "examples", "stages", "games"}
    assert prov["check_games"]["violations"] == 0 and prov["check_games"]["function_errors"] == 0
    assert {f["stage"] for f in prov["functions"]} >= {"pursuer.observe", "pursuer.generate",
                                                     "pursuer.filter", "pursuer.decide"}


def test_it_keeps_an_identical_version_rather_than_storing_it_twice(good):
    """It says the same base is already stored and writes nothing new."""
    _, version, folder = good
    before = (folder / "provenance.json").read_text()
    with ReplayTeacher("pursuit-good") as teacher:
        result = distill_with(teacher)
    assert result.exit_code == 0, result.output
    assert f"already stored as {version}" in result.output
    assert [p.name for p in folder.parent.iterdir()] == [version]
    assert (folder / "provenance.json").read_text() == before


def test_functions_list_and_versions_show_the_stored_version(good):
    """It lists the version's functions with --version, and the version with its provenance."""
    _, version, _ = good
    listed = invoke("functions", "list", "--task", "pursuit", "--version", version)
    assert listed.exit_code == 0, listed.output
    assert "encircle_evader" in listed.output and "6 functions" in listed.output
    assert "chase_nearest" not in listed.output          # the plugins' base is not mixed in
    versions = invoke("functions", "versions", "--task", "pursuit")
    assert version in versions.output and "recorded-teacher" in versions.output
    assert "1/3 rounds" in versions.output and "1 stored version(s)" in versions.output


def test_run_plays_the_distilled_base(good, tmp_path):
    """It plays `run --agent expert --function-base VERSION` on the new base: all captured, no violation."""
    _, version, _ = good
    out = tmp_path / "r.json"
    result = invoke("run", "pursuit", "--agent", "expert", "--function-base", version, "--games", 3,
                    "--json", out, "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["success"] == 1.0 and summary["violations"] == 0 and summary["function_errors"] == 0
    assert summary["function_base_version"] == version
    prov = json.loads((versions_dir("pursuit") / version / "provenance.json").read_text())
    assert summary["function_base_hash"] == prov["base_hash"]


def test_ld_on_a_base_its_adapter_never_learnt_fails_before_any_model_loads(good):
    """`run --agent ld` on the distilled base (without functions the committed adapter learnt):
    one line naming the adapter's folder, and neither torch nor transformers ever imported."""
    _, version, _ = good
    code = ("import sys; from ldengine.cli import main\n"
            f"sys.argv = ['ldengine', 'run', 'pursuit', '--agent', 'ld', '--function-base', {version!r}]\n"
            "try:\n    main()\nexcept SystemExit as stop:\n    print(stop.code)\n"
            "print(sorted(m for m in ('torch', 'transformers', 'hnswlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.splitlines()[-2:] == ["1", "[]"], out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("Error: no ld adapter fits this pursuit function base")
    assert "function_base/adapters/SmolLM2-135M-Instruct" in line and "was trained on another pursuit function base" in line


def test_eval_records_the_distilled_base_in_the_identity(good, tmp_path):
    """It evaluates on the stored version and records its name and hash in results.json."""
    _, version, _ = good
    out = tmp_path / "eval"
    result = invoke("eval", "pursuit", "--agents", "expert", "--games", 2, "--function-base", version,
                    "--out", out, "--no-figures", "--quiet")
    assert result.exit_code == 0, result.output
    expert = json.loads((out / "results.json").read_text())["agents"]["expert"]
    assert expert["function_base_version"] == version and expert["success"] == 1.0


def test_an_unknown_or_edited_version_is_refused_with_a_message(good, tmp_path):
    """It names an unknown version, and refuses one whose module changed after it was stored."""
    _, version, folder = good
    unknown = CliRunner().invoke(cli, ["run", "pursuit", "--agent", "expert", "--function-base", "nope"])
    assert unknown.exit_code == 1 and "no stored function base version 'nope'" in unknown.output
    assert version in unknown.output and "Traceback" not in unknown.output
    copy = folder.parent / "edited"
    copy.mkdir()
    source = (folder / "distilled.py").read_text().replace("return out\n", "return dict(out)\n", 1)
    (copy / "distilled.py").write_text(source)
    (copy / "provenance.json").write_text((folder / "provenance.json").read_text())
    try:
        edited = CliRunner().invoke(cli, ["functions", "list", "--version", "edited"])
        assert edited.exit_code == 1 and "changed after it was stored" in edited.output
    finally:
        for p in copy.iterdir():
            p.unlink()
        copy.rmdir()


@pytest.fixture
def restored(good):
    """The good version's files, put back as they were after the test."""
    _, version, folder = good
    saved = {p.name: p.read_bytes() for p in folder.iterdir()}
    yield version, folder
    for p in folder.iterdir():
        if p.name not in saved:
            p.unlink()
    for name, data in saved.items():
        (folder / name).write_bytes(data)


def refused_in_one_line(result, path) -> bool:
    lines = result.output.strip().splitlines()
    return (result.exit_code == 1 and "Traceback" not in result.output and len(lines) == 1
            and str(path) in lines[0] and "changed after it was stored" in lines[0])


def test_the_version_hash_covers_the_whole_module(good):
    """The stored base hash pins the module's whole text (constants too) and the provenance
    records the module file's sha256."""
    _, version, folder = good
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["hash_covers"] == "modules"
    assert prov["modules"] == [{"file": "distilled.py", "sha256": file_sha256(folder / "distilled.py")}]
    base = base_for(None, "pursuit", version)
    assert base.hash == prov["base_hash"] and base.pinned == {"distilled.py": prov["modules"][0]["sha256"]}


def test_a_version_with_a_changed_constant_is_refused_in_one_line(restored):
    """It refuses a version whose module constant changed (no def changed: the old hash missed
    it), wherever it would load: functions list, run, generated verify."""
    version, folder = restored
    module = folder / "distilled.py"
    text = module.read_text()
    assert "\nROUNDS = 2\n" in text
    module.write_text(text.replace("\nROUNDS = 2\n", "\nROUNDS = 0\n"))
    assert refused_in_one_line(CliRunner().invoke(cli, ["functions", "list", "--version", version]), module)
    assert refused_in_one_line(CliRunner().invoke(cli, ["run", "pursuit", "--agent", "expert", "--function-base",
                                                        version, "--games", "1", "--quiet"]), module)
    listed = invoke("generated", "list", "--task", "pursuit")
    assert any(version in line and "CHANGED" in line for line in listed.output.splitlines())
    verified = CliRunner().invoke(cli, ["generated", "verify", version])
    assert verified.exit_code == 1 and str(module) in verified.output


def test_a_module_added_to_a_version_is_refused(restored):
    version, folder = restored
    (folder / "extra.py").write_text('"""Added later."""\n')
    result = CliRunner().invoke(cli, ["functions", "list", "--version", version])
    assert result.exit_code == 1 and "extra.py is not in its version's provenance" in result.output


def test_a_version_stored_before_whole_module_hashes_still_loads_and_is_file_checked(restored):
    """A version whose provenance predates ``hash_covers`` (its base hash over the functions
    only) loads while its files keep their recorded sha256, and is refused once one changes."""
    version, folder = restored
    prov = json.loads((folder / "provenance.json").read_text())
    base = base_for(None, "pursuit", version)
    legacy = {k: v for k, v in prov.items() if k != "hash_covers"}
    (folder / "provenance.json").write_text(json.dumps(sign({**legacy, "base_hash": _hash(base.entries)})))
    assert base_for(None, "pursuit", version).hash == _hash(base.entries)
    (folder / "distilled.py").write_text((folder / "distilled.py").read_text().replace("FAR = 999", "FAR = 9"))
    with pytest.raises(StoredCodeChanged, match="distilled.py was changed"):
        base_for(None, "pursuit", version)


def test_a_version_whose_provenance_was_rewritten_with_its_hashes_is_refused(restored):
    """Someone who edits the module and writes its new sha256 and base hash into the provenance
    (as the hashes alone would accept) still cannot get it loaded: the provenance is signed."""
    version, folder = restored
    module = folder / "distilled.py"
    module.write_text(module.read_text().replace("FAR = 999", "FAR = 9"))
    prov = json.loads((folder / "provenance.json").read_text())
    prov["modules"] = [{"file": "distilled.py", "sha256": file_sha256(module)}]
    sources = [ModuleSource("pursuit", module.read_text(), f"pursuit/versions/{version}/distilled.py", "x")]
    prov["base_hash"] = version_hash(FunctionBase.build("pursuit", sources), {"distilled.py": module.read_text()})
    (folder / "provenance.json").write_text(json.dumps(prov))
    result = CliRunner().invoke(cli, ["functions", "list", "--version", version])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output
    assert "is not signed with this machine's key" in lines[0] and "provenance.json" in lines[0]
    (folder / "provenance.json").write_text(json.dumps(sign(prov)))     # signed here: the hashes decide
    assert base_for(None, "pursuit", version).hash == prov["base_hash"]


def test_generated_verifies_and_removes_a_version(restored, tmp_path):
    """It runs the distill checks on the stored version again, then removes its folder."""
    version, folder = restored
    verified = invoke("generated", "verify", version, "--games", 1)
    assert verified.exit_code == 0, verified.output
    assert "hashes match; checks run again: compile ok" in verified.output and "games ok" in verified.output
    shown = invoke("generated", "show", version)
    assert "encircle_evader" in shown.output and file_sha256(folder / "distilled.py") in shown.output
    copy = folder.parent / "distilled-copy"
    shutil.copytree(folder, copy)
    removed = invoke("generated", "remove", "distilled-copy", "--yes")
    assert removed.exit_code == 0 and not copy.exists() and folder.exists()


def test_a_broken_function_is_repaired_in_the_next_round(monkeypatch, tmp_path):
    """It sends the teacher the failed checks, and stores the repaired module (round 2)."""
    monkeypatch.setenv("LDENGINE_FUNCTION_BASE_DIR", str(tmp_path))
    with ReplayTeacher("pursuit-repair") as teacher:
        result = distill_with(teacher)
    assert result.exit_code == 0, result.output
    assert "examples  FAILED" in result.output and "after 2 round(s)" in result.output
    first, second = teacher.requests
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    repair = second["messages"][-1]["content"]
    assert "examples: failed" in repair and "legal_cells" in repair and "complete corrected module" in repair
    [folder] = list(versions_dir("pursuit").iterdir())
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["rounds"] == 2 and [r["passed"] for r in prov["round_results"]] == [False, True]
    failed = {c["name"] for c in prov["round_results"][0]["checks"] if not c["passed"]}
    assert "examples" in failed
    assert 'VERSION = "0.1.1"' in (folder / "distilled.py").read_text()


def test_a_teacher_that_writes_no_code_fails_cleanly_and_stores_nothing(monkeypatch, tmp_path):
    """It exits non-zero with the failed check named, no traceback, and no version stored."""
    monkeypatch.setenv("LDENGINE_FUNCTION_BASE_DIR", str(tmp_path))
    with ReplayTeacher("pursuit-nonsense") as teacher:
        result = CliRunner().invoke(cli, ["distill", "pursuit", "--teacher-url", teacher.url,
                                          "--teacher-model", "recorded-teacher", "--rounds", "2"])
    assert result.exit_code == 1, result.output
    assert "no function base passed the checks in 2 round(s); nothing stored" in result.output
    assert "failed code" in result.output and "Traceback" not in result.output
    assert len(teacher.requests) == 2
    assert not (tmp_path / "pursuit").exists()


def test_the_module_is_read_from_the_python_code_block():
    """It takes the longest ```python block of the answer, and none from prose."""
    answer = "Intro\n```text\nnot code\n```\n```python\nVERSION = '1'\n\ndef f(x):\n    return x\n```\n"
    assert extract_code(answer) == "VERSION = '1'\n\ndef f(x):\n    return x\n"
    assert extract_code("```\nVERSION = '1'\n```") == "VERSION = '1'\n"
    assert extract_code("just prose") is None


@pytest.mark.parametrize("code, expected", [
    ("VERSION = '1'\n\ndef f(obs)\n    return obs\n", "SyntaxError"),
    ("import os\nVERSION = '1'\n\ndef f(obs):\n    return os.getcwd()\n", "os"),
])
def test_code_the_sandbox_refuses_fails_the_compile_check(registry, pursuit_task, code, expected):
    """It reports a syntax error or a forbidden import as the compile check, with its line."""
    done = check_answer(registry, pursuit_task, f"```python\n{code}```", 1, "prompt", 1)
    assert not done.passed and done.failed == ["compile"]
    [check] = [c for c in done.checks if c.name == "compile"]
    assert any(expected in d and "Line" in d for d in check.details)


def test_a_rules_file_replaces_the_registered_rules(monkeypatch, tmp_path):
    """It sends the rules file's text to the teacher and names the file in the provenance."""
    monkeypatch.setenv("LDENGINE_FUNCTION_BASE_DIR", str(tmp_path / "store"))
    rules = tmp_path / "rules.txt"
    rules.write_text("Pursuit, house rules: three pursuers, one evader, reach 2, capture at distance 1.\n")
    with ReplayTeacher("pursuit-good") as teacher:
        result = distill_with(teacher, "--rules", rules, "--rounds", 1)
    assert result.exit_code == 0, result.output
    prompt = teacher.requests[0]["messages"][0]["content"]
    assert "house rules" in prompt and "1. pursuer.observe" in prompt
    [folder] = list(versions_dir("pursuit").iterdir())
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["rules"]["source"] == "file rules.txt" and prov["max_rounds"] == 1
