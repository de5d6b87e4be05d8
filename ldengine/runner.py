"""Runs N seeded games of a task with one agent; writes the trace as it goes.

The trace is flushed game by game, so an interrupted run keeps every finished
game; the summary then says how many games were played and that it was cut short.

An agent with ``act_batch(states)`` (the text-answering agents, and the
loop agents with ``--batch``) plays up to ``batch`` games side by side: each round it decides one step of every running
game at once, and a finished game's place goes to the next one. Results are
the same as one game at a time, up to float rounding in batched matrix products.
"""
from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, cast

from tqdm import tqdm

from ldengine import clock
from ldengine.agents import AgentContext
from ldengine.contracts import Agent, Evader, TaskBase, require, task_evader
from ldengine.emergency.rule import under_emergency
from ldengine.errors import LDEngineError
from ldengine.functionbase import FunctionBase, base_for
from ldengine.registry import Registry
from ldengine.sandbox import Sandbox, SandboxResult


@dataclass
class RunConfig:
    task: str | None = None             # None: the first task registered (Registry.default_task)
    agent: str = "expert"
    games: int = 1
    seed: int = 0
    evader: str | None = None           # None: the task's own (its ``evader``), if any
    trace: str | None = None
    audit: str | None = None
    progress: bool = True
    options: dict = field(default_factory=dict)
    emergency: str | None = None        # an emergency kind in force (its parameters drawn with emergency_seed)
    emergency_seed: int = 0
    function_base: str | None = None    # a stored version (ldengine distill) instead of the plugins' base
    batch: int | None = None            # games side by side (None: the agent's default)


@dataclass
class Played:
    """One finished game (or the error that stopped it) and what it cost."""
    game: int
    seed: int
    result: Any = None        # the task's GameResult, None when the game errored
    error: str | None = None
    wall_s: float = 0.0
    model_calls: float = 0.0
    tokens: float = 0.0

    def cost(self) -> dict:
        return {"wall_s": round(self.wall_s, 4), "model_calls": round(self.model_calls, 2),
                "tokens": round(self.tokens, 1)}


@dataclass
class RunOutcome:
    summary: dict
    results: list
    interrupted: bool = False


def build_agent(registry: Registry, task: TaskBase, agent: str, options: dict | None = None,
                audit: Callable | None = None, version: str | None = None) -> tuple[Agent, FunctionBase]:
    """The agent and its function base: the plugins' base, or the stored ``version``."""
    registered = registry.get("agents", agent)
    base = base_for(registry, task.name, version, Sandbox(audit=audit))
    made = registered.obj(AgentContext(task, base, dict(options or {}), registry))
    require(made, Agent, registered.plugin, f"agent {agent!r} (what its factory returned)")
    return made, base


def run_games(registry: Registry, cfg: RunConfig) -> RunOutcome:
    name = cfg.task or registry.default_task()
    task = under_emergency(registry, registry.task(name), cfg.emergency, cfg.emergency_seed)
    cfg = replace(cfg, task=name, evader=task_evader(task, cfg.evader))   # what plays, as the summary says
    policy = registry.policy(cfg.evader)
    results, interrupted, start = [], False, clock.now()
    with ExitStack() as stack:
        agent, base = build_agent(registry, task, cfg.agent, cfg.options, _auditor(stack, cfg.audit),
                                  cfg.function_base)
        log = cfg.options.get("log")
        if cfg.progress and callable(log):
            log(header_line(cfg, agent))        # what plays, before the games (the summary repeats it)
        emit = _emitter(stack, cfg.trace)
        bar = stack.enter_context(_progress(cfg))
        games = [(i, cfg.seed + i) for i in range(cfg.games)]
        try:
            for played in play_games(task, agent, games, policy, emit, cfg.agent, cfg.evader or "", cfg.batch,
                                     on_round=round_progress(bar)):
                if played.error:
                    raise LDEngineError(f"game {played.game} (seed {played.seed}) failed: {played.error}")
                results.append(played.result)
                bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
    results.sort(key=lambda r: r.game)
    summary = _summary(cfg, task, agent, base, results, clock.now() - start, interrupted)
    return RunOutcome(summary, results, interrupted)


def play_games(task: TaskBase, agent: Agent, games: list[tuple[int, int]], policy: Evader | None, emit: "Emitter",
               agent_name: str = "", evader_name: str = "", batch: int | None = None, start: dict | None = None,
               on_round: Callable[[int, int], None] | None = None) -> Iterator["Played"]:
    """Play ``games`` ((index, seed) pairs); yield a ``Played`` as each game ends.

    ``batch`` games go side by side for an agent with ``act_batch`` (None: the
    agent's ``default_batch``, else 16); after each step they take together,
    ``on_round(rounds so far, games in play)`` (a progress bar that moves while
    no game has ended yet).

    A game whose agent or task raises is yielded with its error, and the others
    go on. Each game's trace records are written when it ends.
    """
    batch = batch or getattr(agent, "default_batch", None) or 16
    watch = getattr(agent, "refereed", None)
    if callable(watch):             # the run-time monitor (LoopAgent.refereed)
        emit = Refereed(emit, watch)
    if callable(getattr(agent, "act_batch", None)) and task.game_steps is not None and batch > 1:
        yield from _play_side_by_side(task, agent, games, policy, emit, agent_name, evader_name, batch, start,
                                      on_round)
        return
    for index, seed in games:
        before, t0 = usage_of(agent), clock.now()
        played = Played(index, seed)
        try:
            played.result = task.play(agent, index, seed, policy, emit, agent_name, evader_name,
                                 **({"start": start} if start else {}))
        except (KeyboardInterrupt, LDEngineError):
            raise
        except Exception as exc:  # a broken agent or plugin: this game is an error, the run goes on
            played.error = f"{type(exc).__name__}: {exc}"
        _charge([played], clock.now() - t0, before, usage_of(agent))
        emit.flush(index)
        yield played


def _play_side_by_side(task: TaskBase, agent: Agent, games: list[tuple[int, int]], policy: Evader | None, emit: "Emitter",
                       agent_name: str, evader_name: str, batch: int, start: dict | None,
                       on_round: Callable[[int, int], None] | None = None) -> Iterator["Played"]:
    game_steps = task.game_steps
    if game_steps is None:
        raise LDEngineError(f"task {task.name!r} cannot play games side by side (it has no game_steps)")
    waiting = list(games)
    running: dict[int, list] = {}   # index -> [Played, generator, state]
    rounds = 0
    while waiting or running:
        while waiting and len(running) < batch:
            index, seed = waiting.pop(0)
            steps = game_steps(index, seed, policy, emit, agent_name, evader_name,
                                    **({"start": start} if start else {}))
            running[index] = [Played(index, seed), steps, next(steps)]
        order = list(running)
        before, t0 = usage_of(agent), clock.now()
        # play_games checked that the agent has act_batch
        actions, extras = _act_each(cast(BatchAgent, agent), [running[i][2] for i in order])
        _charge([running[i][0] for i in order], clock.now() - t0, before, usage_of(agent))
        rounds += 1
        if on_round:
            on_round(rounds, len(order))
        for index, action, extra in zip(order, actions, extras):
            played, steps, _ = running[index]
            try:
                if isinstance(action, _Failed):
                    raise action.error
                running[index][2] = steps.send((action, *extra))
                continue
            except StopIteration as done:
                played.result = done.value
            except Exception as exc:
                played.error = f"{type(exc).__name__}: {exc}"
            del running[index]
            emit.flush(index)
            yield played


class BatchAgent(Agent, Protocol):
    """An agent that plays several games' steps at once (its optional ``act_batch``)."""

    def act_batch(self, states: list) -> list: ...


@dataclass
class _Failed:
    error: Exception


def _act_each(agent: BatchAgent, states: list) -> tuple[list, list]:
    """``agent.act_batch(states)`` and what each game is sent beside its action (the
    functions used and the stage records, for an agent that keeps ``last_batch``); if
    it raises, each state on its own, so one bad game does not take the others down."""
    try:
        return list(agent.act_batch(states)), _extras(agent, len(states))
    except (KeyboardInterrupt, LDEngineError):
        raise
    except Exception:
        actions, extras = [], []
        for state in states:
            try:
                actions.append(agent.act_batch([state])[0])
                extras += _extras(agent, 1)
            except (KeyboardInterrupt, LDEngineError):
                raise
            except Exception as exc:
                actions.append(_Failed(exc))
                extras.append(([], []))
        return actions, extras


def _extras(agent: object, n: int) -> list[tuple]:
    last = getattr(agent, "last_batch", None)
    return [tuple(x) for x in last] if last is not None and len(last) == n else [([], [])] * n


def usage_of(agent: object) -> dict:
    """The agent's cumulative model use (``model_calls``, ``tokens``); none for agents without a model."""
    usage = getattr(agent, "usage", None)
    return dict(usage() if callable(usage) else usage or {})


def _charge(played: list[Played], wall: float, before: dict, after: dict) -> None:
    """Split a round's wall time and model use evenly among the games it decided for."""
    share = 1 / len(played)
    for p in played:
        p.wall_s += wall * share
        p.model_calls += (after.get("model_calls", 0) - before.get("model_calls", 0)) * share
        p.tokens += (after.get("tokens", 0) - before.get("tokens", 0)) * share


def _summary(cfg, task, agent, base, results, wall, interrupted) -> dict:
    summary = {"agent": cfg.agent, "task": cfg.task, **task.summarize(results),
               "wall_s": round(wall, 3), "seed": cfg.seed, "evader": cfg.evader,
               "function_base_hash": base.hash, **_setup(cfg, agent), **agent.stats()}
    if interrupted:
        summary["interrupted"] = True
    return summary


def header_line(cfg: RunConfig, agent: object) -> str:
    """One line saying what is about to play: games and seeds, agent, student and adapter, base, emergency."""
    s = _setup(cfg, agent)
    words = [f"{cfg.games} game{'s' if cfg.games != 1 else ''} of {cfg.task} (seeds {cfg.seed}-"
             f"{cfg.seed + cfg.games - 1}), agent {cfg.agent}" + (f", evader {cfg.evader}" if cfg.evader else "")]
    if s["student"]:
        words.append(f"student {s['student']} ({s['dtype']}), adapter {Path(s['adapter']).name if s['adapter'] else 'none'}")
    if cfg.function_base:
        words.append(f"base {cfg.function_base}")
    if cfg.emergency:
        words.append(f"emergency {cfg.emergency}")
    return "playing " + " | ".join(words)


def _setup(cfg: RunConfig, agent: object) -> dict:
    """What the games were played with: student model, its weights' type and adapter folder
    (None for an agent without a model), function base version ("plugins": the plugins'
    modules) and the emergency in force (None)."""
    setup = getattr(agent, "setup", None) or {}
    return {"student": setup.get("student"), "dtype": setup.get("dtype"), "adapter": setup.get("adapter"),
            "function_base_version": cfg.function_base or "plugins", "emergency": cfg.emergency}


class Emitter:
    """Holds each game's trace records and writes them when that game is over, so an
    interrupted run leaves only whole games in the trace."""

    def __init__(self, fh):
        self.fh, self.pending = fh, {}

    def __call__(self, record: dict) -> None:
        if self.fh is not None:
            self.pending.setdefault(record.get("game"), []).append(
                json.dumps(record, separators=(", ", ": ")))

    def flush(self, game: object) -> None:
        lines = self.pending.pop(game, [])
        if self.fh is not None and lines:
            self.fh.write("".join(line + "\n" for line in lines))
            self.fh.flush()


class Refereed(Emitter):
    """An emitter that first shows each step record with a rejected proposal (a true
    ``illegal``) to ``watch``, so what it adds (``quarantined``) reaches the trace."""

    def __init__(self, inner: Emitter, watch: Callable[[dict], None]):
        super().__init__(None)
        self.inner, self.watch = inner, watch

    def __call__(self, record: dict) -> None:
        if record.get("illegal"):
            self.watch(record)
        self.inner(record)

    def flush(self, game: object) -> None:
        self.inner.flush(game)


def _emitter(stack: ExitStack, path: str | None) -> Emitter:
    return Emitter(stack.enter_context(open(path, "w", encoding="utf-8")) if path else None)


def _auditor(stack: ExitStack, path: str | None) -> Callable | None:
    """Writes every sandbox call (function, source hash, time, outcome) as a JSON line."""
    if not path:
        return None
    fh = stack.enter_context(open(path, "w", encoding="utf-8"))

    def audit(result: SandboxResult) -> None:
        fh.write(json.dumps({"function": result.function, "source_hash": result.source_hash,
                             "duration_ms": round(result.duration * 1000, 3), "ok": result.ok,
                             "error": result.error}) + "\n")
    return audit


def round_progress(bar: tqdm) -> Callable[[int, int], None]:
    """``play_games``' ``on_round`` for a progress bar: the rounds played shown beside it."""
    return lambda rounds, playing: bar.set_postfix_str(f"round {rounds}, {playing} in play", refresh=True)


def _progress(cfg: RunConfig):
    return tqdm(total=cfg.games, desc=f"{cfg.task}/{cfg.agent}", unit="game",
                disable=not cfg.progress or cfg.games < 2, leave=False)
