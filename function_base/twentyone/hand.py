"""The player's hand: its value with soft aces, and facts about the next card."""

VERSION = "1.0.0"


def hand_total(state):
    """Add the value of the player's hand, counting an ace as 11 when that does not bust it.

    Stage: player.observe
    Reads: state["player"] (the player's cards: 1 is an ace, 10 any ten-valued card), state["dealer"] (the shown card)
    Returns: state plus "total" (the hand's best value), "soft" (True when an ace counts 11) and "hard" (the sum with every ace as 1)
    Rules: an ace counts 11 unless that makes the hand exceed 21, then 1; over 21 is a bust.
    Example:
        >>> hand_total({"player": [1, 6], "dealer": 9})
        {'player': [1, 6], 'dealer': 9, 'total': 17, 'soft': True, 'hard': 7}
        >>> hand_total({"player": [10, 6, 1], "dealer": 9})
        {'player': [10, 6, 1], 'dealer': 9, 'total': 17, 'soft': False, 'hard': 17}
    """
    hard = sum(state["player"])
    soft = 1 in state["player"] and hard + 10 <= 21
    out = dict(state)
    out["total"] = hard + 10 if soft else hard
    out["soft"] = soft
    out["hard"] = hard
    return out


def bust_chance(obs):
    """Probability that one more card busts the player's hand.

    Stage: player.analyse
    Reads: obs["player"]
    Returns: a float, the probability that the next card takes the hand over 21
    Rules: infinite deck: ace and 2..9 with probability 1/13 each, a ten-valued card with 4/13; an ace counts 1
        when 11 would bust.
    Example:
        >>> bust_chance({"player": [10, 10]})
        0.9230769230769231
        >>> bust_chance({"player": [1, 5]})
        0.0
    """
    hard = sum(obs["player"])
    return sum(4 / 13 if card == 10 else 1 / 13 for card in range(1, 11) if hard + card > 21)


def count_aces(obs):
    """Count the aces in the player's hand.

    Stage: player.analyse
    Reads: obs["player"]
    Returns: an int, how many of the player's cards are aces (1)
    Rules: an ace counts 11 unless that busts the hand, then 1.
    Example:
        >>> count_aces({"player": [1, 1, 9]})
        2
    """
    return len([card for card in obs["player"] if card == 1])
