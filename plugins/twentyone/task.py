"""The 21 Points task: seeded hands between an agent (the player) and the fixed dealer."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from ldengine.contracts import TaskBase
from ldengine.taskkit import play_through, selections_record
from ldengine_plugins.twentyone.rules import Hand, hand_value, optimal_choice, optimal_return, outcome

Emit = Callable[[dict], None]

RULES = (
    "21 Points: the player plays against the dealer with an infinite deck (ace, 2 to 9 with probability 1/13 "
    "each, a ten-valued card with 4/13); an ace counts 11 unless that makes the hand exceed 21, then 1. The "
    "player has two cards and sees one dealer card, then repeatedly chooses hit (take a card) or stand; over 21 "
    "is a bust and loses at once. The dealer then draws until 17 or more (stands on soft 17). Higher total "
    "wins (+1), lower loses (-1), equal pushes (0). A choice other than hit or stand is a violation.")

STAGES = {
    "player.observe": "read the player's cards and the dealer's shown card and value the hand",
    "player.dealer": "work out how likely the dealer ends on each final total from its shown card",
    "player.stand": "compute the expected return of standing now",
    "player.hit": "compute the expected return of hitting now and playing on as well as possible",
    "player.decide": "choose hit or stand, whichever has the higher expected return",
}


@dataclass
class HandResult:
    game: int
    seed: int
    result: int          # +1, 0, -1
    steps: int           # choices made
    violations: int
    decisions: int       # choices made while the hand was on
    agreed: int          # of those, how many the optimal policy would have made too
    player: list
    dealer: list

    @property
    def outcome(self) -> str:
        return outcome(self.result)

    def record(self) -> dict:
        return {"game": self.game, "seed": self.seed, "outcome": self.outcome, "return": self.result,
                "steps": self.steps, "violations": self.violations, "decisions": self.decisions,
                "agreed": self.agreed}


class TwentyOneTask(TaskBase):
    """21 Points as the README's rules state it; ``evader`` arguments are accepted and
    ignored (the dealer's play is fixed by the rules)."""
    name = "twentyone"
    unit = "hand"           # what the summaries call one game
    description = "a player hits or stands against a dealer who draws to 17, infinite deck"
    rules = RULES
    stages = STAGES
    pipeline = list(STAGES)
    starts: dict = {}
    emergency = None
    outcomes = ("win", "push", "loss")
    outcome_columns = (("win", "Win"), ("push", "Push"), ("loss", "Loss"))
    eval_headers = ["Expected Return per Hand", "Violations", "Agreement with Optimal"]
    eval_note = ("95% intervals: Wilson for rates, normal approximation for the expected return; agreement: "
                 "share of the agent's choices that the optimal policy makes too.")
    uses_evader = False
    evader = None           # no evader: ``play`` gets None unless the user names one (and ignores it)

    def play(self, agent: Any, game_index: int, seed: int, evader: Callable | None = None, emit: Emit = lambda r: None,
             agent_name: str = "", evader_name: str = "", start: dict | None = None) -> HandResult:
        steps = self.game_steps(game_index, seed, evader, emit, agent_name, evader_name)
        return play_through(agent, steps)

    def game_steps(self, game_index: int, seed: int, evader: Callable | None = None, emit: Emit = lambda r: None,
                   agent_name: str = "", evader_name: str = "", start: dict | None = None):
        """The hand as a generator: yields each state the player decides on, receives
        ``(choice, functions used)``, returns the ``HandResult``."""
        hand = Hand.deal(seed)
        emit({"type": "hand", "task": self.name, "game": game_index, "seed": seed, "player": list(hand.player),
              "dealer_shown": hand.dealer[0], "agent": agent_name})
        decisions = agreed = 0
        while not hand.over:
            state = hand.state()
            choice, functions, *selections = yield state
            best = optimal_choice(state["player"], state["dealer"])
            legal = hand.act(choice)
            decisions += 1
            agreed += legal and choice == best
            emit({"type": "choice", "game": game_index, "step": decisions, "choice": _plain(choice),
                  "legal": legal, "optimal": best, "player": list(hand.player), "functions": list(functions),
                  **selections_record(selections)})
        emit({"type": "end", "game": game_index, "outcome": outcome(hand.result), "return": hand.result,
              "steps": decisions, "violations": hand.violations, "dealer": list(hand.dealer)})
        return HandResult(game_index, seed, hand.result, decisions, hand.violations, decisions, agreed,
                          list(hand.player), list(hand.dealer))

    @property
    def text(self):
        """What the text-answering baselines are asked, and how their answers are read."""
        from ldengine_plugins.twentyone.text import TEXT
        return TEXT

    @property
    def kd(self):
        """Knowledge-distillation data and scoring for ``ldengine finetune --method kd``."""
        from ldengine_plugins.twentyone import text
        return text

    def optimal_return(self) -> float:
        """The exact expected return per hand of the optimal policy."""
        return float(optimal_return())

    def summarize(self, results: list[HandResult]) -> dict:
        n = len(results)
        returns = [r.result for r in results]
        mean = sum(returns) / n if n else 0.0
        sd = math.sqrt(sum((x - mean) ** 2 for x in returns) / (n - 1)) if n > 1 else 0.0
        decisions = sum(r.decisions for r in results)
        return {"games": n, "expected_return": mean,
                "expected_return_ci95": [mean - 1.96 * sd / math.sqrt(n), mean + 1.96 * sd / math.sqrt(n)]
                if n > 1 else None,
                **{o: (sum(r.outcome == o for r in results) / n if n else 0.0) for o in self.outcomes},
                "violations": sum(r.violations for r in results),
                "agreement": sum(r.agreed for r in results) / decisions if decisions else None,
                "optimal_return": self.optimal_return()}

    def eval_metrics(self, rows: list[dict]) -> dict:
        """For ``ldengine eval``: the mean return with its interval, and agreement, from game rows."""
        from ldengine.evaluate import mean_interval
        returns = [r["return"] for r in rows]
        decisions = sum(r["decisions"] for r in rows)
        return {"expected_return": sum(returns) / len(returns) if returns else None,
                "expected_return_ci95": list(mean_interval(returns, digits=4)) if returns else None,
                "agreement": sum(r["agreed"] for r in rows) / decisions if decisions else None,
                "decisions": decisions}

    def eval_cells(self, s: dict) -> list[str]:
        ret = "-" if s["expected_return"] is None else (
            f"{s['expected_return']:+.4f} [{s['expected_return_ci95'][0]:+.4f}, {s['expected_return_ci95'][1]:+.4f}]")
        agreement = "-" if s["agreement"] is None else f"{100 * s['agreement']:.2f}%"
        return [ret, str(s["violations"]), agreement]

    def eval_reference(self) -> dict:
        """The optimal policy's row: its exact expected return (no games played)."""
        return {"name": "optimal policy (exact)", "expected_return": self.optimal_return(),
                "cells": ["-", "-", "-", f"{self.optimal_return():+.4f} (exact)", "0", "100.00%"]}

    def summary_lines(self, s: dict) -> list[str]:
        """The human summary of ``ldengine run twentyone``."""
        ci = s.get("expected_return_ci95")
        interval = f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""
        agreement = "-" if s["agreement"] is None else f"{s['agreement']:.4f}"
        return [f"expected return per hand {s['expected_return']:+.4f}{interval}  "
                f"(optimal policy, exact: {s['optimal_return']:+.4f})",
                f"win {s['win']:.3f}  push {s['push']:.3f}  loss {s['loss']:.3f}  violations {s['violations']}  "
                f"agreement with the optimal policy {agreement}"]

    def summarize_state(self, state: Any) -> str:
        """What a stage's input holds, in words (facts computed so far, no card values); once the
        hand is valued, whether it is soft or hard, which tells player.hit's alternatives apart."""
        if not isinstance(state, dict):
            return "no state"
        facts = [("total", "hand valued"), ("dealer_final", "dealer's final totals known"),
                 ("ev_stand", "return of standing known"), ("ev_hit", "return of hitting known")]
        parts = [text if key in state else text.replace("known", "not known").replace("valued", "not valued")
                 for key, text in facts]
        if "total" in state:
            parts.insert(1, "hand soft (an ace counts 11)" if state.get("soft") else "hand hard (no ace counts 11)")
        return "; ".join(parts)


def _plain(choice: Any) -> Any:
    return choice if isinstance(choice, (str, int, float, bool, type(None))) else repr(choice)[:80]


__all__ = ["RULES", "STAGES", "HandResult", "TwentyOneTask", "hand_value"]
