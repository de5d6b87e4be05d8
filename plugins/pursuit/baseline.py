"""Pursuit in text, for the baselines of ``ldengine.baselines`` (S-LLM, L-LLM, KD).

Each step the student is given the rules, the positions and, for each pursuer,
the legal cells within its reach, and asked for one cell per pursuer. Its answer
is parsed; an answer without three cells is no action (the referee counts three
violations), and a cell outside the list is proposed as written, so the referee
judges it. No function base, no retriever, no sandbox: this is what Logic
Distillation is compared against.
"""
from __future__ import annotations

import re
from typing import Callable

from ldengine_plugins.pursuit.rules import REACH, is_legal_pursuer_move

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


def first_cell(text: str) -> list[int] | None:
    """The first cell written in the answer, or None."""
    m = _CELL.search(text)
    return [int(m[1] or m[3]), int(m[2] or m[4])] if m else None


def parse_answer(text: str) -> list[list[int]] | None:
    """The first three cells written in the answer, or None when there are fewer."""
    cells = [[int(a or c), int(b or d)] for a, b, c, d in _CELL.findall(text)]
    return cells[:3] if len(cells) >= 3 else None


# knowledge distillation (ldengine_plugins.pursuit.kd): one question per pursuer, one cell answered
KD_MAX_NEW_TOKENS = 12


def question(state: dict, pursuer: int, cells: list | None = None) -> str:
    """What the KD student reads for one pursuer (after the rules, a cached prefix)."""
    cells = legal_cells(state)[pursuer] if cells is None else cells
    px, py = state["pursuers"][pursuer]
    others = ", ".join(f"({x}, {y})" for i, (x, y) in enumerate(state["pursuers"]) if i != pursuer)
    return (f"Evader at ({state['evader'][0]}, {state['evader'][1]}). Other pursuers at {others}.\n"
            f"Pursuer {pursuer + 1} at ({px}, {py}) can move to: "
            + ", ".join(f"({x}, {y})" for x, y in cells)
            + f"\nWhich cell should pursuer {pursuer + 1} move to? Answer with one cell (x, y).")


class PursuitText:
    """The text protocol of pursuit (``ldengine.baselines``): what the ``student``,
    ``teacher`` and ``kd`` agents are asked and how their answers are read."""

    max_new_tokens = MAX_NEW_TOKENS
    stop = staticmethod(has_cells(3))
    prefix = staticmethod(rules_prefix)
    question = staticmethod(step_question)

    @staticmethod
    def judge(state: dict, answer: str) -> tuple[list[list[int]] | None, dict]:
        """Three cells, or None (the referee counts three violations) when fewer are written."""
        cells = parse_answer(answer)
        if cells is None:
            return None, {"unparseable_answers": 1, "illegal_cells_proposed": 0}
        legal = legal_cells(state)
        return cells, {"unparseable_answers": 0,
                       "illegal_cells_proposed": sum(c not in options for c, options in zip(cells, legal))}

    # knowledge distillation: one question per pursuer (see ldengine_plugins.pursuit.kd)
    kd_max_new_tokens = KD_MAX_NEW_TOKENS

    kd_stop = staticmethod(has_cells(1))

    @staticmethod
    def kd_questions(state: dict) -> list[str]:
        return [question(state, i) for i in range(len(state["pursuers"]))]

    @staticmethod
    def kd_action(state: dict, answers: list[str]) -> tuple[list, dict]:
        legal, cells = legal_cells(state), [first_cell(a) for a in answers]
        return cells, {"moves_answered": len(cells), "unparseable_answers": sum(c is None for c in cells),
                       "illegal_cells_proposed": sum(c is not None and c not in legal[i]
                                                     for i, c in enumerate(cells))}


TEXT = PursuitText()
