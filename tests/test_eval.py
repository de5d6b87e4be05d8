"""``ldengine eval``: same seeded games for every agent, files written game by game,
resume after a kill, errors recorded, intervals, and the teacher over real HTTP."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

import ldengine.cli as cli_module
from ldengine.evaluate import EvalConfig, evaluate, mean_interval, wilson
from ldengine.registry import Registered
from tests.jsonhttp import send_json

ROOT = Path(__file__).resolve().parent.parent
COST_KEYS = ("wall_s", "model_calls", "tokens")


def run_cli(*args, env=None):
    return CliRunner(env=env).invoke(cli_module.cli, list(args), catch_exceptions=False)


def games_without_cost(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "games.jsonl").read_text().splitlines()]
    return sorted(({k: v for k, v in r.items() if k not in COST_KEYS} for r in rows),
                  key=lambda r: (r["agent"], r["game"]))


def summaries_without_cost(out: Path) -> dict:
    """The results that must not depend on how the run was split: not its cost, and not the
    agent's own counters (they cover the games the last command played)."""
    agents = json.loads((out / "results.json").read_text())["agents"]
    return {name: {k: v for k, v in s.items() if k not in ("wall_s", "cost", "agent_stats")}
            for name, s in agents.items()}


def test_intervals_match_known_values():
    """Wilson: 0 of 10 -> [0, 0.278]; 200 of 200 -> [0.981, 1]; the mean's interval is symmetric."""
    assert wilson(0, 10) == (0.0, 0.2775)
    assert wilson(200, 200)[0] == pytest.approx(0.9812, abs=1e-4) and wilson(200, 200)[1] == 1.0
    lo, hi = mean_interval([8, 10, 12])
    assert lo < 10 < hi and (10 - lo) == pytest.approx(hi - 10)


@pytest.mark.slow
def test_eval_writes_table_results_games_and_figures(tmp_path):
    """Expert and the untuned student play the same three seeds; every promised file is written,
    the table has a row per agent (a teacher without endpoint says 'not run'), and the
    manifest pins what is needed to replay the run."""
    out = tmp_path / "t1"
    result = run_cli("eval", "pursuit", "--agents", "expert,student,teacher", "--games", "3",
                     "--seed", "5", "--out", str(out), "--start", "paper", "--quiet")
    assert result.exit_code == 0, result.output
    for name in ("run.json", "games.jsonl", "results.json", "table.md", "outcomes.png",
                 "trajectory-expert.png", "trajectory-student.png"):
        assert (out / name).stat().st_size > 0, name
    rows = games_without_cost(out)
    assert [(r["agent"], r["seed"]) for r in rows] == [(a, s) for a in ("expert", "student") for s in (5, 6, 7)]
    results = json.loads((out / "results.json").read_text())
    expert, student = results["agents"]["expert"], results["agents"]["student"]
    for key in ("agent", "task", "games", "success", "failure_without_violation", "failure_with_violation",
                "avg_steps_success", "violations", "wall_s", "success_ci95", "cost"):
        assert key in expert and key in student
    assert expert["success"] == 1.0 and student["cost"]["model_calls"] > 0 and student["cost"]["tokens"] > 0
    assert expert["agent_stats"]["selection_accuracy"] == 1.0 and expert["agent_stats"]["games_counted"] == 3
    assert "no teacher endpoint" in results["agents"]["teacher"]["not_run"]
    manifest = results["manifest"]
    assert manifest["config"] == {"task": "pursuit", "games": 3, "seed": 5, "evader": "greedy"}
    assert manifest["identities"]["student"]["model_sha256"] and manifest["identities"]["expert"]["function_base_hash"]
    assert "ldengine eval pursuit" in manifest["commands"][0] and manifest["engine_version"]
    table = (out / "table.md").read_text()
    assert "| expert | 100.0%" in table and "| teacher | not run" in table and "| student |" in table
    assert "--games 3 --seed 5" in manifest["commands"][0] and "--start paper" in manifest["commands"][0]
    again = run_cli("eval", "pursuit", "--agents", "expert", "--games", "3", "--seed", "5", "--out", str(out))
    assert again.exit_code != 0 and "--resume" in again.output
    other = run_cli("eval", "pursuit", "--agents", "expert", "--games", "4", "--seed", "5", "--out", str(out),
                    "--resume")
    assert other.exit_code != 0 and "holds a run of" in other.output


@pytest.mark.slow
def test_killed_eval_resumes_to_the_same_results(tmp_path):
    """An eval killed (SIGKILL) after its first games, with a torn last line, then run again
    with --resume, ends with exactly the games and results of an uninterrupted run."""
    args = ["eval", "pursuit", "--agents", "expert,ld", "--games", "6", "--seed", "3",
            "--no-figures", "--quiet"]
    whole = tmp_path / "whole"
    assert run_cli(*args, "--out", str(whole)).exit_code == 0
    cut = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "ldengine", *args, "--out", str(cut)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    games = cut / "games.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if games.exists() and len(games.read_text().splitlines()) >= 8:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines = games.read_text().splitlines()
    assert 0 < len(lines) < 12, "the kill should land midway"
    with open(games, "a") as fh:
        fh.write('{"agent": "ld", "game": 5, "outc')   # a crash in the middle of a write
    result = run_cli(*args, "--out", str(cut), "--resume")
    assert result.exit_code == 0, result.output
    assert games_without_cost(cut) == games_without_cost(whole)
    assert summaries_without_cost(cut) == summaries_without_cost(whole)
    assert len(json.loads((cut / "run.json").read_text())["commands"]) == 2


@pytest.mark.slow
def test_replay_plays_one_agent_again_and_keeps_the_others_games(tmp_path):
    """--replay ld (after retraining, say) drops ld's recorded games and identity and plays
    them again; expert's games stay byte for byte, and the results equal a fresh run's."""
    args = ["eval", "pursuit", "--agents", "expert,ld", "--games", "3", "--seed", "5", "--no-figures", "--quiet"]
    out = tmp_path / "run"
    assert run_cli(*args, "--out", str(out)).exit_code == 0
    expert_lines = [line for line in (out / "games.jsonl").read_text().splitlines() if '"expert"' in line]
    run = json.loads((out / "run.json").read_text())
    run["identities"]["ld"]["adapter_hash"] = "an adapter retrained since"
    (out / "run.json").write_text(json.dumps(run))
    refused = run_cli(*args, "--out", str(out), "--resume")      # nothing to play: nothing checked
    assert refused.exit_code == 0
    result = run_cli("eval", "pursuit", "--agents", "ld", "--games", "3", "--seed", "5", "--no-figures",
                     "--quiet", "--out", str(out), "--resume", "--replay", "ld")
    assert result.exit_code == 0, result.output
    assert "dropped 3 recorded games of ld" in result.output
    lines = (out / "games.jsonl").read_text().splitlines()
    assert [line for line in lines if '"expert"' in line] == expert_lines
    assert sum('"ld"' in line for line in lines) == 3
    assert json.loads((out / "run.json").read_text())["identities"]["ld"]["adapter_hash"] != "an adapter retrained since"
    fresh = tmp_path / "fresh"
    assert run_cli(*args, "--out", str(fresh)).exit_code == 0
    assert games_without_cost(out) == games_without_cost(fresh)


def test_a_game_that_raises_is_recorded_as_an_error_and_the_rest_go_on(registry, tmp_path):
    """An agent that raises on its 10th step: that game is an error line with the message,
    the other games are played and the summary counts the error."""
    from ldengine.agents import expert_agent

    def flaky(context):
        agent = expert_agent(context)
        inner, calls = agent.act, []

        def act(state):
            calls.append(1)
            if len(calls) == 10:
                raise RuntimeError("boom at step 10")
            return inner(state)
        agent.act = act
        return agent

    reg = replace(registry, agents={**registry.agents, "flaky": Registered("flaky", flaky, "", "test")})
    out = tmp_path / "err"
    evaluate(reg, EvalConfig(agents=["flaky"], games=3, seed=0, out=str(out), figures=False, progress=False),
             log=lambda s: None)
    rows = games_without_cost(out)
    assert len(rows) == 3
    errors = [r for r in rows if r["outcome"] == "error"]
    assert len(errors) == 1 and "boom at step 10" in errors[0]["error"]
    summary = json.loads((out / "results.json").read_text())["agents"]["flaky"]
    assert summary["errors"] == 1 and summary["games"] == 2
    assert "+1 errors" in (out / "table.md").read_text()


class _ChatHandler(BaseHTTPRequestHandler):
    """A real OpenAI-compatible endpoint: answers the first legal cell of each pursuer,
    read back from the prompt; fails once with 503 to exercise the retry."""
    seen: list = []
    fail_next = [True]

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, self.headers.get("Authorization"), body))
        if self.fail_next[0]:
            self.fail_next[0] = False
            self.send_response(503)
            self.end_headers()
            return
        prompt = body["messages"][0]["content"]
        firsts = [line.split("can move to: ")[1].split("),")[0] + ")"
                  for line in prompt.splitlines() if "can move to: " in line]
        answer = "\n".join(f"Pursuer {i + 1}: {cell}" for i, cell in enumerate(firsts))
        send_json(self, 200, {"choices": [{"message": {"role": "assistant", "content": answer}}],
                              "usage": {"total_tokens": 100}})

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _ChatHandler.seen.clear()
    _ChatHandler.fail_next[0] = True
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_the_teacher_agent_plays_through_a_real_http_endpoint(chat_server, tmp_path):
    """It posts the student's prompt to /v1/chat/completions with the key from the environment,
    retries a 503, parses the answers; legal answers give no violations."""
    out = tmp_path / "teacher"
    result = run_cli("eval", "pursuit", "--agents", "teacher", "--games", "2", "--out", str(out),
                     "--teacher-url", chat_server, "--teacher-model", "big-model", "--no-figures", "--quiet",
                     env={"LDENGINE_TEACHER_KEY": "sk-test"})
    assert result.exit_code == 0, result.output
    path, auth, body = _ChatHandler.seen[-1]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
    assert body["model"] == "big-model" and body["temperature"] == 0 and "Rules:" in body["messages"][0]["content"]
    summary = json.loads((out / "results.json").read_text())["agents"]["teacher"]
    assert summary["games"] == 2 and summary["violations"] == 0 and summary["errors"] == 0
    assert summary["cost"]["model_calls"] == len(_ChatHandler.seen) - 1
    assert summary["teacher_model"] == "big-model"


def test_an_unreachable_teacher_records_errors_not_a_crash(tmp_path):
    """A closed port: each game is an error line naming the endpoint; the command still ends normally."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from ldengine import teacher
    out = tmp_path / "down"
    old = teacher.ChatClient.retries
    teacher.ChatClient.retries = 0
    try:
        result = run_cli("eval", "pursuit", "--agents", "teacher", "--games", "1", "--out", str(out),
                         "--teacher-url", f"http://127.0.0.1:{port}/v1", "--teacher-model", "m",
                         "--no-figures", "--quiet")
    finally:
        teacher.ChatClient.retries = old
    assert result.exit_code == 0, result.output
    (row,) = games_without_cost(out)
    assert row["outcome"] == "error" and "cannot reach the teacher endpoint" in row["error"]


@pytest.mark.slow
def test_side_by_side_games_match_one_at_a_time(registry, tmp_path):
    """The student answering two games in one batch plays them exactly as one by one."""
    outs = []
    for batch in (1, 2):
        out = tmp_path / f"b{batch}"
        evaluate(registry, EvalConfig(agents=["student"], games=2, seed=11, out=str(out), figures=False,
                                      progress=False, batch=batch), log=lambda s: None)
        outs.append(games_without_cost(out))
    assert outs[0] == outs[1]


def test_eval_refuses_bad_input_with_one_line_errors(tmp_path):
    for args, message in [(["--agents", "nope"], "unknown agent 'nope'"),
                          (["--start", "moon"], "no start named 'moon'"),
                          (["--adapter", "kd"], "is not AGENT=DIR"),
                          (["--replay", "ld"], "add --resume"),
                          (["--agents", "expert", "--resume", "--replay", "ld"], "ld not in --agents"),
                          (["--dtype", "int3"], "'int3' is not one of")]:
        result = run_cli("eval", "pursuit", "--games", "1", "--out", str(tmp_path / "x"), *args)
        assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_games_side_by_side_report_each_round_before_any_game_ends(registry):
    """The progress of games in lockstep moves with every step they take together, so a
    bar does not sit at 0/N until the first game ends."""
    from ldengine.runner import Emitter, build_agent, play_games
    task = registry.get("tasks", "pursuit").obj
    agent, _ = build_agent(registry, task, "expert")
    rounds = []
    ended = []
    for played in play_games(task, agent, [(0, 3), (1, 4)], registry.get("evaders", "greedy").obj, Emitter(None),
                             batch=2, on_round=lambda n, playing: rounds.append((n, playing, len(ended)))):
        ended.append(played.result.steps)
    assert [n for n, _, _ in rounds] == list(range(1, max(ended) + 1))
    assert rounds[0] == (1, 2, 0) and rounds[min(ended) - 1][2] == 0   # counted while no game had ended


@pytest.mark.slow
def test_games_on_two_workers_are_those_of_one_process(tmp_path):
    """``eval --workers 2``: each worker process loads the agent once and plays whole games; every
    game's row is the one a single process writes (only its cost differs), the tables are the
    same, and the ld agent's selection counts summed over the workers are one process's."""
    rows, stats = {}, {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        result = run_cli("eval", "pursuit", "--agents", "expert,ld", "--games", "6", "--seed", "400",
                         "--out", str(out), "--workers", str(workers), "--no-figures", "--quiet")
        assert result.exit_code == 0, result.output
        rows[workers], stats[workers] = games_without_cost(out), json.loads((out / "run.json").read_text())
        assert summaries_without_cost(out) == summaries_without_cost(tmp_path / "w1")
    assert rows[1] == rows[2] and len(rows[1]) == 12
    one, two = stats[1]["agent_stats"]["ld"], stats[2]["agent_stats"]["ld"]
    assert (one["selections"], one["selection_accuracy"]) == (two["selections"], two["selection_accuracy"])
