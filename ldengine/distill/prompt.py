"""What the teacher is told: the task's rules, its stages, an example state and action,
the conventions of a function base; and, after a failed answer, what failed."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ldengine.contracts import TaskBase
from ldengine.agents import AgentContext, expert_agent
from ldengine.distill.check import Round, default_evader
from ldengine.errors import LDEngineError
from ldengine.functionbase import FunctionBase
from ldengine.sandbox.runtime import PROVIDED_NAMES

if TYPE_CHECKING:
    from ldengine.registry import Registry

SAMPLE_SEED = 0             # the state shown to the teacher in the prompt


def task_rules(task: TaskBase, rules_file: str | None) -> tuple[str, str]:
    """The rules text and where it came from: ``rules_file``, or the registered task's ``rules``."""
    if rules_file:
        try:
            text = Path(rules_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise LDEngineError(f"cannot read the rules file {rules_file}: {exc}") from None
        if not text:
            raise LDEngineError(f"the rules file {rules_file} is empty")
        return text, f"file {Path(rules_file).name}"
    rules = task.rules
    if not isinstance(rules, str) or not rules.strip():
        raise LDEngineError(f"task {task.name!r} has no rules text; give one with --rules FILE")
    return rules, "registered task"


def stage_list(task: TaskBase) -> list[tuple[str, str]]:
    """(stage, what it does) for each pipeline stage, in order."""
    described = task.stages or {}
    return [(stage, described.get(stage, "")) for stage in task.pipeline]


def build_prompt(registry: Registry, task: TaskBase, rules: str) -> str:
    """The first message: the task, its rules and stages, and the conventions to follow."""
    stages = "\n".join(f"{i}. {name}: {text}" if text else f"{i}. {name}"
                       for i, (name, text) in enumerate(stage_list(task), 1))
    return PROMPT.format(task=task.name, description=task.description, rules=rules.strip(),
                         stages=stages, interface=interface(registry, task), builtins=_builtins())


def interface(registry: Registry, task: TaskBase) -> str:
    """A state the first stage receives and, from the installed base, the action the last returns."""
    if task.game_steps is None:     # a task without game_steps: the prompt goes without the example
        return ""
    try:
        steps = task.game_steps(0, SAMPLE_SEED, default_evader(registry, task)[1], lambda record: None)
        state = json.loads(json.dumps(next(steps)))
        steps.close()
    except Exception:  # a game that fails to start: the prompt goes without the example
        return ""
    text = f"The state the first stage receives looks like this (the first step of a seeded game):\n{state!r}\n"
    action = _sample_action(registry, task, state)
    if action is not None:
        text += f"For that state, the last stage returns an action like this one:\n{action!r}\n"
    return text


def _sample_action(registry: Registry, task: TaskBase, state: object) -> object:
    if not registry.modules_for(task.name):
        return None
    try:
        base = FunctionBase.build(task.name, registry.modules_for(task.name))
        return expert_agent(AgentContext(task, base, {}, registry)).act(state)
    except Exception:  # the example is a courtesy; a broken installed base only loses it
        return None


def _builtins() -> str:
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

