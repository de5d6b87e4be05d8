"""Runs N seeded games of a task with one agent; writes the trace as it goes.

The trace is flushed game by game, so an interrupted run keeps every finished
game; the summary then says how many games were played and that it was cut short.
"""
from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable

from ldengine.agents import AgentContext
from ldengine.functionbase import FunctionBase
from ldengine.registry import Registry
from ldengine.sandbox import Sandbox, SandboxResult


@dataclass
class RunConfig:
    task: str = "pursuit"
    agent: str = "expert"
    games: int = 1
    seed: int = 0
    evader: str = "greedy"
    trace: str | None = None
    audit: str | None = None
    progress: bool = True
    options: dict = field(default_factory=dict)


@dataclass
class RunOutcome:
    summary: dict
    results: list
    interrupted: bool = False


def build_agent(registry: Registry, task: Any, agent: str, options: dict | None = None,
                audit: Callable | None = None):
    factory = registry.get("agents", agent).obj
    base = FunctionBase.build(task.name, registry.modules_for(task.name), Sandbox(audit=audit))
    return factory(AgentContext(task, base, dict(options or {}), registry)), base


def run_games(registry: Registry, cfg: RunConfig) -> RunOutcome:
    task = registry.get("tasks", cfg.task).obj
    policy = registry.get("evaders", cfg.evader).obj
    results, interrupted, start = [], False, time.perf_counter()
    with ExitStack() as stack:
        agent, base = build_agent(registry, task, cfg.agent, cfg.options, _auditor(stack, cfg.audit))
        emit = _emitter(stack, cfg.trace)
        bar = stack.enter_context(_progress(cfg))
        try:
            for i in range(cfg.games):
                results.append(task.play(agent, i, cfg.seed + i, policy, emit, cfg.agent, cfg.evader))
                emit.flush()
                bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
    summary = _summary(cfg, task, agent, base, results, time.perf_counter() - start, interrupted)
    return RunOutcome(summary, results, interrupted)


def _summary(cfg, task, agent, base, results, wall, interrupted) -> dict:
    summary = {"agent": cfg.agent, "task": cfg.task, **task.summarize(results),
               "wall_s": round(wall, 3), "seed": cfg.seed, "evader": cfg.evader,
               "function_base_hash": base.hash, **agent.stats()}
    if interrupted:
        summary["interrupted"] = True
    return summary


class _Emitter:
    """Holds one game's trace records and writes them when the game is over, so an
    interrupted run leaves only whole games in the trace."""

    def __init__(self, fh):
        self.fh, self.pending = fh, []

    def __call__(self, record: dict) -> None:
        if self.fh is not None:
            self.pending.append(json.dumps(record, separators=(", ", ": ")))

    def flush(self) -> None:
        if self.fh is not None:
            self.fh.write("".join(line + "\n" for line in self.pending))
            self.fh.flush()
        self.pending = []


def _emitter(stack: ExitStack, path: str | None) -> _Emitter:
    return _Emitter(stack.enter_context(open(path, "w", encoding="utf-8")) if path else None)


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


def _progress(cfg: RunConfig):
    from tqdm import tqdm
    return tqdm(total=cfg.games, desc=f"{cfg.task}/{cfg.agent}", unit="game",
                disable=not cfg.progress or cfg.games < 2, leave=False)
