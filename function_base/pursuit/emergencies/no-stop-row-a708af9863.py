"""Written by the student for the emergency no-stop-row {"y0": 16};
verified in the isolated sandbox. Provenance: the .json file beside this one."""

VERSION = "1.0.0"


def obey_no_stop_row(obs):
    """Drop the candidate cells that the new rule forbids.

    Stage: pursuer.emergency
    Reads: obs["candidates"], obs["pursuers"]
    Returns: obs with "candidates" narrowed, per pursuer, to the cells the new rule allows, in the same order
    Rules: Pursuers may no longer stop on a cell (x, y) with y == 16 (they may jump over that row; the evader may stand on it).
    Example:
        >>> obey_no_stop_row({"pursuers": [[10, 17]], "candidates": [[[8, 17], [9, 16], [9, 17], [10, 16]]]})
        {"pursuers": [[10, 17]], "candidates": [[[8, 17], [9, 17]]]}
    """
    out = dict(obs)
    out["candidates"] = [[[x, y] for x, y in cells if not (y == 16)]
                         for (px, py), cells in zip(obs["pursuers"], obs["candidates"])]
    return out
