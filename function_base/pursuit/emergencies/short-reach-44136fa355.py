"""Written by the student for the emergency short-reach {};
verified in the isolated sandbox. Provenance: the .json file beside this one."""

VERSION = "1.0.0"


def obey_short_reach(obs):
    """Drop the candidate cells that the new rule forbids.

    Stage: pursuer.emergency
    Reads: obs["candidates"], obs["pursuers"]
    Returns: obs with "candidates" narrowed, per pursuer, to the cells the new rule allows, in the same order
    Rules: Deep mud: pursuers may now move at most 1 cell per step: a move from (px, py) to (x, y) needs |x - px| + |y - py| <= 1.
    Example:
        >>> obey_short_reach({"pursuers": [[10, 10]], "candidates": [[[8, 10], [9, 9], [9, 10], [10, 9]]]})
        {"pursuers": [[10, 10]], "candidates": [[[9, 10], [10, 9]]]}
    """
    out = dict(obs)
    out["candidates"] = [[[x, y] for x, y in cells if abs(x - px) + abs(y - py) <= 1]
                         for (px, py), cells in zip(obs["pursuers"], obs["candidates"])]
    return out
