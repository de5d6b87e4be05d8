"""The dealer's side: its fixed drawing rule and where it ends from the shown card."""

VERSION = "1.0.0"


def dealer_final_totals(obs):
    """Add the probabilities of the dealer's final total (17 to 21, or bust) given its shown card.

    Stage: player.dealer
    Reads: obs["dealer"] (the dealer's shown card: 1 is an ace, 10 any ten-valued card)
    Returns: obs plus "dealer_final", a list of 6 probabilities: the dealer ends on 17, 18, 19, 20, 21, or busts
    Rules: infinite deck: ace and 2..9 with probability 1/13 each, a ten-valued card with 4/13. The dealer's
        hole card is unknown; the dealer draws until its total is 17 or more and stands on soft 17; an ace
        counts 11 unless that busts the hand.
    Example:
        >>> dealer_final_totals({"dealer": 6})
        {'dealer': 6, 'dealer_final': [0.1654381765033464, 0.1062665788702103, 0.1062665788702103, 0.10171491751381521, 0.0971632561574202, 0.42315049208499167]}
    """
    shown = obs["dealer"]
    final = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    stack = [(shown, shown == 1, 1.0)]
    while stack:
        hard, ace, p = stack.pop()
        total = hard + 10 if ace and hard + 10 <= 21 else hard
        if hard > 21:
            final[5] = final[5] + p
        elif total >= 17:
            final[total - 17] = final[total - 17] + p
        else:
            for card in range(1, 11):
                stack.append((hard + card, ace or card == 1, p * (4 / 13 if card == 10 else 1 / 13)))
    out = dict(obs)
    out["dealer_final"] = final
    return out


def dealer_draws(obs):
    """Tell whether the dealer must draw another card.

    Stage: dealer.decide
    Reads: obs["dealer_cards"] (all the dealer's cards)
    Returns: True when the dealer draws again, False when it stands
    Rules: the dealer draws until its total is 17 or more and stands on soft 17; an ace counts 11 unless that
        busts the hand.
    Example:
        >>> dealer_draws({"dealer_cards": [10, 6]})
        True
        >>> dealer_draws({"dealer_cards": [1, 6]})
        False
    """
    hard = sum(obs["dealer_cards"])
    total = hard + 10 if 1 in obs["dealer_cards"] and hard + 10 <= 21 else hard
    return total < 17
