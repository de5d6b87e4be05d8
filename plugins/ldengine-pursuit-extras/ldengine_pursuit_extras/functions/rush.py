"""Closing the distance fast while the pursuers are still far away: an alternative for pursuer.decide,
played by the ld agent in the states its When: field names, and the fact the student reads to know
them (fact_all_far: its sentence is what a query at pursuer.decide states, with yes or no)."""

VERSION = "0.1.0"


def rush_from_three_sides(obs):
    """Close the distance fast while every pursuer is still far away: each steps straight at the evader.

    Stage: pursuer.decide
    When: every pursuer is 6 or more cells from the evader (the nearest pursuer is 6 or more cells away)
    Reads: obs["candidates"] (legal cells per pursuer), obs["pursuers"], obs["evader"]
    Returns: the action, one cell [x, y] per pursuer, each taken from that pursuer's legal candidates
    Rules: far from the evader there is nothing to surround yet and planning buys little: each pursuer takes
        its legal cell closest to the evader (Manhattan), preferring, among equally close cells, the one on the
        evader's diagonal (|dx| and |dy| most alike) so it can later block two escape directions; a pursuer with
        no candidate stays.
    Example:
        >>> rush_from_three_sides({"evader": [10, 10], "pursuers": [[0, 10], [20, 10], [10, 0]], "candidates": [[[0, 10], [2, 10], [1, 11]], [[20, 10], [18, 10]], [[10, 0], [10, 2]]]})
        [[2, 10], [18, 10], [10, 2]]
    """
    ex, ey = obs["evader"]
    action = []
    for p, cells in zip(obs["pursuers"], obs["candidates"]):
        ranked = sorted(cells, key=lambda c: (abs(c[0] - ex) + abs(c[1] - ey), abs(abs(c[0] - ex) - abs(c[1] - ey))))
        action.append([ranked[0][0], ranked[0][1]] if ranked else [p[0], p[1]])
    return action


def when_rush_from_three_sides(obs):
    """True when every pursuer is 6 or more cells (Manhattan) from the evader."""
    ex, ey = obs["evader"]
    return min(abs(p[0] - ex) + abs(p[1] - ey) for p in obs["pursuers"]) >= 6


def fact_all_far(obs):
    """no pursuer is closer than 6 cells to the evader

    Stage: pursuer.decide
    """
    return when_rush_from_three_sides(obs)
