"""Agents that play a task through the decision loop, and the bookkeeping they share."""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ldengine.contracts import Student, TaskBase, require
from ldengine.functionbase import FunctionBase
from ldengine.loop import Decision, OracleSelector, WholeBase, Without, decide_batch
from ldengine.models import load_by_name, load_student
from ldengine.plugins import DEFAULT_PLUGINS

if TYPE_CHECKING:
    from pathlib import Path

    from ldengine.emergency.write import Written
    from ldengine.registry import Registry


@dataclass
class AgentContext:
    """What an agent factory receives."""
    task: TaskBase
    base: FunctionBase
    options: dict = field(default_factory=dict)
    registry: Registry | None = None

    def load_student(self, adapter: str | Path | None = None) -> Any:
        """The student backend named by the ``backend`` option (default ``transformers``),
        loaded from the ``student`` option's path (default: the backend's own model), in
        the ``dtype`` option's type and on the ``device`` option's device when given."""
        table = {name: item.obj for name, item in self.registry.students.items()} if self.registry else {}
        if not table:
            table = {"transformers": load_student}
        extra = {key: self.options[key] for key in ("dtype", "device") if self.options.get(key)}
        backend = self.options.get("backend") or "transformers"
        student = load_by_name(backend, table, path=self.options.get("student"), adapter=adapter, **extra)
        plugin = self.registry.students[backend].plugin if self.registry and backend in self.registry.students else ""
        require(student, Student, plugin or "ldengine", f"student backend {backend!r} (what its loader returned)")
        return student


class LoopAgent:
    """Plays each step through ``decide``; counts selections and function errors."""

    name = "loop"
    default_batch = 1   # games side by side unless asked (--batch): traces stay in game order
    # What a learned agent adds for the run's record (runner, evaluate): its model's and
    # retriever's identity, the model's usage, the student's setup, the emergency function.
    identity: Callable[[], dict] | None = None
    usage: Callable[[], dict] | None = None
    setup: dict | None = None
    emergency: Written | None = None

    def __init__(self, context: AgentContext, provider, selector):
        self.task, self.base = context.task, context.base
        self.pipeline = list(context.task.pipeline)
        self.provider, self.selector = provider, selector
        self.last_functions: list[str] = []
        self.last_stages: list[dict] = []
        self.last_batch: list[tuple[list[str], list[dict]]] = []
        self.counts: Counter = Counter()
        self.observers: list[Callable[[Decision], None]] = []
        self.quarantined: dict[str, str] = {}      # generated or third-party function -> why it was dropped
        self.log: Callable[[str], None] = context.options.get("log") or _stderr

    def act(self, state: object) -> object:
        action = self.act_batch([state])[0]
        self.last_functions, self.last_stages = self.last_batch[0]
        return action

    def act_batch(self, states: list) -> list:
        """One step of several games in lockstep (``decide_batch``); ``last_batch`` then
        holds each game's (functions used, stage records), in order."""
        provider = Without(self.provider, set(self.quarantined)) if self.quarantined else self.provider
        decisions = decide_batch(states, self.pipeline, self.base, provider, self.selector, self.adopted())
        # The expert's candidates are the whole base: its trace names only chosen and oracle.
        whole = isinstance(self.provider, WholeBase)
        self.last_batch = [(d.functions, [s.record(with_candidates=not whole) for s in d.stages])
                           for d in decisions]
        for decision, (_, records) in zip(decisions, self.last_batch):
            self._quarantine(decision, records)
        for decision in decisions:
            self._count(decision)
            for observe in self.observers:
                observe(decision)
        return [d.action for d in decisions]

    def adopted(self) -> set:
        """Stages this agent added to the task's pipeline (an emergency's): a failure there
        passes the stage's input on instead of failing the step."""
        return set(self.pipeline) - set(self.task.pipeline)

    def _quarantine(self, decision: Decision, records: list[dict]) -> None:
        """A function the engine does not ship (generated, or a third-party plugin's) is
        quarantined after its first failure, with one line to the log and in the trace: in a
        stage an emergency adopted, that stage is dropped from the pipeline; elsewhere the
        function is no longer offered (the stage's other candidates are), not called again
        every step. The step it failed in fails as before."""
        for stage, record in zip(decision.stages, records):
            if not stage.result.ok:
                self._drop(stage.stage, stage.chosen, record, f"after its first failure ({stage.result.error})",
                           stage.result.error or "failed")

    def refereed(self, record: dict) -> None:
        """The run-time monitor: the referee rejected a proposal of a step (its trace record
        has a true ``illegal``: a count, or one flag per proposal). The function the engine does
        not ship that shaped the action last (the latest such stage of the step's
        ``selections``) is quarantined at once, as a failing one is; the trace record and the
        summary say so. Nothing happens when only the engine's own functions shaped it."""
        illegal = record.get("illegal")
        if not (any(illegal) if isinstance(illegal, (list, tuple)) else illegal):
            return
        for stage in reversed(record.get("selections") or []):
            if isinstance(stage, dict) and self._drop(
                    stage.get("stage"), stage.get("chosen"), record,
                    "at once: the referee rejected a move it shaped", "the referee rejected a move it shaped"):
                return

    def _drop(self, stage: Any, name: Any, record: dict, when: str, reason: str) -> bool:
        """Quarantine ``name`` (chosen at ``stage``) if the engine does not ship it; True if it
        is (or already was) quarantined, False for the engine's own functions."""
        entry = self.base.entries.get(name) if isinstance(name, str) else None
        if entry is None:
            return False
        if name in self.quarantined:
            return True
        if stage in self.adopted() and entry.module in self.base.untrusted:
            why = f"{name} quarantined {when}; stage {stage} dropped from the pipeline"
            self.pipeline.remove(stage)
        elif entry.module in self.base.untrusted or entry.plugin not in DEFAULT_PLUGINS:
            why = f"{name} ({entry.plugin}) quarantined {when}; not offered at {stage} again"
        else:
            return False
        record["quarantined"] = why
        self.quarantined[name] = reason
        self.log(why)
        return True

    def _count(self, decision: Decision) -> None:
        self.counts["steps"] += 1
        for stage in decision.stages:
            self.counts["selections"] += 1
            self.counts["correct"] += stage.correct
            if stage.cause:
                self.counts[stage.cause] += 1
        self.counts["failed_steps"] += decision.action is None

    def stats(self) -> dict:
        """Selection accuracy against the oracle, and each wrong stage counted by its cause."""
        c = self.counts
        return {"selection_accuracy": c["correct"] / c["selections"] if c["selections"] else None,
                "selections": c["selections"], "retrieval_miss": c["retrieval_miss"],
                "wrong_pick": c["wrong_pick"], "function_errors": c["function_error"],
                "failed_steps": c["failed_steps"], **_emergency_stats(getattr(self, "emergency", None)),
                **({"quarantined": dict(self.quarantined)} if self.quarantined else {}),
                **(self.selector.stats() if callable(getattr(self.selector, "stats", None)) else {}),
                **(self.provider.stats() if callable(getattr(self.provider, "stats", None)) else {})}


def _emergency_stats(written) -> dict:
    """Whether the agent adopted a verified function for the emergency, and after how many attempts."""
    if written is None:
        return {}
    return {"emergency_function": written.name if written.passed else None,
            "emergency_attempts": len(written.attempts) or written.provenance.get("accepted_attempt")}


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def expert_agent(context: AgentContext) -> LoopAgent:
    """The teacher's logic: the right function per stage (oracle), run in the sandbox."""
    agent = LoopAgent(context, WholeBase(context.base), OracleSelector(context.base))
    agent.name = "expert"
    return agent
