"""``ldengine run``, ``eval`` and ``plot``: playing games and drawing them."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ldengine import runlog
from ldengine.cli.app import (EVADER_HELP, _backend, _check_emergency_seed, _check_outputs, _device_option,
                              _dtype_option, _emergency_options, _function_base_option, _student_source, cli,
                              registry)
from ldengine.contracts import TaskBase, task_evader
from ldengine.evaluate import EvalConfig, command_line, evaluate, write_results
from ldengine.models.loading import chosen_device
from ldengine.outputs import check_plot
from ldengine.runner import RunConfig, run_games
from ldengine.traces import plot_game


@cli.command()
@click.argument("task")
@click.option("--agent", default="ld", show_default=True, help="Agent that plays (ldengine plugins lists them).")
@click.option("--games", "--hands", "games", default=1, show_default=True, type=click.IntRange(1, 100_000),
              help="Number of games (--hands: the same, for a task whose games are hands).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Game i uses seed SEED+i.")
@click.option("--evader", help=EVADER_HELP)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), help="Write the summary as JSON.")
@click.option("--trace", type=click.Path(dir_okay=False, writable=True), help="Write a JSON Lines trace.")
@click.option("--plot", type=click.Path(dir_okay=False, writable=True), help="Draw the first game's trajectories (PNG).")
@click.option("--audit", type=click.Path(dir_okay=False, writable=True), help="Log every sandbox call as JSON Lines.")
@click.option("--student", callback=_student_source, help="Student model: a .gguf file, a local HF model folder, "
              "or openai:http://HOST:PORT/v1#MODEL (a server such as `ldengine serve`; implies --backend openai).")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False), help="LoRA adapter folder (default: the committed one for this base).")
@click.option("--backend", default="transformers", show_default=True, help="Student backend (ldengine plugins lists them).")
@click.option("-k", "k", type=click.IntRange(1, 20), default=5, show_default=True, help="Retriever top-K.")
@click.option("--batch", type=click.IntRange(1, 256),
              help="Games played side by side, each stage's selections scored together "
                   "[default: 1 for the loop agents (ld, expert...), 16 for the text agents].")
@click.option("--no-memo", is_flag=True,
              help="ld agents: score every selection with the model, even a prompt seen before (same choices; "
                   "for timing).")
@click.option("--no-conditions", is_flag=True,
              help="ld agents: offer every alternative of a stage instead of the one its read When: condition "
                   "calls for (ldengine functions read); the student alone chooses among them (an ablation).")
@_emergency_options
@_dtype_option
@_device_option
@_function_base_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--force", is_flag=True, help="Overwrite the --json, --trace, --audit and --plot files if they exist.")
def run(task, agent, games, seed, evader, json_path, trace, plot, audit, student, adapter, backend, k,
        batch, no_memo, no_conditions, emergency, emergency_seed, attempts, by_reading, dtype, device, function_base,
        quiet, force):
    """Play GAMES seeded games of TASK and print a summary.

    With --emergency NAME a new rule is in force; the ld agent has the student
    write a function for it (verified in the isolated sandbox) or reuses a
    stored verified one.
    """
    reg = registry()
    _check_emergency_seed(emergency, emergency_seed, by_reading)
    _check_outputs({"--json": json_path, "--trace": trace, "--audit": audit}, plot, reg.task(task),
                   force=force)
    evader = task_evader(reg.task(task), evader)      # the task's own when not named
    options = {"student": student, "adapter": adapter, "backend": _backend(student, backend), "k": k,
               "attempts": attempts, "read": by_reading, "device": chosen_device(device), "no_memo": no_memo,
               "conditions": not no_conditions,
               "dtype": None if dtype == "float32" else dtype, "log": lambda line: click.echo(line, err=True)}
    cfg = RunConfig(task, agent, games, seed, evader, trace, audit, progress=not quiet, options=options,
                    emergency=emergency, emergency_seed=seed if emergency_seed is None else emergency_seed,
                    function_base=function_base, batch=batch)
    outcome = run_games(reg, cfg)
    runlog.append("run", _this_command(task, evader=evader), outcome.summary, interrupted=outcome.interrupted or None)
    click.echo(format_summary(outcome.summary, reg.task(task)))
    if json_path:
        Path(json_path).write_text(json.dumps(outcome.summary, indent=2) + "\n", encoding="utf-8")
    if plot and outcome.results:
        reg.task(task).plot(outcome.results[0], plot, agent + (f" vs {evader} evader" if evader else ""))
        click.echo(f"plot: {plot}")
    if outcome.interrupted:
        raise click.ClickException(f"interrupted after {len(outcome.results)} game(s); "
                                   "the summary and trace cover those")


def _this_command(task: str, **effective: object) -> str:
    """The running command with TASK and every effective option spelled out (to replay it);
    ``effective`` gives the value an option took where it differs from what was parsed (the
    task's own evader for no --evader)."""
    ctx = click.get_current_context()
    params = {**ctx.params, **effective}
    return command_line(ctx.command_path, [task], [(p.opts[0], params[p.name]) for p in ctx.command.params
                                                  if p.name != "task" and p.name in params])


def _setup_words(s: dict) -> str:
    """The header's account of what played: student (weights' type), adapter, function base, emergency."""
    words = ""
    if s.get("student"):
        words += f" | student {s['student']} ({s.get('dtype')}) | adapter {s.get('adapter') or 'none'}"
    if s.get("function_base_version"):
        words += f" | base {s['function_base_version']}"
    return words + (f" | emergency {s['emergency']}" if s.get("emergency") else "")


def format_summary(s: dict, task: TaskBase | None = None) -> str:
    """The human summary of a run; a task with ``summary_lines(summary)`` words its own results."""
    games = s["games"]
    seeds = f"seeds {s['seed']}-{s['seed'] + games - 1}" if games else "no games"
    task = task or TaskBase()
    unit = task.unit      # what one game is called (a hand)
    plural = unit if games == 1 else unit + "s"
    opponent = f" | evader {s['evader']}" if task.uses_evader and s.get("evader") else ""
    lines = [f"{s['task']} | agent {s['agent']}{opponent} | {games} {plural} ({seeds})" + _setup_words(s)]
    if task.summary_lines is not None:
        lines += task.summary_lines(s)
    else:
        lines += _outcome_lines(s, task)
    if s.get("selection_accuracy") is not None:
        lines[-1] += f"  selection accuracy {s['selection_accuracy']:.3f}"
    if s.get("distinct_prompts") is not None:
        lines[-1] += f"  selection prompts {s['distinct_prompts']} distinct, {s['model_calls']} model calls"
    rate = games / s["wall_s"] if s["wall_s"] else 0.0
    lines.append(f"wall {s['wall_s']:.2f} s ({rate:.3g} {unit}s/s)")
    return "\n".join(lines)


def _outcome_lines(s: dict, task: TaskBase) -> list[str]:
    """A summary's lines for a task without ``summary_lines``: the share of each of its outcomes
    (``outcome_columns``) that the summary holds, then average steps of success and violations
    where it has them."""
    shares = "  ".join(f"{label.lower()} {s[key]:.3f}" for key, label in task.outcome_columns
                       if isinstance(s.get(key), (int, float)))
    extra = []
    if "avg_steps_success" in s:
        extra.append("average steps of success " + ("-" if s["avg_steps_success"] is None
                                                    else f"{s['avg_steps_success']:.2f}"))
    if "violations" in s:
        extra.append(f"violations {s['violations']}")
    return [line for line in (shares, "  ".join(extra)) if line] or [""]


@cli.command(name="eval")
@click.argument("task")
@click.option("--agents", default="ld,kd,student,expert", show_default=True,
              help="Comma-separated agents; each plays the same seeded games.")
@click.option("--games", "--hands", "games", default=200, show_default=True, type=click.IntRange(1, 100_000),
              help="Games per agent (--hands: the same, for a task whose games are hands).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Game i uses seed SEED+i.")
@click.option("--evader", help=EVADER_HELP)
@click.option("--out", default="results/eval", show_default=True, type=click.Path(file_okay=False),
              help="Output folder (run.json, games.jsonl, results.json, table.md, figures).")
@click.option("--resume", is_flag=True, help="Continue the run in OUT: play only the games it lacks.")
@click.option("--replay", metavar="AGENTS", help="With --resume: drop these agents' recorded games (comma-separated) "
              "and play them again, e.g. after retraining an adapter.")
@click.option("--start", help="Start of the trajectory figures: one of the task's named starts (e.g. 'paper', "
              "the paper's Figure 6) instead of game 0's.")
@click.option("--no-figures", is_flag=True, help="Skip the PNG figures.")
@click.option("--batch", type=click.IntRange(1, 256),
              help="Games played side by side, each stage's selections (or answers) scored together "
                   "[default: 1 for the loop agents (ld, expert...), 16 for the text agents].")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes that play each agent's games, each loading the agent once (results are those "
                   "of one process; each worker takes about 1.2 GB with the student).")
@click.option("--student", callback=_student_source, help="Student model: a .gguf file, a local HF model folder, "
              "or openai:http://HOST:PORT/v1#MODEL (a server such as `ldengine serve`; implies --backend openai).")
@click.option("--adapter", "adapters", multiple=True, metavar="AGENT=DIR",
              help="LoRA adapter for one agent, e.g. kd=path/to/adapter (default: the committed ones).")
@click.option("--backend", default="transformers", show_default=True, help="Student backend.")
@click.option("-k", "k", type=click.IntRange(1, 20), default=5, show_default=True, help="Retriever top-K (ld).")
@click.option("--teacher-url", help="OpenAI-compatible endpoint for the teacher agent, e.g. http://localhost:8000/v1.")
@click.option("--teacher-model", help="Model name at the teacher endpoint.")
@click.option("--teacher-key-env", default="LDENGINE_TEACHER_KEY", show_default=True,
              help="Environment variable holding the teacher's API key.")
@_emergency_options
@_dtype_option
@_device_option
@_function_base_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
def eval_cmd(task, agents, games, seed, evader, out, resume, replay, start, no_figures, batch, workers, student,
             adapters, backend, k, teacher_url, teacher_model, teacher_key_env, emergency, emergency_seed, attempts,
             by_reading, dtype, device, function_base, quiet):
    """Every agent plays the same GAMES seeded games of TASK; write Table 1, results and figures.

    Results go to OUT game by game; after Ctrl-C or a crash, the same command
    with --resume plays only the missing games.
    """
    names = [a.strip() for a in agents.split(",") if a.strip()]
    if not names:
        raise click.BadParameter("name at least one agent", param_hint="--agents")
    again = [a.strip() for a in (replay or "").split(",") if a.strip()]
    if again and not resume:
        raise click.BadParameter("replaying agents continues a run: add --resume", param_hint="--replay")
    if set(again) - set(names):
        raise click.BadParameter(f"{', '.join(sorted(set(again) - set(names)))} not in --agents",
                                 param_hint="--replay")
    evader = task_evader(registry().task(task), evader)      # the task's own when not named
    _check_emergency_seed(emergency, emergency_seed, by_reading)
    _check_outputs({}, folders={"--out": out})
    options = {"student": student, "backend": _backend(student, backend), "k": k, "teacher_url": teacher_url,
               "teacher_model": teacher_model, "teacher_key_env": teacher_key_env, "attempts": attempts,
               "read": by_reading,
               "device": chosen_device(device), "dtype": None if dtype == "float32" else dtype, "log": click.echo}
    cfg = EvalConfig(task, list(dict.fromkeys(names)), games, seed, evader, out, resume, start,
                     not no_figures, not quiet, batch, options, _adapters(adapters),
                     _this_command(task, evader=evader), emergency,
                     seed if emergency_seed is None else emergency_seed, again, function_base=function_base,
                     workers=workers)
    try:
        evaluate(registry(), cfg, log=click.echo)
        runlog.append("eval", cfg.command, {"games": games}, agents=cfg.agents, out=out)
    except KeyboardInterrupt:
        runlog.append("eval", cfg.command, {"games": games}, agents=cfg.agents, out=out, interrupted=True)
        if (Path(out) / "run.json").exists():
            run = json.loads((Path(out) / "run.json").read_text(encoding="utf-8"))
            write_results(registry(), Path(out), run)
        raise click.ClickException(f"interrupted; finished games are in {out}/games.jsonl and the "
                                   "partial table in table.md; run the same command with --resume") from None
    click.echo((Path(out) / "table.md").read_text(encoding="utf-8"))
    click.echo(f"results: {out}/results.json, games: {out}/games.jsonl")


def _adapters(pairs) -> dict:
    table = {}
    for pair in pairs:
        agent, sep, path = pair.partition("=")
        if not sep or not agent or not path:
            raise click.BadParameter(f"{pair!r} is not AGENT=DIR", param_hint="--adapter")
        if not Path(path).is_dir():
            raise click.BadParameter(f"{path!r} is not a folder", param_hint="--adapter")
        table[agent] = path
    return table


@cli.command(name="plot")
@click.argument("trace")
@click.option("--game", default=0, show_default=True, type=click.IntRange(0), help="The game to draw.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True),
              help="PNG file [default: TRACE's name with -gameN.png].")
def plot_cmd(trace, game, out):
    """Draw one game of a saved trace (ldengine run TASK --trace FILE): the pieces' trails,
    start and end."""
    if Path(trace).is_dir():
        raise click.BadParameter(f"{trace} is a folder, not a trace file (write one with ldengine run TASK "
                                 "--trace FILE)", param_hint="TRACE")
    out = out or str(Path(trace).with_suffix("")) + f"-game{game}.png"
    check_plot(out, "--out")
    plot_game(registry(), trace, game, out)
    click.echo(f"plot: {out}")
