"""Written by the student for the emergency wall {"x": 6, "x_next": 7, "y0": 10, "y1": 16};
verified in the isolated sandbox. Provenance: the .json file beside this one."""

VERSION = "1.0.0"


def obey_wall(obs):
    """Drop the candidate cells that the new rule forbids.

    Stage: pursuer.emergency
    Reads: obs["candidates"], obs["pursuers"]
    Returns: obs with "candidates" narrowed, per pursuer, to the cells the new rule allows, in the same order
    Rules: A wall stands between columns x = 6 and x = 7 for rows 10 to 16: a move from (px, py) to (x, y) is forbidden when min(px, x) <= 6 < max(px, x) and (10 <= py <= 16 or 10 <= y <= 16).
    Example:
        >>> obey_wall({"pursuers": [[7, 9]], "candidates": [[[5, 9], [6, 8], [6, 10]]]})
        {"pursuers": [[7, 9]], "candidates": [[[5, 9], [6, 8]]]}
    """
    out = dict(obs)
    out["candidates"] = [[[x, y] for x, y in cells if not (min(px, x) <= 6 < max(px, x) and (10 <= py <= 16 or 10 <= y <= 16))]
                         for (px, py), cells in zip(obs["pursuers"], obs["candidates"])]
    return out
