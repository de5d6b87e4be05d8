"""Written by the student for the emergency wall {"x": 6, "x_next": 7, "y0": 11, "y1": 17};
verified in the isolated sandbox. Provenance: the .json file beside this one."""

VERSION = "1.0.0"


def obey_wall(obs):
    """Drop the candidate cells that the new rule forbids.

    Stage: pursuer.emergency
    Reads: obs["candidates"], obs["pursuers"]
    Returns: obs with "candidates" narrowed, per pursuer, to the cells the new rule allows, in the same order
    Rules: A wall stands between columns x = 6 and x = 7 for rows 11 to 17: a move from (px, py) to (x, y) is forbidden when min(px, x) <= 6 < max(px, x) and (11 <= py <= 17 or 11 <= y <= 17).
    Example:
        >>> obey_wall({"pursuers": [[7, 10]], "candidates": [[[5, 10], [6, 9], [6, 11]]]})
        {"pursuers": [[7, 10]], "candidates": [[[5, 10], [6, 9]]]}
    """
    out = dict(obs)
    out["candidates"] = [[[x, y] for x, y in cells if not (min(px, x) <= 6 < max(px, x) and (11 <= py <= 17 or 11 <= y <= 17))]
                         for (px, py), cells in zip(obs["pursuers"], obs["candidates"])]
    return out
