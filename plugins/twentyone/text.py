"""21 Points in text, for the baselines of ``ldengine.baselines`` (S-LLM, L-LLM, KD).

The question gives the player's cards with their value and the dealer's shown card
and asks for one word; the first ``hit`` or ``stand`` in the answer is the choice.
An answer with neither is passed on as written, and the referee counts it as a
violation (the player then stands). KD data: the expert's choice for every decision
of seeded expert hands.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ldengine_plugins.twentyone.rules import hand_value

_CHOICE = re.compile(r"\b(hit|stand)\b", re.IGNORECASE)
MAX_NEW_TOKENS = 8


def card_name(card: int) -> str:
    return "ace" if card == 1 else str(card)


def rules_prefix(rules: str) -> str:
    return f"Rules: {rules}\n"


def question(state: dict) -> str:
    total, soft = hand_value(state["player"])
    cards = ", ".join(card_name(c) for c in state["player"])
    return (f"Your cards: {cards} (worth {total}{', soft' if soft else ''}). "
            f"The dealer shows {card_name(state['dealer'])}.\n"
            "Do you hit or stand? Answer with one word: hit or stand.")


def first_choice(text: str) -> str | None:
    m = _CHOICE.search(text)
    return m[1].lower() if m else None


def has_choice(text: str) -> bool:
    return _CHOICE.search(text) is not None


class TwentyOneText:
    """The text protocol of 21 Points: one question per decision, for every text agent."""

    max_new_tokens = kd_max_new_tokens = MAX_NEW_TOKENS
    stop = kd_stop = staticmethod(has_choice)
    prefix = staticmethod(rules_prefix)
    question = staticmethod(question)

    @staticmethod
    def judge(state: dict, answer: str) -> tuple[str, dict]:
        choice = first_choice(answer)
        return (choice if choice else answer.strip()[:40]), {"unparseable_answers": int(choice is None)}

    @staticmethod
    def kd_questions(state: dict) -> list[str]:
        return [question(state)]

    @classmethod
    def kd_action(cls, state: dict, answers: list[str]) -> tuple[str, dict]:
        choice, counts = cls.judge(state, answers[0])
        return choice, {"moves_answered": 1, **counts}


TEXT = TwentyOneText()


# ---- knowledge distillation data (``ldengine finetune --task twentyone --method kd``) ---------

@dataclass(frozen=True)
class MoveExample:
    question: str
    answer: str
    legal: tuple = ("hit", "stand")


def move_examples(task: Any, base: Any, evader: Any, seeds: list[int]) -> list[MoveExample]:
    """The expert's choice at every decision of the seeded hands ``seeds``."""
    from ldengine.agents import AgentContext, expert_agent

    agent, examples = expert_agent(AgentContext(task, base)), []

    def record(decision: Any) -> None:
        state = decision.stages[0].state if decision.stages else None
        if isinstance(state, dict) and decision.action in ("hit", "stand"):
            examples.append(MoveExample(question(state), decision.action))

    agent.observers.append(record)
    for i, seed in enumerate(seeds):
        task.play(agent, i, seed)
    return examples


def move_accuracy(student: Any, rules: str, examples: list[MoveExample], batch: int = 16) -> dict:
    """Share of held-out decisions where the student writes the expert's choice, and where
    it writes a legal one."""
    same = legal = 0
    for i in range(0, len(examples), batch):
        chunk = examples[i:i + batch]
        answers = student.generate_batch([e.question for e in chunk], prefix=rules_prefix(rules),
                                          max_new_tokens=MAX_NEW_TOKENS, stop=has_choice)
        for e, text in zip(chunk, answers):
            choice = first_choice(text)
            same += choice == e.answer
            legal += choice is not None
    n = max(len(examples), 1)
    return {"move_accuracy": same / n, "legal_answer_rate": legal / n, "moves": len(examples)}
