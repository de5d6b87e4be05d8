"""The command line: output contracts of the README and one-line errors."""
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ldengine.cli import cli
from tests.referee import check_trace

SUMMARY_KEYS = {"agent", "task", "games", "success", "failure_without_violation",
                "failure_with_violation", "avg_steps_success", "violations", "wall_s"}


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_run_writes_the_summary_json_and_a_trace_the_referee_accepts(tmp_path):
    """It writes the summary keys of the README and a trace an independent referee replays."""
    out, trace, plot = tmp_path / "r.json", tmp_path / "t.jsonl", tmp_path / "g.png"
    result = invoke("run", "pursuit", "--agent", "expert", "--games", "4", "--seed", "3",
                    "--json", str(out), "--trace", str(trace), "--plot", str(plot))
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["games"] == 4 and summary["success"] == 1.0 and summary["violations"] == 0
    assert summary["selection_accuracy"] == 1.0
    ends = check_trace(trace)
    assert [e["game"] for e in ends] == [0, 1, 2, 3]
    assert summary["avg_steps_success"] == sum(e["steps"] for e in ends) / 4
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert "success 1.000" in result.output


def test_run_audits_every_sandbox_call(tmp_path):
    """It logs each sandbox call with function, source hash, duration and outcome."""
    audit = tmp_path / "audit.jsonl"
    out = tmp_path / "r.json"
    invoke("run", "pursuit", "--agent", "expert", "--games", "2", "--audit", str(audit), "--json", str(out))
    calls = [json.loads(line) for line in audit.read_text().splitlines()]
    played = [c for c in calls if not c["function"].startswith("when_")]
    assert len(played) == json.loads(out.read_text())["selections"]
    assert all(c["ok"] and len(c["source_hash"]) == 64 and c["duration_ms"] >= 0 for c in calls)
    assert {"observe_positions", "pursuer_candidate_cells", "filter_legal_cells", "encircle_evader",
            "capture_adjacent"} <= {c["function"] for c in played}
    # the oracle's predicates run in the sandbox too, once per decide stage at most per predicate
    predicates = [c for c in calls if c["function"].startswith("when_")]
    assert {c["function"] for c in predicates} <= {"when_capture_adjacent", "when_route_around_block",
                                                   "when_pin_against_edge"}


def test_run_is_reproducible_for_a_seed(tmp_path):
    """It plays the same games for the same seed, and other games for another seed."""
    traces = []
    for seed in (5, 5, 6):
        path = tmp_path / f"t{len(traces)}.jsonl"
        invoke("run", "pursuit", "--agent", "expert", "--games", "2", "--seed", str(seed), "--trace", str(path))
        traces.append(path.read_text())
    assert traces[0] == traces[1] != traces[2]


def test_run_refuses_to_overwrite_an_output_without_force(tmp_path):
    """An existing --json/--trace file is refused before any game, in one line naming --force; with
    --force it is written again."""
    summary = tmp_path / "r.json"
    summary.write_text("{}")
    refused = CliRunner().invoke(cli, ["run", "pursuit", "--agent", "expert", "--json", str(summary)])
    assert refused.exit_code == 1 and refused.output.strip().splitlines() == [
        f"Error: --json {summary} already exists: pass --force to overwrite it, or give another name"]
    assert summary.read_text() == "{}"
    forced = invoke("run", "pursuit", "--agent", "expert", "--json", str(summary), "--force")
    assert forced.exit_code == 0 and json.loads(summary.read_text())["games"] == 1


def test_run_says_what_plays_before_the_games():
    """Without --quiet the first line (on stderr) says what is about to play; the summary follows the games."""
    result = CliRunner().invoke(cli, ["run", "pursuit", "--agent", "expert", "--games", "2", "--seed", "3"])
    assert result.exit_code == 0 and result.stderr.splitlines()[0] == \
        "playing 2 games of pursuit (seeds 3-4), agent expert, evader greedy"
    assert "playing" not in result.stdout and "success 1.000" in result.stdout


def test_run_against_the_random_evader(tmp_path):
    """It plays against the seeded random evader and the referee accepts its moves."""
    trace = tmp_path / "t.jsonl"
    result = invoke("run", "pursuit", "--agent", "expert", "--games", "3", "--evader", "random", "--trace", str(trace))
    assert result.exit_code == 0
    assert all(e["outcome"] == "success" for e in check_trace(trace, evader_policy="random"))


@pytest.mark.parametrize("args, message", [
    (["run", "chess"], "unknown task 'chess'"),
    (["run", "pursuit", "--agent", "oracle9"], "unknown agent 'oracle9'"),
    (["run", "pursuit", "--evader", "teleport"], "unknown evader 'teleport'"),
    (["run", "pursuit", "--games", "0"], "--games"),
    (["run", "pursuit", "--json", f"{__file__}/r.json"], "test_cli.py is a file, not a folder"),
    (["functions", "show", "no_such_function"], "no function 'no_such_function'"),
    (["sandbox", "run", "missing.py", "--function", "f"], "does not exist"),
    (["retrieve", "  "], "an empty query matches nothing in particular"),
    (["run", "pursuit", "--emergency-seed", "3"], "--emergency-seed draws an emergency's parameters"),
    (["eval", "pursuit", "--emergency-seed", "3", "--out", "x"], "--emergency-seed draws an emergency's parameters"),
    (["plot", "."], "is a folder, not a trace file"),
    (["emergency", "Pursuers may not enter column {x0}.", "--param", "x0=abc", "--no-store"],
     "x0=abc: a rule's parameter is a whole number"),
    (["emergency", "Pursuers may not enter column {x0}.", "--param", "z=3", "--no-store"],
     "the rule's words have {x0} and no value for it: add --param x0=N"),
    (["emergency", "Pursuers may not enter column {x0}.", "--param", "x0=3", "--param", "z=3", "--no-store"],
     "z is not a placeholder of the rule's words (they have {x0})"),
    (["emergency", "Pursuers may not enter column 5.", "--forbid", "10,5", "--allow", "10,5", "--no-store"],
     "10,5 is given both with --allow and with --forbid"),
    (["emergency", "Pursuers may not enter column 5.", "--read", "--forbid", "4,5>5,5", "--allow", "4,5>5,5",
      "--no-store"], "4,5>5,5 is given both with --allow and with --forbid"),
])
def test_bad_arguments_give_a_one_line_error(args, message):
    """It answers a bad argument with a one-line error and exit code 1 or 2, no traceback."""
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (1, 2)
    assert message in result.output and "Traceback" not in result.output


def test_functions_list_and_show_print_manual_entries(pursuit_base):
    """It lists every function with stage and version, and shows one manual entry in full."""
    listing = invoke("functions", "list").output
    for entry in pursuit_base.entries.values():
        assert entry.name in listing and entry.version in listing
    entry = pursuit_base.oracle("pursuer.decide")
    shown = invoke("functions", "show", entry.name).output
    assert entry.source_hash in shown and "Stage: pursuer.decide" in shown and ">>>" in shown


def test_sandbox_run_prints_a_result_or_an_error(tmp_path):
    """It runs one function of a file in the isolated sandbox and prints its value or error."""
    src = tmp_path / "f.py"
    src.write_text("def add(a, b):\n    return [a + b]\n\ndef spin(a):\n    while True:\n        a += 1\n")
    ok = invoke("sandbox", "run", str(src), "--function", "add", "--args", "[2, 3]")
    assert ok.exit_code == 0 and json.loads(ok.stdout.splitlines()[0]) == [5]
    hang = CliRunner().invoke(cli, ["sandbox", "run", str(src), "--function", "spin",
                                    "--args", "[1]", "--timeout", "0.5"])
    assert hang.exit_code == 1 and "Error:" in hang.output
    bad = CliRunner().invoke(cli, ["sandbox", "run", str(src), "--function", "add", "--args", "{oops"])
    assert bad.exit_code == 2 and "not JSON" in bad.output


def test_help_does_not_import_heavy_libraries():
    """It starts `ldengine --help` without importing torch, transformers, peft or hnswlib."""
    code = ("import sys; from ldengine.cli import main; sys.argv=['ldengine','--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch','transformers','peft','hnswlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_an_interrupted_run_keeps_every_finished_game(tmp_path):
    """It stops on Ctrl-C after whole games: the trace and the summary cover exactly those."""
    import signal
    import time
    trace, out = tmp_path / "t.jsonl", tmp_path / "r.json"
    proc = subprocess.Popen([sys.executable, "-c", "from ldengine.cli import main; main()", "run", "pursuit",
                             "--agent", "expert", "--games", "100000", "--quiet", "--trace", str(trace), "--json", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # as from a terminal: a suite started in the background (`cmd &`) passes
                            # SIGINT on ignored, and Python then never raises KeyboardInterrupt
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not trace.exists() or trace.stat().st_size < 20000):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()      # never left running after a failure: it would play 100,000 games
    assert proc.returncode == 1 and "interrupted after" in err and "Traceback" not in err
    summary = json.loads(out.read_text())
    ends = check_trace(trace)
    assert summary["interrupted"] is True and summary["games"] == len(ends) > 0


@pytest.mark.parametrize("args", [["emergency", "Pursuers may not enter column 5."],
                                  ["emergency", "Pursuers may not enter column 5.", "--read"],
                                  ["generated", "remove", "wall-ddf6cde496"]])
def test_a_question_nobody_can_answer_is_refused_before_any_work(args):
    """With stdin at /dev/null (a script, a service) a command that would ask for confirmation
    stops at once, in one line naming --yes, before any model loads."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "ldengine", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "there is no terminal to answer it" in lines[-1] and "--yes" in lines[-1]
    assert "Traceback" not in done.stderr and "writing with" not in done.stdout


def test_every_option_of_every_command_says_what_it_does():
    """--help explains every option (none is listed bare)."""
    import click

    def bare(command, path):
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from bare(sub, [*path, name])
            return
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden and not param.help:
                yield f"{' '.join(path)} {'/'.join(param.opts)}"
    assert list(bare(cli, ["ldengine"])) == []


def test_every_run_is_logged_and_listed_by_ldengine_logs(tmp_path, monkeypatch):
    """Each run appends its full command line, version and key figures to the data folder's log;
    ldengine logs lists the latest (a damaged line is skipped), --json prints them."""
    monkeypatch.setenv("LDENGINE_DATA", str(tmp_path))
    assert "no run logged yet" in invoke("logs").output
    for seed in (1, 2):
        assert invoke("run", "pursuit", "--agent", "expert", "--games", "1", "--seed", str(seed), "--quiet").exit_code == 0
    with open(tmp_path / "logs.jsonl", "a") as log:
        log.write("{not json\n")
    records = json.loads(invoke("logs", "--json").output)
    assert [r["kind"] for r in records] == ["run", "run"] and records[-1]["success"] == 1.0
    assert records[-1]["command"].startswith("ldengine run pursuit --agent expert --games 1 --seed 2")
    assert records[-1]["version"] and records[-1]["games"] == 1
    listed = invoke("logs", "-n", "1").output.splitlines()
    assert "--seed 2" in listed[0] and "success 1.000" in listed[1] and listed[-1].startswith("1 run(s) shown from")
