"""The paper's S-LLM baseline: the untuned student plays pursuit by answering in text.

Each step it is given the rules, the positions and, for each pursuer, the legal
cells within its reach, and asked for one cell per pursuer. Its answer is
parsed; an answer without three cells is no action (the referee counts three
violations), and a cell outside the list is proposed as written, so the referee
judges it. No function base, no retriever, no sandbox: this is what Logic
Distillation is compared against.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable

from plugins.pursuit.rules import REACH, is_legal_pursuer_move

_CELL = re.compile(r"\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)|\[\s*(-?\d+)\s*,\s*(-?\d+)\s*\]")
MAX_NEW_TOKENS = 48


def legal_cells(state: dict) -> list[list[list[int]]]:
    """Per pursuer, the cells it may legally move to this step (staying included)."""
    size, evader = state["size"], tuple(state["evader"])
    forbidden = frozenset(tuple(c) for c in state.get("forbidden", []))
    out = []
    for px, py in state["pursuers"]:
        out.append([[x, y] for x in range(px - REACH, px + REACH + 1)
                    for y in range(py - REACH, py + REACH + 1)
                    if is_legal_pursuer_move((px, py), [x, y], evader, size, forbidden)])
    return out


def rules_prefix(rules: str) -> str:
    """The part of every prompt that never changes (its keys and values are cached)."""
    return f"Rules: {rules}\n"


def prompt(rules: str, state: dict) -> str:
    """The question the student answers at each step."""
    return rules_prefix(rules) + step_question(state)


def step_question(state: dict) -> str:
    """The part of the prompt that describes this step."""
    cells = legal_cells(state)
    lines = [f"Evader at ({state['evader'][0]}, {state['evader'][1]}).",
             *(f"Pursuer {i + 1} at ({p[0]}, {p[1]}) can move to: "
               + ", ".join(f"({x}, {y})" for x, y in cells[i])
               for i, p in enumerate(state["pursuers"])),
             "Choose one cell for each pursuer so that the pursuers surround the evader. "
             "Answer with exactly three lines:\nPursuer 1: (x, y)\nPursuer 2: (x, y)\nPursuer 3: (x, y)"]
    return "\n".join(lines)


def has_cells(n: int) -> Callable[[str], bool]:
    """A stop test for generation: the answer already holds ``n`` cells (the rest is never read)."""
    return lambda text: len(_CELL.findall(text)) >= n


def student_identity(student: Any) -> dict:
    """What pins a student's answers: its model file, adapter and (when not float32) weight type."""
    from ldengine.models.base import dtype_identity
    return {"model": student.name, "model_sha256": student.model_hash, "adapter_hash": student.adapter_hash,
            **dtype_identity(student)}


def first_cell(text: str) -> list[int] | None:
    """The first cell written in the answer, or None."""
    m = _CELL.search(text)
    return [int(m[1] or m[3]), int(m[2] or m[4])] if m else None


def parse_answer(text: str) -> list[list[int]] | None:
    """The first three cells written in the answer, or None when there are fewer."""
    cells = [[int(a or c), int(b or d)] for a, b, c, d in _CELL.findall(text)]
    return cells[:3] if len(cells) >= 3 else None


class StudentBaseline:
    """Untuned student, text in and text out (the paper's S-LLM).

    ``act_batch`` answers several games' steps in one batched generation; the
    rules are a cached prefix, and an answer stops once it holds three cells.
    """

    name = "student"

    def __init__(self, task: Any, student: Any):
        self.task, self.student = task, student
        self.last_functions: list[str] = []
        self.counts: Counter = Counter()
        self.last_answer = ""

    def act(self, state: dict) -> list[list[int]] | None:
        return self.act_batch([state])[0]

    def act_batch(self, states: list[dict]) -> list[list[list[int]] | None]:
        answers = self._answers(states)
        self.last_answer = answers[-1]
        return [self._judge(state, answer) for state, answer in zip(states, answers)]

    def _answers(self, states: list[dict]) -> list[str]:
        return self.student.generate_batch([step_question(s) for s in states],
                                           prefix=rules_prefix(self.task.rules),
                                           max_new_tokens=MAX_NEW_TOKENS, stop=has_cells(3))

    def _judge(self, state: dict, answer: str) -> list[list[int]] | None:
        cells = parse_answer(answer)
        self.counts["steps"] += 1
        if cells is None:
            self.counts["unparseable"] += 1
            return None
        legal = legal_cells(state)
        self.counts["illegal_cells"] += sum(c not in options for c, options in zip(cells, legal))
        return cells

    def usage(self) -> dict:
        return dict(self.student.usage)

    def identity(self) -> dict:
        return student_identity(self.student)

    def stats(self) -> dict:
        c = self.counts
        return {"steps_answered": c["steps"], "unparseable_answers": c["unparseable"],
                "illegal_cells_proposed": c["illegal_cells"]}


class TeacherBaseline(StudentBaseline):
    """The paper's L-LLM: a large model behind an OpenAI-compatible endpoint, asked
    exactly what the ``student`` agent is asked, its answer parsed the same way."""

    name = "teacher"

    def __init__(self, task: Any, client: Any):
        super().__init__(task, student=None)
        self.client = client

    def act(self, state: dict) -> list[list[int]] | None:
        answer = self.client.chat(prompt(self.task.rules, state), max_tokens=MAX_NEW_TOKENS)
        self.last_answer = answer
        return self._judge(state, answer)

    act_batch = None  # one request per step: endpoints batch on their side

    def usage(self) -> dict:
        return {"model_calls": self.client.calls, "tokens": self.client.tokens}

    def identity(self) -> dict:
        return {"teacher_url": self.client.url, "teacher_model": self.client.model}


def teacher_agent(context: Any) -> TeacherBaseline:
    """The teacher endpoint named by the ``teacher_url``/``teacher_model`` options."""
    from ldengine.errors import LDEngineError
    from ldengine.teacher import DEFAULT_KEY_ENV, ChatClient

    opts = context.options
    if getattr(context.task, "name", "") != "pursuit":
        raise LDEngineError("the teacher baseline agent plays only the pursuit task")
    if not opts.get("teacher_url"):
        raise LDEngineError("no teacher endpoint: pass --teacher-url and --teacher-model "
                            "(an OpenAI-compatible chat API; key from $" + DEFAULT_KEY_ENV + ")")
    client = ChatClient(opts["teacher_url"], opts.get("teacher_model") or "",
                        opts.get("teacher_key_env") or DEFAULT_KEY_ENV)
    return TeacherBaseline(context.task, client)


def student_agent(context: Any) -> StudentBaseline:
    """The untuned default student (or ``--student PATH``), no adapter."""
    from ldengine.errors import LDEngineError

    if getattr(context.task, "name", "") != "pursuit":
        raise LDEngineError("the student baseline agent plays only the pursuit task")
    if context.options.get("adapter"):
        raise LDEngineError("the student baseline is the untuned model: --adapter does not apply")
    return StudentBaseline(context.task, context.load_student())
