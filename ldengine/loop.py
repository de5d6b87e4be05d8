"""The decision loop (Algorithm 1 of the paper).

For each stage j of a step: a candidate provider proposes functions, a selector
picks one, the sandbox runs it on the previous stage's output
(``o_j = f_j(o_{j-1})``, ``o_0`` = the state), and the last output is the
action. The selector and the candidate provider are pluggable: the expert uses
the whole base and an oracle; the learned agent uses a retriever and a student.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Container, Protocol

from ldengine.functionbase import FunctionBase
from ldengine.manual import ManualEntry
from ldengine.sandbox import SandboxResult


class CandidateProvider(Protocol):
    """A stage's candidates for a state. Optional: ``candidates_batch(stage, states)``
    (several games at once)."""
    def candidates(self, stage: str, state: object) -> list[ManualEntry]: ...


class Selector(Protocol):
    """Chooses one of a stage's candidates. Optional: ``select_batch(stage, states,
    candidates)`` (several games at once) and ``last_probabilities``."""
    def select(self, stage: str, state: object, candidates: list[ManualEntry]) -> int: ...


@dataclass
class StageRecord:
    stage: str
    state: object           # the stage's input, o_{j-1}
    candidates: list[str]
    chosen: str
    oracle: str
    result: SandboxResult
    probabilities: list[float] | None = None    # the selector's, one per candidate (None: it has none)

    def record(self, with_candidates: bool = True) -> dict:
        """The stage as a trace sees it: candidates, the chosen one, the oracle's, probabilities."""
        out: dict[str, object] = {"stage": self.stage, "chosen": self.chosen, "oracle": self.oracle}
        if with_candidates:
            out["candidates"] = self.candidates
        if self.probabilities is not None:
            out["probabilities"] = [round(float(p), 4) for p in self.probabilities]
        return out

    @property
    def correct(self) -> bool:
        return self.chosen == self.oracle

    @property
    def cause(self) -> str | None:
        """Why the stage went wrong: retrieval_miss, wrong_pick or function_error (None if right)."""
        if self.oracle not in self.candidates:
            return "retrieval_miss"
        if not self.correct:
            return "wrong_pick"
        return None if self.result.ok else "function_error"


@dataclass
class Decision:
    """A step's action (None when a stage failed) and what each stage did."""
    action: object
    stages: list[StageRecord] = field(default_factory=list)

    @property
    def functions(self) -> list[str]:
        return [s.chosen for s in self.stages]


def decide(state: object, pipeline: list[str], base: FunctionBase,
           provider: CandidateProvider, selector: Selector) -> Decision:
    """Runs one decision step through every stage of ``pipeline``."""
    return decide_batch([state], pipeline, base, provider, selector)[0]


def decide_batch(states: list, pipeline: list[str], base: FunctionBase,
                 provider: CandidateProvider, selector: Selector, optional: Container[str] = ()) -> list[Decision]:
    """One decision step for each of several states (games in lockstep): stage by stage,
    every state's selection is asked in one batch (``selector.select_batch`` when it has
    one), so a student scores them together. Each state goes through exactly what
    ``decide`` would do with it alone; one whose stage fails stops there, unless the stage
    is ``optional`` (an adopted one): then its input goes on to the next stage unchanged."""
    decisions, values, live = [Decision(None) for _ in states], list(states), list(range(len(states)))
    for stage in pipeline:
        if not live:
            break
        batch = getattr(provider, "candidates_batch", None)
        candidates = batch(stage, [values[i] for i in live]) if batch else \
            [provider.candidates(stage, values[i]) for i in live]
        picks = _select_all(selector, stage, [values[i] for i in live], candidates)
        still = []
        for i, offered, (index, probabilities) in zip(live, candidates, picks):
            value, chosen = values[i], offered[index]
            oracle = base.oracle(stage, value).name     # before the call: it reads the same input
            result = base.call(chosen.name, value) if chosen.task == base.task else _foreign(chosen, base)
            decisions[i].stages.append(StageRecord(stage, value, [label(c, base) for c in offered],
                                                   label(chosen, base), oracle, result, probabilities))
            if result.ok:
                values[i] = result.value
            if result.ok or stage in optional:
                still.append(i)
        live = still
    for i in live:
        decisions[i].action = values[i]
    return decisions


def _select_all(selector: Selector, stage: str, states: list, candidates: list) -> list[tuple]:
    """(index, probabilities or None) for each state: in one batch when the selector can."""
    batched = getattr(selector, "select_batch", None)
    if callable(batched):
        return batched(stage, states, candidates)
    out = []
    for state, offered in zip(states, candidates):
        index = selector.select(stage, state, offered)
        out.append((index, getattr(selector, "last_probabilities", None)))
    return out


def label(entry: ManualEntry, base: FunctionBase) -> str:
    """An entry's name as ``base``'s task sees it: bare, or ``task:name`` from another task."""
    return entry.name if entry.task == base.task else f"{entry.task}:{entry.name}"


def _foreign(entry: ManualEntry, base: FunctionBase) -> SandboxResult:
    """Another task's function is never run on this task's state: the stage fails."""
    return SandboxResult(label(entry, base), error_type="ForeignFunction",
                         error=f"ForeignFunction: {entry.name} belongs to the {entry.task} task, "
                               f"not {base.task}")


class WholeBase:
    """Candidate provider offering every function of the base (no retrieval)."""

    def __init__(self, base: FunctionBase):
        self.entries = list(base.entries.values())

    def candidates(self, stage: str, state: object) -> list[ManualEntry]:
        return self.entries


class Without:
    """A provider's candidates less the named functions (those an agent quarantined); a stage
    whose every candidate is named keeps them (it has nothing else to run)."""

    def __init__(self, provider: CandidateProvider, names: set[str]):
        self.provider, self.names = provider, names

    def _less(self, offered: list[ManualEntry]) -> list[ManualEntry]:
        return [e for e in offered if e.name not in self.names] or offered

    def candidates(self, stage: str, state: object) -> list[ManualEntry]:
        return self._less(self.provider.candidates(stage, state))

    def candidates_batch(self, stage: str, states: list) -> list[list[ManualEntry]]:
        batch = getattr(self.provider, "candidates_batch", None)
        offered = batch(stage, states) if batch else [self.provider.candidates(stage, s) for s in states]
        return [self._less(o) for o in offered]

    def __getattr__(self, name: str) -> object:
        return getattr(self.provider, name)      # the provider's stats and the like


class OracleSelector:
    """Picks the base's right function for the stage and state (``FunctionBase.oracle``)."""

    def __init__(self, base: FunctionBase):
        self.base = base

    def select(self, stage: str, state: object, candidates: list[ManualEntry]) -> int:
        right = self.base.oracle(stage, state)
        for i, entry in enumerate(candidates):
            if entry.task == right.task and entry.name == right.name:
                return i
        return 0


class FirstSelector:
    """Takes the provider's first candidate: the retriever's top-1, an ablation with no model."""

    def select(self, stage: str, state: object, candidates: list[ManualEntry]) -> int:
        return 0
