"""``ldengine distill``: a teacher (L-LLM) turns a task's rules into a function base.

Step 1 of the paper's Algorithm 1. The teacher, any OpenAI-compatible chat
endpoint, gets the task's rules and stage list and answers with one Python
module in the function-base conventions (DESIGN.md). The engine checks it:

1. ``code``: the answer holds a Python code block;
2. ``compile``: the sandbox's policy and RestrictedPython compiler accept it;
3. ``manual``: every top-level function's docstring is a manual entry, and the
   module has a VERSION;
4. ``examples``: every docstring Example gives its documented value;
5. ``stages``: every pipeline stage has exactly one function;
6. ``games``: the ``expert`` agent on the new base plays seeded games with no
   violation, no function error and no game error;
7. ``task``: the task's own properties, when it has ``distill_checks(base)``
   (a list of problems, empty when all hold).

The teacher's code is untrusted until it passes: every call during the checks
runs in the isolated worker (``IsolatedSandbox``), so a function that hangs or
crashes fails its check instead of the command. When checks fail, the teacher
gets the failures and is asked for the whole module again, up to ``rounds``
answers. A module that passes is stored as a new version,
``function_base/TASK/versions/distilled-HASH/`` (module + ``provenance.json``),
never overwriting one; one that never passes stores nothing. Its provenance
records the module file's sha256 and a hash over the module's whole text:
loading refuses a version changed afterwards (``functionbase.base_for``).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ldengine import __version__
from ldengine.errors import LDEngineError, ManualError, SandboxCompileError
from ldengine.functionbase import (PROVENANCE, FunctionBase, read_provenance, version_hash, version_names,
                                   versions_dir)
from ldengine.teacher import DEFAULT_KEY_ENV, ChatClient, TeacherError

MODULE_FILE = "distilled.py"
CHECK_SEED = 30_000         # check games use seeds apart from eval (0..), finetune (10_000, 20_000)
SAMPLE_SEED = 0             # the state shown to the teacher in the prompt
MAX_DETAILS = 8
MAX_DETAIL_CHARS = 800


@dataclass
class DistillConfig:
    task: str
    url: str
    model: str
    key_env: str = DEFAULT_KEY_ENV
    rules_file: str | None = None
    rounds: int = 3
    games: int = 5              # seeded games the expert plays on the new base
    max_tokens: int = 8192
    timeout_s: float = 600.0


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

    def record(self) -> dict:
        return {"round": self.number, "passed": self.passed, "prompt_sha256": self.prompt_sha256,
                "answer_sha256": self.answer_sha256,
                "source_sha256": sha256(self.source) if self.source is not None else None,
                "checks": [asdict(c) for c in self.checks]}


@dataclass
class Distilled:
    version: str
    path: Path
    base_hash: str
    stored: bool                # False: the same base was already stored under ``version``
    rounds: list[Round]


class DistillError(LDEngineError):
    """No answer passed the checks; nothing was stored."""


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# ---- the conversation ------------------------------------------------------------------------

def distill(registry: Any, cfg: DistillConfig, log: Callable[[str], None] = print) -> Distilled:
    """Ask, check, repair up to ``cfg.rounds`` times; store the first module that passes."""
    task = registry.get("tasks", cfg.task).obj
    rules, rules_source = task_rules(task, cfg.rules_file)
    client = ChatClient(cfg.url, cfg.model, cfg.key_env, timeout_s=cfg.timeout_s)
    prompt = build_prompt(registry, task, rules)
    messages, rounds = [{"role": "user", "content": prompt}], []
    for number in range(1, cfg.rounds + 1):
        log(f"round {number}/{cfg.rounds}: asking {cfg.model} at {public_url(cfg.url)}")
        answer = _ask(client, messages, cfg.max_tokens)
        done = check_answer(registry, task, answer, number, messages[-1]["content"], cfg.games)
        rounds.append(done)
        log("\n".join("  " + c.line().replace("\n", "\n  ") for c in done.checks))
        if done.passed:
            result = store(task.name, done, _provenance(cfg, prompt, rules, rules_source, rounds))
            result.rounds = rounds
            return result
        messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": repair_message(done)}]
    raise DistillError(failure_report(rounds))


def _ask(client: ChatClient, messages: list[dict], max_tokens: int) -> str:
    try:
        return client.converse(messages, max_tokens)
    except TeacherError as exc:
        raise DistillError(f"{exc}; nothing stored") from None


def task_rules(task: Any, rules_file: str | None) -> tuple[str, str]:
    """The rules text and where it came from: ``rules_file``, or the registered task's ``rules``."""
    if rules_file:
        try:
            text = Path(rules_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise LDEngineError(f"cannot read the rules file {rules_file}: {exc}") from None
        if not text:
            raise LDEngineError(f"the rules file {rules_file} is empty")
        return text, f"file {Path(rules_file).name}"
    text = getattr(task, "rules", None)
    if not isinstance(text, str) or not text.strip():
        raise LDEngineError(f"task {task.name!r} has no rules text; give one with --rules FILE")
    return text, "registered task"


def stage_list(task: Any) -> list[tuple[str, str]]:
    """(stage, what it does) for each pipeline stage, in order."""
    described = getattr(task, "stages", None) or {}
    return [(stage, described.get(stage, "")) for stage in task.pipeline]


def build_prompt(registry: Any, task: Any, rules: str) -> str:
    stages = "\n".join(f"{i}. {name}: {text}" if text else f"{i}. {name}"
                       for i, (name, text) in enumerate(stage_list(task), 1))
    return PROMPT.format(task=task.name, description=getattr(task, "description", ""), rules=rules.strip(),
                         stages=stages, interface=interface(registry, task), builtins=_builtins())


def interface(registry: Any, task: Any) -> str:
    """A state the first stage receives and, from the installed base, the action the last returns."""
    try:
        steps = task.game_steps(0, SAMPLE_SEED, _evader(registry, task)[1], lambda record: None)
        state = json.loads(json.dumps(next(steps)))
        steps.close()
    except Exception:  # a task without game_steps: the prompt goes without the example
        return ""
    text = f"The state the first stage receives looks like this (the first step of a seeded game):\n{state!r}\n"
    action = _sample_action(registry, task, state)
    if action is not None:
        text += f"For that state, the last stage returns an action like this one:\n{action!r}\n"
    return text


def _sample_action(registry: Any, task: Any, state: Any) -> Any:
    from ldengine.agents import AgentContext, expert_agent
    if not registry.modules_for(task.name):
        return None
    try:
        base = FunctionBase.build(task.name, registry.modules_for(task.name))
        return expert_agent(AgentContext(task, base, {}, registry)).act(state)
    except Exception:  # the example is a courtesy; a broken installed base only loses it
        return None


def _builtins() -> str:
    from ldengine.sandbox.runtime import PROVIDED_NAMES
    return ", ".join(sorted(n for n in PROVIDED_NAMES if n[0].islower() and n not in ("print", "printed")))


PROMPT = '''You are the teacher in Logic Distillation. Turn the rules of the task below into a function \
base: a Python module of small pure functions, one per stage of a decision step, whose docstrings are \
their user manual. A small model will choose among these functions by reading their docstrings, and \
the engine will run them in a restricted sandbox.

Task {task}: {description}

Rules:
{rules}

Stages of one decision step, in the order the engine calls them. The first stage's function receives \
the state; each later stage's function receives the previous stage's return value; the last stage's \
return value is the step's action.
{stages}

{interface}
Write one Python module, in one ```python code block:
- A module docstring, then VERSION = "1.0.0".
- Exactly one top-level function for each stage above, taking one argument (the previous stage's \
output). Extra top-level functions are allowed only for other stages (a selector must tell them apart); \
put helpers inside the function that uses them, since every top-level function is a manual entry.
- Each function's docstring is its manual entry, with these fields, each starting a line, in this order:

    def keep_cells_on_board(obs):
        """Keep only the cells that lie on the board.

        Stage: the stage's name, exactly as listed above
        Reads: obs["cells"], obs["size"]
        Returns: obs with "cells" narrowed to the cells on the board, in the same order
        Rules: a cell (x, y) is on the board when 0 <= x, y < size.
        Example:
            >>> keep_cells_on_board({{"size": 3, "cells": [[0, 0], [3, 1], [2, 2]]}})
            {{'size': 3, 'cells': [[0, 0], [2, 2]]}}
        """

  An Example is one or more lines `>>> function_name(literal arguments)`, each followed by the exact \
value the call returns, as a Python literal; the engine runs every example and compares.
- Pure functions: plain data in and out (dict, list, int, float, str, bool, None); never change the \
input, build a new value (for example out = dict(obs)). No I/O, no classes, no decorators, no global \
statements, no generators. The module level holds only the docstring, VERSION, constants (literals) \
and the functions.
- Imports: math only. Builtins: {builtins}. Names may not start with an underscore.
You may explain your design briefly before the code block; the code block must hold the complete module.
'''


def repair_message(done: Round) -> str:
    """The failures of one answer, and the request for the whole module again."""
    lines = ["Your module does not pass the engine's checks:"]
    for check in done.checks:
        if not check.passed:
            lines.append(f"{check.name}: failed")
            lines += [f"- {d}" for d in check.details]
    lines.append("Fix these and answer with the complete corrected module, in one ```python code block "
                 "(every function, not only the ones you changed), following the same conventions.")
    return "\n".join(lines)


def failure_report(rounds: list[Round]) -> str:
    last = rounds[-1]
    details = "; ".join(f"{c.name}: {c.details[0] if c.details else 'failed'}" for c in last.checks if not c.passed)
    return (f"no function base passed the checks in {len(rounds)} round(s); nothing stored. "
            f"Last answer failed {', '.join(last.failed)} ({details})")


# ---- reading and checking an answer -----------------------------------------------------------

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


def check_answer(registry: Any, task: Any, answer: str, number: int, prompt: str, games: int) -> Round:
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


def check_module(registry: Any, task: Any, source: str, games: int, done: Round | None = None) -> list[Check]:
    filename = f"{task.name}/{MODULE_FILE}"
    try:
        from ldengine.sandbox import compile_module
        compile_module(source, filename=filename, load=False)
    except SandboxCompileError as exc:
        return [Check("compile", False, _clip(str(exc).splitlines()))]
    from ldengine.sandbox import IsolatedSandbox, Sandbox
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


def check_stages(base: FunctionBase, task: Any) -> Check:
    """Every pipeline stage has exactly one function (the expert's choice)."""
    problems = []
    for stage in task.pipeline:
        found = [e.name for e in base.for_stage(stage)]
        if len(found) != 1:
            problems.append(f"stage {stage}: needs exactly one function, found "
                            f"{', '.join(found) if found else 'none'}")
    return Check("stages", not problems, problems)


def check_games(registry: Any, task: Any, base: FunctionBase, games: int) -> Check:
    """The expert on the new base plays seeded games: no violation, no function error, no game error."""
    from ldengine.agents import AgentContext, expert_agent
    from ldengine.runner import Emitter, play_games
    agent = expert_agent(AgentContext(task, base, {}, registry))
    errors: list[str] = []
    agent.observers.append(lambda decision: errors.extend(
        f"{s.chosen} (stage {s.stage}) failed: {s.result.error}" for s in decision.stages if not s.result.ok))
    evader_name, policy = _evader(registry, task)
    problems, outcomes, violations = [], Counter(), 0
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


def _task_checks(task: Any, base: FunctionBase) -> list[Check]:
    hook = getattr(task, "distill_checks", None)
    if not callable(hook):
        return []
    try:
        problems = [str(p) for p in hook(base)]
    except Exception as exc:  # the task's own check broke: report it as a failure, not a crash
        problems = [f"the task's check raised {type(exc).__name__}: {exc}"]
    return [Check("task", not problems, _clip(problems))]


def _evader(registry: Any, task: Any) -> tuple[str | None, Any]:
    """The greedy evader when there is one (the default of run and eval), else the first."""
    if not registry.evaders:
        return None, None
    name = "greedy" if "greedy" in registry.evaders else sorted(registry.evaders)[0]
    return name, registry.evaders[name].obj


def _short(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _clip(details: list[str]) -> list[str]:
    out = [_short(d) for d in details[:MAX_DETAILS]]
    if len(details) > MAX_DETAILS:
        out.append(f"... and {len(details) - MAX_DETAILS} more")
    return out


# ---- storing a version ---------------------------------------------------------------------

def store(task: str, done: Round, provenance: dict) -> Distilled:
    """Write the module and its provenance as a new version; the same base already stored is kept.
    The version's hash covers the module's whole text (``version_hash``), and the provenance
    records the file's sha256 (``modules``): both are checked whenever the version loads."""
    base_hash = version_hash(done.base, {MODULE_FILE: done.source})
    root = versions_dir(task)
    root.mkdir(parents=True, exist_ok=True)
    for version in (f"distilled-{base_hash[:n]}" for n in (8, 16, 64)):
        final = root / version
        if final.exists():
            if _stored_hash(task, version) == base_hash:
                return Distilled(version, final, base_hash, False, [])
            continue        # another base under this name (a prefix collision): a longer name
        if _write_version(root, final, done.source, {**provenance, "version": version, "base_hash": base_hash,
                                                     "hash_covers": "modules"}):
            return Distilled(version, final, base_hash, True, [])
    raise LDEngineError(f"cannot store the new base under {root}: every name is taken")


def _write_version(root: Path, final: Path, source: str, provenance: dict) -> bool:
    """Write into a temporary folder, then rename it into place (never over an existing one)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    try:
        (tmp / MODULE_FILE).write_bytes(source.encode("utf-8"))     # bytes: the recorded sha256 is of these
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        os.rename(tmp, final)
        return True
    except OSError:
        if final.exists():      # stored meanwhile by another process
            return False
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stored_hash(task: str, version: str) -> str | None:
    try:
        return read_provenance(task, version).get("base_hash")
    except LDEngineError:
        return None


def _provenance(cfg: DistillConfig, prompt: str, rules: str, rules_source: str, rounds: list[Round]) -> dict:
    final = rounds[-1]
    games = next((c.figures for c in final.checks if c.name == "games"), {})
    return {"task": cfg.task, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "engine_version": __version__,
            "teacher": {"url": public_url(cfg.url), "model": cfg.model, "key_env": cfg.key_env,
                        "max_tokens": cfg.max_tokens},
            "prompt_sha256": sha256(prompt), "rules": {"source": rules_source, "sha256": sha256(rules)},
            "rounds": len(rounds), "max_rounds": cfg.rounds, "round_results": [r.record() for r in rounds],
            "check_games": games,
            "modules": [{"file": MODULE_FILE, "sha256": sha256(final.source)}],
            "functions": [{"name": e.name, "stage": e.stage, "version": e.version}
                          for e in final.base.entries.values()]}


def public_url(url: str) -> str:
    """The URL without any user:password part (provenance and logs never hold credentials)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))


# ---- listing ---------------------------------------------------------------------------------

def version_lines(task: str) -> list[str]:
    """One line per stored version of ``task``: name, when, from which teacher, rounds, checks."""
    lines = []
    for name in version_names(task):
        try:
            p = read_provenance(task, name)
        except LDEngineError as exc:
            lines.append(f"{name:<22} {exc}")
            continue
        teacher, games = p.get("teacher", {}), p.get("check_games", {})
        won = games.get("outcomes", {}).get("success")
        played = f", check games {won}/{games.get('games')} won" if won is not None else ""
        lines.append(f"{name:<22} {p.get('created', '?'):<21} {len(p.get('functions', []))} functions, "
                     f"{p.get('rounds', '?')}/{p.get('max_rounds', '?')} rounds{played}, "
                     f"teacher {teacher.get('model', '?')} at {teacher.get('url', '?')}, "
                     f"base {str(p.get('base_hash', ''))[:12]}")
    return lines
