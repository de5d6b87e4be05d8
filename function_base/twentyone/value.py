"""Expected returns: of standing now, and of hitting and then playing on as well as possible."""

VERSION = "1.0.0"


def stand_value(obs):
    """Add the expected return of standing now on the hand's total.

    Stage: player.stand
    Reads: obs["total"], obs["dealer_final"] (the dealer's chances of ending on 17, 18, 19, 20, 21 or busting)
    Returns: obs plus "ev_stand", the expected return (+1 win, 0 push, -1 loss) of standing now
    Rules: a player who stands wins when the dealer busts or ends lower, pushes on an equal total and loses
        to a higher one; a player over 21 has already lost.
    Example:
        >>> stand_value({"total": 19, "dealer_final": [0.25, 0.25, 0.0, 0.0, 0.0, 0.5]})
        {'total': 19, 'dealer_final': [0.25, 0.25, 0.0, 0.0, 0.0, 0.5], 'ev_stand': 1.0}
    """
    total = obs["total"]
    final = obs["dealer_final"]
    value = -1.0
    if total <= 21:
        value = final[5]
        for i in range(5):
            value = value + final[i] * (1 if total > 17 + i else 0 if total == 17 + i else -1)
    out = dict(obs)
    out["ev_stand"] = value
    return out


def hit_value_hard(obs):
    """Add the expected return of hitting a hard hand now and then playing every later card as well as possible.

    Stage: player.hit
    When: the hand is hard: no ace counts 11 (obs["soft"] is False)
    Reads: obs["player"], obs["dealer_final"] (the dealer's chances of ending on 17, 18, 19, 20, 21 or busting)
    Returns: obs plus "ev_hit", the expected return of taking one card now and afterwards always choosing the
        better of standing and hitting
    Rules: infinite deck: ace and 2..9 with probability 1/13 each, a ten-valued card with 4/13; over 21 loses
        at once (-1); the hand starts with every ace at 1 (a hard hand), an ace drawn later counts 11 unless
        that busts the hand; standing is judged against the dealer's final total.
    Example:
        >>> hit_value_hard({"player": [10, 10, 1], "dealer_final": [0.25, 0.25, 0.0, 0.0, 0.0, 0.5]})
        {'player': [10, 10, 1], 'dealer_final': [0.25, 0.25, 0.0, 0.0, 0.0, 0.5], 'ev_hit': -1.0}
        >>> hit_value_hard({"player": [10, 9], "dealer_final": [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]})
        {'player': [10, 9], 'dealer_final': [0.0, 0.0, 0.0, 0.0, 0.0, 1.0], 'ev_hit': -0.6923076923076923}
    """
    final = obs["dealer_final"]
    stand = {}
    for total in range(2, 22):
        value = final[5]
        for i in range(5):
            value = value + final[i] * (1 if total > 17 + i else 0 if total == 17 + i else -1)
        stand[total] = value
    # best[(hard, ace)]: the better of standing and hitting with cards summing to hard (aces as 1);
    # ace: the hand holds an ace, which counts 11 when that does not bust it.
    best = {}
    now = -1.0
    for hard in range(21, 1, -1):
        for ace in (False, True):
            hit = 0.0
            for card in range(1, 11):
                more = hard + card
                later = -1.0 if more > 21 else best[(more, ace or card == 1)]
                hit = hit + (4 / 13 if card == 10 else 1 / 13) * later
            total = hard + 10 if ace and hard + 10 <= 21 else hard
            best[(hard, ace)] = max(stand[total], hit)
            if hard == sum(obs["player"]) and not ace:
                now = hit
    out = dict(obs)
    out["ev_hit"] = now
    return out


def when_hit_value_hard(obs):
    return obs.get("soft") is False


def hit_value_soft(obs):
    """Add the expected return of hitting a soft hand now and then playing every later card as well as possible.

    Stage: player.hit
    When: the hand is soft: an ace counts 11 (obs["soft"] is True)
    Reads: obs["player"], obs["dealer_final"] (the dealer's chances of ending on 17, 18, 19, 20, 21 or busting)
    Returns: obs plus "ev_hit", the expected return of taking one card now and afterwards always choosing the
        better of standing and hitting
    Rules: infinite deck: ace and 2..9 with probability 1/13 each, a ten-valued card with 4/13; over 21 loses
        at once (-1); the hand holds an ace, which counts 11 unless that busts the hand, then 1; standing is
        judged against the dealer's final total.
    Example:
        >>> hit_value_soft({"player": [1, 10], "dealer_final": [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]})
        {'player': [1, 10], 'dealer_final': [0.0, 0.0, 0.0, 0.0, 0.0, 1.0], 'ev_hit': 1.0}
    """
    final = obs["dealer_final"]
    stand = {}
    for total in range(2, 22):
        value = final[5]
        for i in range(5):
            value = value + final[i] * (1 if total > 17 + i else 0 if total == 17 + i else -1)
        stand[total] = value
    # best[hard]: the better of standing and hitting with cards summing to hard (aces as 1), one an ace
    # that counts 11 when that does not bust the hand.
    best = {}
    now = -1.0
    for hard in range(21, 1, -1):
        hit = 0.0
        for card in range(1, 11):
            more = hard + card
            later = -1.0 if more > 21 else best[more]
            hit = hit + (4 / 13 if card == 10 else 1 / 13) * later
        total = hard + 10 if hard + 10 <= 21 else hard
        best[hard] = max(stand[total], hit)
        if hard == sum(obs["player"]):
            now = hit
    out = dict(obs)
    out["ev_hit"] = now
    return out


def when_hit_value_soft(obs):
    return obs.get("soft") is True
