"""Knowledge distillation (KD), the paper's second baseline: the student copies the teacher's moves.

Data: the expert (the teacher's function base, run in the sandbox) plays seeded
random starts; every pursuer of every step gives one example, the rules, the
state and that pursuer's candidate cells -> the cell the expert chose. The
student is fine-tuned (LoRA) to write that cell, and the ``kd`` agent plays by
asking it, pursuer by pursuer, in text; the answer is parsed like the
``student`` agent's. No function base, retriever or sandbox at play time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ldengine_plugins.pursuit.baseline import (KD_MAX_NEW_TOKENS,  # noqa: F401; (rules_prefix, question: finetune, tests)
                                      first_cell, has_cells, legal_cells, question, rules_prefix)


@dataclass(frozen=True)
class MoveExample:
    """One pursuer's move: the question the student reads and the expert's cell."""
    question: str
    answer: str
    legal: tuple        # the pursuer's legal cells, for judging an answer


def answer_text(cell: list) -> str:
    return f"({cell[0]}, {cell[1]})"


def move_examples(task: Any, base: Any, evader: Any, seeds: list[int]) -> list[MoveExample]:
    """Expert rollouts from the seeded starts ``seeds``: one example per pursuer and step."""
    from ldengine.agents import AgentContext, expert_agent

    agent, examples = expert_agent(AgentContext(task, base)), []

    def record(decision: Any) -> None:
        state = decision.stages[0].state if decision.stages else None
        if not isinstance(state, dict) or not isinstance(decision.action, list):
            return
        cells = legal_cells(state)
        for i, cell in enumerate(decision.action):
            examples.append(MoveExample(question(state, i, cells[i]), answer_text(cell),
                                        tuple(tuple(c) for c in cells[i])))

    agent.observers.append(record)
    for i, seed in enumerate(seeds):
        task.play(agent, i, seed, evader, lambda r: None)
    return examples


def move_accuracy(student: Any, rules: str, examples: list[MoveExample], batch: int = 16) -> dict:
    """Share of held-out moves where the student writes the expert's cell, and where it
    writes a legal one."""
    same = legal = 0
    for i in range(0, len(examples), batch):
        chunk = examples[i:i + batch]
        answers = student.generate_batch([e.question for e in chunk], prefix=rules_prefix(rules),
                                          max_new_tokens=KD_MAX_NEW_TOKENS, stop=has_cells(1))
        for e, text in zip(chunk, answers):
            cell = first_cell(text)
            same += cell is not None and answer_text(cell) == e.answer
            legal += cell is not None and tuple(cell) in e.legal
    n = max(len(examples), 1)
    return {"move_accuracy": same / n, "legal_answer_rate": legal / n, "moves": len(examples)}
