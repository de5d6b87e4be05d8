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
from typing import Any

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


def prompt(rules: str, state: dict) -> str:
    """The question the student answers at each step."""
    cells = legal_cells(state)
    lines = [f"Rules: {rules}",
             f"Evader at ({state['evader'][0]}, {state['evader'][1]}).",
             *(f"Pursuer {i + 1} at ({p[0]}, {p[1]}) can move to: "
               + ", ".join(f"({x}, {y})" for x, y in cells[i])
               for i, p in enumerate(state["pursuers"])),
             "Choose one cell for each pursuer so that the pursuers surround the evader. "
             "Answer with exactly three lines:\nPursuer 1: (x, y)\nPursuer 2: (x, y)\nPursuer 3: (x, y)"]
    return "\n".join(lines)


def parse_answer(text: str) -> list[list[int]] | None:
    """The first three cells written in the answer, or None when there are fewer."""
    cells = [[int(a or c), int(b or d)] for a, b, c, d in _CELL.findall(text)]
    return cells[:3] if len(cells) >= 3 else None


class StudentBaseline:
    """Untuned student, text in and text out (the paper's S-LLM)."""

    name = "student"

    def __init__(self, task: Any, student: Any):
        self.task, self.student = task, student
        self.last_functions: list[str] = []
        self.counts: Counter = Counter()
        self.last_answer = ""

    def act(self, state: dict) -> list[list[int]] | None:
        self.last_answer = self.student.generate(prompt(self.task.rules, state),
                                                 max_new_tokens=MAX_NEW_TOKENS)[0]
        cells = parse_answer(self.last_answer)
        self.counts["steps"] += 1
        if cells is None:
            self.counts["unparseable"] += 1
            return None
        legal = legal_cells(state)
        self.counts["illegal_cells"] += sum(c not in options for c, options in zip(cells, legal))
        return cells

    def stats(self) -> dict:
        c = self.counts
        return {"steps_answered": c["steps"], "unparseable_answers": c["unparseable"],
                "illegal_cells_proposed": c["illegal_cells"]}


def student_agent(context: Any) -> StudentBaseline:
    """The untuned default student (or ``--student PATH``), no adapter."""
    from ldengine.errors import LDEngineError

    if getattr(context.task, "name", "") != "pursuit":
        raise LDEngineError("the student baseline agent plays only the pursuit task")
    if context.options.get("adapter"):
        raise LDEngineError("the student baseline is the untuned model: --adapter does not apply")
    return StudentBaseline(context.task, context.load_student())
