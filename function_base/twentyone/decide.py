"""The player's choice, and two fixed rules of thumb to compare it with."""

VERSION = "1.0.0"


def choose_hit_or_stand(obs):
    """Choose the action with the higher expected return: hit or stand.

    Stage: player.decide
    Reads: obs["ev_hit"], obs["ev_stand"]
    Returns: the action, "hit" or "stand" (stand when the two are equal)
    Rules: the player repeatedly hits or stands; the best choice maximises the expected return of the hand.
    Example:
        >>> choose_hit_or_stand({"ev_hit": -0.2, "ev_stand": -0.5})
        'hit'
        >>> choose_hit_or_stand({"ev_hit": -0.6, "ev_stand": -0.5})
        'stand'
    """
    return "hit" if obs["ev_hit"] > obs["ev_stand"] else "stand"


def mimic_dealer(obs):
    """Play like the dealer: hit below 17, stand from 17 on.

    Stage: player.heuristic
    Reads: obs["total"]
    Returns: the action, "hit" or "stand"
    Rules: the dealer draws until its total is 17 or more.
    Example:
        >>> mimic_dealer({"total": 16})
        'hit'
    """
    return "hit" if obs["total"] < 17 else "stand"


def never_bust(obs):
    """Hit only when no card can bust the hand.

    Stage: player.heuristic
    Reads: obs["hard"] (the hand's sum with every ace as 1)
    Returns: the action, "hit" or "stand"
    Rules: over 21 is a bust and loses at once; the largest card counts 10 (an ace can count 1).
    Example:
        >>> never_bust({"hard": 12})
        'stand'
    """
    return "hit" if obs["hard"] <= 11 else "stand"
