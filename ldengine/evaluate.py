"""``ldengine eval``: every agent plays the same seeded games; the paper's Table 1.

Files in the output folder:

- ``run.json``: the run's manifest, written first (config, command line, engine
  version, and each agent's identity: function base, model, adapter, retriever
  index hashes). ``--resume`` refuses to continue a run whose config or agents differ.
- ``games.jsonl``: one line per game and agent, appended (and flushed to disk)
  as each game ends, so nothing finished is lost to Ctrl-C or a crash; a game
  that raised is a line with ``"outcome": "error"`` and its message.
- ``results.json``, ``table.md``, ``outcomes.png``, ``trajectory-AGENT.png``:
  built from ``games.jsonl`` alone, so a resumed run writes exactly what an
  uninterrupted one does (wall times aside).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from ldengine import clock
from ldengine.cache import write_atomic
from ldengine.contracts import TaskBase, task_evader
from ldengine.emergency.rule import under_emergency
from ldengine.errors import LDEngineError
from ldengine.functionbase import base_for
from ldengine.registry import Registry
from ldengine.runner import Emitter, build_agent, play_games, round_progress
from ldengine.version import __version__
from ldengine.workers import Games, game_row, merge_stats, play_on_workers

Z95 = 1.959964


@dataclass
class EvalConfig:
    task: str | None = None             # None: the first task registered (Registry.default_task)
    agents: list[str] = field(default_factory=lambda: ["ld", "kd", "student", "expert"])
    games: int = 200
    seed: int = 0
    evader: str | None = None           # None: the task's own (its ``evader``), if any
    out: str = "results/eval"
    resume: bool = False
    start: str | None = None            # trajectory figures: a named start of the task ("paper") or game 0's
    figures: bool = True
    progress: bool = True
    batch: int | None = None            # games side by side (None: the agent's default_batch)
    options: dict = field(default_factory=dict)           # student, backend, k, teacher_*
    adapters: dict = field(default_factory=dict)          # agent -> adapter folder
    command: str = ""
    emergency: str | None = None        # an emergency kind in force (Table 2)
    emergency_seed: int = 0             # draws its parameters (e.g. where the restricted area lies)
    replay: list = field(default_factory=list)              # agents whose recorded games are dropped and replayed
    function_base: str | None = None    # a stored version (ldengine distill) instead of the plugins' base
    workers: int = 1                    # processes that play an agent's games (ldengine.workers)

    def key(self) -> dict:
        """What must match for ``--resume`` to continue a run."""
        key = {"task": self.task, "games": self.games, "seed": self.seed, "evader": self.evader}
        if self.emergency:
            key.update(emergency=self.emergency, emergency_seed=self.emergency_seed)
        return key


def evaluate(registry: Registry, cfg: EvalConfig, log: Callable[[str], None] = print) -> dict:
    """Plays every agent's missing games, then writes results, table and figures."""
    task_name = cfg.task or registry.default_task()
    task = under_emergency(registry, registry.task(task_name), cfg.emergency, cfg.emergency_seed)
    cfg = dataclasses.replace(cfg, task=task_name, evader=task_evader(task, cfg.evader))   # what plays, as recorded
    policy = registry.policy(cfg.evader)
    for name in cfg.agents:
        registry.get("agents", name)
    if cfg.function_base:       # a wrong version is the user's error, not every agent's "not run"
        base_for(registry, task_name, cfg.function_base)
    if cfg.start and cfg.start not in task.starts:
        known = ", ".join(task.starts) or "none"
        raise LDEngineError(f"task {cfg.task!r} has no start named {cfg.start!r} (known: {known})")
    out = Path(cfg.out)
    run = _open_run(out, cfg, task)
    if cfg.replay:
        _forget(out, run, cfg.replay, log)
    done = _finished(out / "games.jsonl")
    with open(out / "games.jsonl", "a", encoding="utf-8") as fh:
        for name in cfg.agents:
            _play_agent(registry, task, policy, cfg, run, name, done, fh, out, log)
    results = write_results(registry, out, run)
    return results


def _open_run(out: Path, cfg: EvalConfig, task: TaskBase) -> dict:
    manifest = out / "run.json"
    if manifest.exists() and not cfg.resume:
        raise LDEngineError(f"{out} already holds a run; pass --resume to continue it, "
                            "or choose another --out")
    if cfg.resume and manifest.exists():
        run = json.loads(manifest.read_text(encoding="utf-8"))
        if not _same_run(run.get("config"), cfg.key()):
            raise LDEngineError(f"--resume: {out} holds a run of {run.get('config')}, not {cfg.key()}")
        run["agents"] = list(dict.fromkeys(cfg.agents + run["agents"]))  # this command's order first
        run.setdefault("commands", []).append(cfg.command)
    else:
        out.mkdir(parents=True, exist_ok=True)
        run = {"engine_version": __version__, "config": cfg.key(), "agents": list(cfg.agents),
               "seeds": [cfg.seed, cfg.seed + cfg.games - 1], "start": cfg.start,
               **_emergency_record(task),
               "identities": {}, "not_run": {}, "commands": [cfg.command],
               "python": sys.version.split()[0], "created": _now()}
    _save_run(out, run)
    return run


def _same_run(recorded: object, key: dict) -> bool:
    """Does the run recorded in ``run.json`` have this config? A task played against no evader
    matches a run recorded before tasks said so (its config names the evader then defaulted to)."""
    if isinstance(recorded, dict) and key.get("evader") is None and recorded.get("evader") is not None:
        recorded = {**recorded, "evader": None}
    return recorded == key


def _forget(out: Path, run: dict, agents: list[str], log: Callable[[str], None]) -> None:
    """Drops ``agents``' games, identities, stats and trajectory figures from the run in
    ``out`` (e.g. after retraining an adapter), so that they are played again; the
    other agents' games stay as they are."""
    path = out / "games.jsonl"
    _finished(path)     # cuts a torn last line first
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
    kept = [line for line in lines if json.loads(line).get("agent") not in agents]
    write_atomic(path, "".join(kept).encode())
    for table in ("identities", "agent_stats", "load_s", "not_run"):
        for name in agents:
            run.get(table, {}).pop(name, None)
    for name in agents:
        (out / f"trajectory-{name}.png").unlink(missing_ok=True)
    _save_run(out, run)
    log(f"replay: dropped {len(lines) - len(kept)} recorded games of {', '.join(agents)}")


def _emergency_record(task: TaskBase) -> dict:
    instance = task.emergency
    if instance is None:
        return {}
    return {"emergency": {"name": instance.kind.name, "params": dict(instance.params), "rule": instance.description}}


def _save_run(out: Path, run: dict) -> None:
    write_atomic(out / "run.json", (json.dumps(run, indent=2) + "\n").encode())


def _finished(path: Path) -> set[tuple[str, int]]:
    """(agent, game) pairs already in ``games.jsonl``; a torn last line (a crash
    mid-write) is cut off so that appending goes on from a whole line."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
        path.write_bytes(data)
    done = set()
    for line in data.decode("utf-8").splitlines():
        try:
            row = json.loads(line)
            done.add((row["agent"], int(row["game"])))
        except (ValueError, KeyError, TypeError):
            raise LDEngineError(f"{path} has a line that is not a game record: {line[:80]!r}") from None
    return done


def _play_agent(registry, task, policy, cfg, run, name, done, fh, out, log) -> None:
    todo = [(i, cfg.seed + i) for i in range(cfg.games) if (name, i) not in done]
    figure = out / f"trajectory-{name}.png"
    figures = cfg.figures and task.plot is not None
    if not todo and (figure.exists() or not figures):
        return
    options = {**cfg.options, "adapter": cfg.adapters.get(name)}
    t0 = clock.now()
    try:
        agent, base = build_agent(registry, task, name, options, version=cfg.function_base)
    except LDEngineError as exc:
        run["not_run"][name] = str(exc)
        _save_run(out, run)
        log(f"{name}: not run: {exc}")
        return
    run["not_run"].pop(name, None)
    identity = {"function_base_hash": base.hash, **_identity(agent)}
    if cfg.function_base:
        identity["function_base_version"] = cfg.function_base
    known = run["identities"].get(name)
    if known and known != identity:
        raise LDEngineError(f"--resume: agent {name!r} is not the one this run started with "
                            f"(was {known}, now {identity}); use another --out")
    run["identities"][name] = identity
    run.setdefault("load_s", {})[name] = round(clock.now() - t0, 2)
    _save_run(out, run)
    merged = _play_todo(task, agent, policy, cfg, name, todo, fh)
    if todo and callable(getattr(agent, "stats", None)):
        # e.g. selection accuracy, wrong picks, the emergency function adopted, memo hits
        stats = json.loads(json.dumps(agent.stats() if merged is None else merged, default=str))
        run.setdefault("agent_stats", {})[name] = {"games_counted": len(todo), **stats}
        _save_run(out, run)
    if figures and not figure.exists():
        _trajectory(task, agent, policy, cfg, name, figure)


def _play_todo(task, agent, policy, cfg, name, todo, fh) -> dict | None:
    """Plays ``todo`` and appends each game's row as it ends; with ``cfg.workers`` > 1, on
    worker processes, and returns their agents' statistics summed (None: the agent's own)."""
    bar = tqdm(total=cfg.games, initial=cfg.games - len(todo), desc=f"{cfg.task}/{name}", unit="game",
               disable=not cfg.progress, leave=False)
    per_worker: dict = {}
    with bar:
        if cfg.workers > 1 and len(todo) > 1:
            options = {k: v for k, v in cfg.options.items() if not callable(v)}      # a log function stays here
            games = Games(cfg.task, name, cfg.evader, cfg.emergency, cfg.emergency_seed,
                          {**options, "adapter": cfg.adapters.get(name)}, cfg.function_base,
                          cfg.batch or getattr(agent, "default_batch", None) or 16)
            rows = play_on_workers(games, todo, cfg.workers, per_worker)
        else:
            rows = (game_row(name, played, task) for played in play_games(
                task, agent, todo, policy, Emitter(None), name, cfg.evader or "", cfg.batch,
                on_round=round_progress(bar)))
        for row in rows:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            bar.update(1)
    return merge_stats(list(per_worker.values())) if per_worker else None


def _trajectory(task, agent, policy, cfg, name, path: Path) -> None:
    """One more game, from the figure start, drawn (not counted in the table)."""
    start = task.starts[cfg.start] if cfg.start else None
    played = next(play_games(task, agent, [(0, cfg.seed)], policy, Emitter(None), name, cfg.evader or "",
                             1, start))
    if played.result is not None and task.plot is not None:
        result, where = played.result, f"seed {cfg.seed}"
        if cfg.start and dataclasses.is_dataclass(result) and not isinstance(result, type):
            # not game 0 of the table (that one starts from seed 0's random cells): say where it started
            result = dataclasses.replace(result, game=f"from the start '{cfg.start}'")
            where = f"start '{cfg.start}', a figure game, not one of the table's"
        opponent = f" vs {cfg.evader} evader" if cfg.evader else ""
        task.plot(result, str(path), f"{name}{opponent} ({where})")


def _identity(agent: object) -> dict:
    ident = getattr(agent, "identity", None)
    return dict(ident() if callable(ident) else ident or {})


# ---- results -------------------------------------------------------------------

def read_games(out: Path) -> list[dict]:
    path = out / "games.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_results(registry: Registry, out: Path, run: dict) -> dict:
    rows = read_games(out)
    task = registry.task(run["config"]["task"])
    agents = {}
    for name in run["agents"]:
        if name in run.get("not_run", {}):
            agents[name] = {"agent": name, "not_run": run["not_run"][name]}
            continue
        mine = sorted((r for r in rows if r["agent"] == name), key=lambda r: r["game"])
        agents[name] = summarize(name, run, mine, task)
    results = {"manifest": {**run, "results_written": _now()}, "agents": agents}
    reference = task.eval_reference
    if reference is not None:
        results["reference"] = reference()
    write_atomic(out / "results.json", (json.dumps(results, indent=2) + "\n").encode())
    write_atomic(out / "table.md", table(results, task).encode())
    if any("games" in a for a in agents.values()):
        outcome_chart(results, out / "outcomes.png", task)
    return results


def outcome_columns(task: TaskBase | None = None) -> tuple:
    """(outcome, column label) pairs: the task's ``outcome_columns`` (default: the paper's)."""
    return tuple((task or TaskBase()).outcome_columns)


def summarize(name: str, run: dict, rows: list[dict], task: TaskBase | None = None) -> dict:
    """The summary keys of the README's "Evaluate" section, 95% intervals, errors and cost, for one agent; a task
    with ``eval_metrics(rows)`` adds its own figures (else: average steps of success)."""
    played = [r for r in rows if r["outcome"] != "error"]
    n = len(played)
    out: dict[str, object] = {"agent": name, "task": run["config"]["task"], "games": n}
    for key, _ in outcome_columns(task):
        k = sum(r["outcome"] == key for r in played)
        out[key] = k / n if n else 0.0
        out[f"{key}_ci95"] = list(wilson(k, n))
    metrics = (task or TaskBase()).eval_metrics
    out.update(steps_of_success(played) if metrics is None else metrics(played))
    out["violations"] = sum(r["violations"] for r in played)
    wall = sum(r.get("wall_s", 0.0) for r in rows)
    out["wall_s"] = round(wall, 3)
    out["errors"] = len(rows) - n
    if out["errors"]:
        out["error_examples"] = sorted({r["error"] for r in rows if r["outcome"] == "error"})[:5]
    out["missing_games"] = run["config"]["games"] - len(rows)
    out["seed"], out["evader"] = run["config"]["seed"], run["config"].get("evader")
    out.update(run.get("identities", {}).get(name, {}))
    if name in run.get("agent_stats", {}):
        out["agent_stats"] = run["agent_stats"][name]      # over the games the last command played
    out["cost"] = {"wall_s": round(wall, 3), "games_per_min": round(60 * len(rows) / wall, 2) if wall else None,
                   "model_calls": round(sum(r.get("model_calls", 0) for r in rows)),
                   "tokens": round(sum(r.get("tokens", 0) for r in rows)),
                   "load_s": run.get("load_s", {}).get(name)}
    return out


def steps_of_success(played: list[dict]) -> dict:
    wins = [r["steps"] for r in played if r["outcome"] == "success"]
    return {"avg_steps_success": sum(wins) / len(wins) if wins else None,
            "avg_steps_success_ci95": list(mean_interval(wins)) if wins else None}


def steps_cells(s: dict) -> list[str]:
    if s["avg_steps_success"] is None:
        return ["-"]
    lo, hi = s["avg_steps_success_ci95"]
    return [f"{s['avg_steps_success']:.2f} [{lo:.2f}, {hi:.2f}]"]


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (valid at 0 and n too)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4))


def mean_interval(values: list[float], z: float = Z95, digits: int = 3) -> tuple[float, float]:
    """Normal-approximation 95% interval of the mean (one value: the value itself)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return (mean, mean)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return (round(mean - z * sd / math.sqrt(n), digits), round(mean + z * sd / math.sqrt(n), digits))


def table(results: dict, task: TaskBase | None = None) -> str:
    """Table 1 of the paper, one row per agent, 95% intervals in brackets; a task with
    ``eval_headers`` and ``eval_cells(summary)`` shows its own figures (else: average
    steps of success), and its ``results["reference"]`` row closes the table."""
    task = task or TaskBase()
    columns = outcome_columns(task)
    cells_of = task.eval_cells or steps_cells
    head = ["Agent", *(label for _, label in columns),
            *(task.eval_headers if task.eval_cells else ["Average Steps of Success"]),
            "Games", "Games/min", "Model calls", "Tokens"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in results["agents"].items():
        if "not_run" in s:
            lines.append(f"| {name} | not run: {s['not_run']} |" + " |" * (len(head) - 2))
            continue
        cells = [name]
        for key, _ in columns:
            lo, hi = s[f"{key}_ci95"]
            cells.append(f"{100 * s[key]:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]")
        cells += cells_of(s)
        games = str(s["games"])
        if s["errors"]:
            games += f" (+{s['errors']} errors)"
        if s["missing_games"]:
            games += f" ({s['missing_games']} not played yet)"
        cost = s["cost"]
        cells += [games, "-" if cost["games_per_min"] is None else f"{cost['games_per_min']:.1f}",
                  f"{cost['model_calls']:,}", f"{cost['tokens']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    reference = results.get("reference")
    if reference:
        cells = [reference["name"], *reference["cells"]]
        lines.append("| " + " | ".join(cells + ["-"] * (len(head) - len(cells))) + " |")
    lines += ["", _table_note(results, task)]
    emergency = results["manifest"].get("emergency")
    if emergency:
        lines.append(f"Emergency {emergency['name']} {json.dumps(emergency['params'])} in force: "
                     f"{emergency['rule']} The expert is the teacher's function base without any function "
                     "for it; ld adopts the function the student wrote.")
    return "\n".join(lines) + "\n"


def _table_note(results: dict, task: TaskBase) -> str:
    config = results["manifest"]["config"]
    seeds = f"seeds {config['seed']}-{config['seed'] + config['games'] - 1}"
    note = task.eval_note
    if note:
        return f"{config['task']}, {seeds}; {note}"
    opponent = f", evader {config['evader']}" if config.get("evader") else ""
    return (f"{config['task']}{opponent}, {seeds}; 95% intervals: Wilson for rates, "
            "normal approximation for steps.")


def outcome_chart(results: dict, path: Path, task: TaskBase | None = None) -> None:
    """Grouped bars: each agent's outcome rates with their 95% intervals (``outcome_figure``)."""
    import matplotlib.pyplot as plt
    fig = outcome_figure(results, task)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def outcome_figure(results: dict, task: TaskBase | None = None):
    """The outcome chart, not saved. An agent with no finished game gets no bars (its
    interval would be the whole 0-1 range): its label says "no games"."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    played = {n: s for n, s in results["agents"].items() if "games" in s}
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(played), 4))
    task = task or TaskBase()
    columns = outcome_columns(task)
    width = 0.8 / len(columns)
    colours = ("tab:green", "tab:gray", "tab:red")
    drawn = [(i, s) for i, s in enumerate(played.values()) if s["games"]]
    for j, ((key, label), colour) in enumerate(zip(columns, colours)):
        xs = [i + (j - 1) * width for i, _ in drawn]
        ys = [s[key] for _, s in drawn]
        err = [[y - s[f"{key}_ci95"][0] for y, (_, s) in zip(ys, drawn)],
               [s[f"{key}_ci95"][1] - y for y, (_, s) in zip(ys, drawn)]]
        ax.bar(xs, ys, width, label=label, color=colour, yerr=err, capsize=3)
    for i, name in enumerate(played):
        if not played[name]["games"]:
            ax.text(i, 0.5, "no games", ha="center", va="center", fontsize=9, color="tab:gray")
    ax.set_xticks(range(len(played)), [f"{n}\n{_games(s['games'])}" for n, s in played.items()])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of games (whiskers: 95% Wilson interval)")
    config = results["manifest"]["config"]
    opponent = f", {config['evader']} evader" if task.uses_evader and config.get("evader") else ""
    ax.set_title(f"{config['task']}: outcomes per agent, seeds {config['seed']}-"
                 f"{config['seed'] + config['games'] - 1}{opponent}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _games(n: int) -> str:
    return "no games" if n == 0 else "1 game" if n == 1 else f"{n} games"


def command_line(command: str, arguments: list[str], options: Sequence[tuple[str, object]]) -> str:
    """The command with every effective option spelled out (defaults included), to replay
    it; ``options`` are (flag, value) pairs (``--resume`` and ``--quiet`` are left out)."""
    words = ["ldengine", *command.split()[1:], *arguments]
    for flag, value in options:
        if value is None or value is False or flag in ("--resume", "--quiet"):
            continue
        if value is True:
            words.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
