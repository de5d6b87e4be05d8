"""21 Points (docs/twentyone.md): the referee, and the exact optimal policy it is judged against.

Infinite deck: each draw is an ace (1) or 2..9 with p = 1/13 each, or a ten-valued
card (10) with p = 4/13. An ace counts 11 unless that busts the hand. The player
sees their two cards and one dealer card, then hits or stands; over 21 is a bust
and loses at once. The dealer then draws to 17 or more (stands on soft 17).
Higher total wins (+1), lower loses (-1), equal pushes (0).

A choice that is not ``hit``/``stand`` (or cannot be read as one) counts a
violation and the player stands; so does any action after the hand has ended
(the referee refuses it and the result stays as it was).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

CARDS = tuple(range(1, 11))                     # 1 = ace, 10 = any ten-valued card
P = {c: Fraction(4 if c == 10 else 1, 13) for c in CARDS}
WEIGHTS = [float(P[c]) for c in CARDS]
DEALER_STANDS = 17
ACTIONS = ("hit", "stand")
WIN, PUSH, LOSS = "win", "push", "loss"


def draw(rng: random.Random) -> int:
    return rng.choices(CARDS, WEIGHTS)[0]


def hand_value(cards: list[int]) -> tuple[int, bool]:
    """(best total, soft): an ace counts 11 when that does not bust the hand."""
    hard = sum(cards)
    if 1 in cards and hard + 10 <= 21:
        return hard + 10, True
    return hard, False


def _value(hard: int, ace: bool) -> int:
    return hard + 10 if ace and hard + 10 <= 21 else hard


def settle(player: int, dealer: int) -> int:
    """+1, 0 or -1 for a player who stood on ``player`` (<= 21) against the dealer's final total."""
    if dealer > 21 or player > dealer:
        return 1
    return 0 if player == dealer else -1


@dataclass
class Hand:
    """One hand: cards dealt from a seeded infinite deck, the player's choices, the result."""
    player: list[int]
    dealer: list[int]               # dealer[0] is shown, dealer[1] is the hole card
    rng: random.Random = field(repr=False)
    choices: list[str] = field(default_factory=list)
    violations: int = 0
    result: int | None = None       # +1, 0, -1 once the hand has ended

    @classmethod
    def deal(cls, seed: int) -> "Hand":
        rng = random.Random(seed)
        player = [draw(rng), draw(rng)]
        dealer = [draw(rng), draw(rng)]
        return cls(player, dealer, rng)

    @property
    def over(self) -> bool:
        return self.result is not None

    def state(self) -> dict:
        """What the player sees: their cards and the dealer's shown card (plain data)."""
        return {"player": list(self.player), "dealer": self.dealer[0]}

    def act(self, choice: object) -> bool:
        """Apply a choice; returns False (and counts a violation) when it was not a legal one."""
        if self.over:
            self.violations += 1
            return False
        legal = choice in ACTIONS
        self.violations += not legal
        self.choices.append(choice if legal else "invalid")
        if choice == "hit":
            self.player.append(draw(self.rng))
            if hand_value(self.player)[0] > 21:
                self.result = -1
        else:
            self._dealer_plays()
        return legal

    def _dealer_plays(self) -> None:
        while hand_value(self.dealer)[0] < DEALER_STANDS:
            self.dealer.append(draw(self.rng))
        self.result = settle(hand_value(self.player)[0], hand_value(self.dealer)[0])


def outcome(result: int) -> str:
    return WIN if result > 0 else PUSH if result == 0 else LOSS


# ---- the exact optimal policy (the reference row) ------------------------------------------

@lru_cache(maxsize=None)
def dealer_final(shown: int) -> tuple[Fraction, ...]:
    """P(dealer ends on 17, 18, 19, 20, 21, bust) given the shown card (hole card included)."""
    out = [Fraction(0)] * 6

    def walk(hard: int, ace: bool, p: Fraction) -> None:
        total = _value(hard, ace)
        if hard > 21:
            out[5] += p
        elif total >= DEALER_STANDS:
            out[total - 17] += p
        else:
            for c in CARDS:
                walk(hard + c, ace or c == 1, p * P[c])
    walk(shown, shown == 1, Fraction(1))
    return tuple(out)


def stand_return(total: int, shown: int) -> Fraction:
    """Expected return of standing on ``total`` against the shown card."""
    dist = dealer_final(shown)
    return dist[5] + sum(p * settle(total, 17 + i) for i, p in enumerate(dist[:5]))


@lru_cache(maxsize=None)
def best(hard: int, ace: bool, shown: int) -> tuple[Fraction, Fraction]:
    """(expected return of standing, of hitting and then playing optimally) for a hand
    whose cards sum to ``hard`` with aces as 1 (``ace``: it holds one)."""
    stand = stand_return(_value(hard, ace), shown)
    hit = Fraction(0)
    for c in CARDS:
        h, a = hard + c, ace or c == 1
        hit += P[c] * (Fraction(-1) if h > 21 else max(best(h, a, shown)))
    return stand, hit


def optimal_choice(cards: list[int], shown: int) -> str:
    """The choice that maximises expected return (stand on ties)."""
    stand, hit = best(sum(cards), 1 in cards, shown)
    return "hit" if hit > stand else "stand"


@lru_cache(maxsize=None)
def optimal_return() -> Fraction:
    """The optimal policy's exact expected return per hand: the limit any player can reach."""
    total = Fraction(0)
    for a in CARDS:
        for b in CARDS:
            for shown in CARDS:
                total += P[a] * P[b] * P[shown] * max(best(a + b, 1 in (a, b), shown))
    return total
