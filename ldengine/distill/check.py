"""Checking a teacher's answer: it holds one module that compiles under the sandbox's
policy, whose docstrings are manual entries with examples that hold, with one function
per stage, on which the expert plays seeded games cleanly, and that passes the task's
own checks. Every call runs in the isolated worker: the code is untrusted until it passes.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from ldengine.agents import AgentContext, expert_agent
from ldengine.contracts import TaskBase, task_evader
from ldengine.errors import LDEngineError, ManualError, SandboxCompileError
from ldengine.functionbase import FunctionBase
from ldengine.runner import Emitter, play_games
from ldengine.sandbox import IsolatedSandbox, Sandbox, compile_module

if TYPE_CHECKING:
    from ldengine.contracts import Evader
    from ldengine.registry import Registry

MODULE_FILE = "distilled.py"    # the module's file name, when checked and when stored
CHECK_SEED = 30_000         # check games use seeds apart from eval (0..), finetune (10_000, 20_000)
MAX_DETAILS = 8
MAX_DETAIL_CHARS = 800


@dataclass
class Check:
    """One property of an answer: passed or not, with what went wrong (and figures)."""
    name: str
    passed: bool
    details: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def line(self) -> str:
        state = "ok" if self.passed else "FAILED"
        extra = f" {json.dumps(self.figures)}" if self.figures else ""
        return f"{self.name:<9} {state}{extra}" + "".join(f"\n    - {d}" for d in self.details)


@dataclass
class Round:
    """One answer of the teacher and what the checks made of it."""
    number: int
    prompt_sha256: str
    answer_sha256: str
    checks: list[Check]
    source: str | None = None
    base: FunctionBase | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    def module(self) -> tuple[str, FunctionBase]:
        """The checked module's source and base, which every round that passed has."""
        if self.source is None or self.base is None:
            raise LDEngineError(f"round {self.number} has no checked module")
        return self.source, self.base

    def record(self) -> dict:
        return {"round": self.number, "passed": self.passed, "prompt_sha256": self.prompt_sha256,
                "answer_sha256": self.answer_sha256,
                "source_sha256": sha256(self.source) if self.source is not None else None,
                "checks": [asdict(c) for c in self.checks]}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(answer: str) -> str | None:
    """The module in the answer: its longest ```python block (or, without one, its longest
    untagged block); None when there is none."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(answer)]
    for wanted in (("python", "py", "python3"), ("",)):
        found = [body for lang, body in blocks if lang in wanted and body.strip()]
        if found:
            return max(found, key=len).strip() + "\n"
    return None


def check_answer(registry: Registry, task: TaskBase, answer: str, number: int, prompt: str, games: int) -> Round:
    """Every check of one answer (later checks only when the ones they need passed)."""
    done = Round(number, sha256(prompt), sha256(answer), [])
    done.source = extract_code(answer)
    if done.source is None:
        cut = " (an unclosed ``` suggests the answer was cut off: raise --max-tokens)" if answer.count("```") % 2 else ""
        done.checks.append(Check("code", False, ["the answer has no ```python code block with the module" + cut]))
        return done
    done.checks.append(Check("code", True))
    done.checks += check_module(registry, task, done.source, games, done)
    return done


def check_module(registry: Registry, task: TaskBase, source: str, games: int, done: Round | None = None) -> list[Check]:
    """The checks of a module's source, after ``code``; the checked base goes to ``done``."""
    filename = f"{task.name}/{MODULE_FILE}"
    try:
        compile_module(source, filename=filename, load=False)
    except SandboxCompileError as exc:
        return [Check("compile", False, _clip(str(exc).splitlines()))]
    base = FunctionBase(task.name, {}, {}, Sandbox())
    try:
        base.add_generated(source, filename, plugin="teacher")   # untrusted: calls run in the worker
    except ManualError as exc:
        return [Check("compile", True), Check("manual", False, [_short(str(exc))])]
    base.isolated = IsolatedSandbox()
    try:
        checks = [Check("compile", True), Check("manual", True, figures={"functions": len(base)}),
                  check_examples(base), check_stages(base, task)]
        if checks[-1].passed:
            checks.append(check_games(registry, task, base, games))
            checks += _task_checks(task, base)
    finally:
        base.isolated.close()
    if done is not None:
        done.base = base
    return checks


def check_examples(base: FunctionBase) -> Check:
    """Every docstring Example, run in the sandbox, gives its documented value."""
    failures, count = [], 0
    for entry in base.entries.values():
        for ex in entry.examples:
            count += 1
            target = entry.name if ex.function == entry.def_name else ex.function
            if target not in base.entries:
                failures.append(f"{entry.name}: example calls {ex.function!r}, which the module does not define")
                continue
            result = base.call(target, *ex.args)
            if not result.ok:
                failures.append(f"{entry.name}: >>> {ex.text} raised {result.error}")
            elif result.value != ex.expected:
                failures.append(f"{entry.name}: >>> {_short(ex.text, 240)} returned {_short(repr(result.value), 240)}, "
                                f"the docstring says {_short(repr(ex.expected), 240)}")
    return Check("examples", not failures, _clip(failures), {"examples": count, "failed": len(failures)})


def check_stages(base: FunctionBase, task: TaskBase) -> Check:
    """Every pipeline stage has exactly one function (the expert's choice)."""
    problems = []
    for stage in task.pipeline:
        found = [e.name for e in base.for_stage(stage)]
        if len(found) != 1:
            problems.append(f"stage {stage}: needs exactly one function, found "
                            f"{', '.join(found) if found else 'none'}")
    return Check("stages", not problems, problems)


def check_games(registry: Registry, task: TaskBase, base: FunctionBase, games: int) -> Check:
    """The expert on the new base plays seeded games: no violation, no function error, no game error."""
    agent = expert_agent(AgentContext(task, base, {}, registry))
    errors: list[str] = []
    agent.observers.append(lambda decision: errors.extend(
        f"{s.chosen} (stage {s.stage}) failed: {s.result.error}" for s in decision.stages if not s.result.ok))
    evader_name, policy = default_evader(registry, task)
    problems: list[str] = []
    outcomes: Counter[str] = Counter()
    violations = 0
    try:
        for played in play_games(task, agent, [(i, CHECK_SEED + i) for i in range(games)], policy,
                                 Emitter(None), "expert", evader_name or "", batch=1):
            if played.error:
                problems.append(f"game with seed {played.seed} stopped: {played.error}")
                continue
            outcomes[played.result.outcome] += 1
            violations += played.result.violations
            if played.result.violations:
                problems.append(f"game with seed {played.seed}: {played.result.violations} violation(s)")
    except LDEngineError as exc:
        problems.append(f"the expert could not play: {exc}")
    figures = {"games": games, "seeds": [CHECK_SEED, CHECK_SEED + games - 1], "evader": evader_name,
               "outcomes": dict(outcomes), "violations": violations, "function_errors": len(errors)}
    if errors:
        problems.insert(0, f"{len(errors)} function error(s), the first: {errors[0]}")
    return Check("games", not problems, _clip(problems), figures)


def _task_checks(task: TaskBase, base: FunctionBase) -> list[Check]:
    hook = task.distill_checks
    if not callable(hook):
        return []
    try:
        problems = [str(p) for p in hook(base)]
    except Exception as exc:  # the task's own check broke: report it as a failure, not a crash
        problems = [f"the task's check raised {type(exc).__name__}: {exc}"]
    return [Check("task", not problems, _clip(problems))]


def default_evader(registry: Registry, task: TaskBase) -> tuple[str | None, Evader | None]:
    """The task's own evader, as run and eval play against when none is named, and its policy; (None, None) for a task without one or one not registered."""
    name = task_evader(task)
    if name is None or name not in registry.evaders:
        return None, None
    return name, registry.evaders[name].obj


def _short(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _clip(details: list[str]) -> list[str]:
    out = [_short(d) for d in details[:MAX_DETAILS]]
    if len(details) > MAX_DETAILS:
        out.append(f"... and {len(details) - MAX_DETAILS} more")
    return out

