"""Written by the student for the emergency restricted-area {"x0": 11, "y0": 11, "x1": 15, "y1": 15};
verified in the isolated sandbox. Provenance: the .json file beside this one."""

VERSION = "1.0.0"


def obey_restricted_area(obs):
    """Drop the candidate cells that the new rule forbids.

    Stage: pursuer.emergency
    Reads: obs["candidates"], obs["pursuers"]
    Returns: obs with "candidates" narrowed, per pursuer, to the cells the new rule allows, in the same order
    Rules: A 5x5 restricted area appeared: no piece may enter a cell (x, y) with 11 <= x <= 15 and 11 <= y <= 15.
    Example:
        >>> obey_restricted_area({"pursuers": [[13, 16]], "candidates": [[[11, 16], [12, 15], [12, 16], [13, 14]]]})
        {"pursuers": [[13, 16]], "candidates": [[[11, 16], [12, 16]]]}
    """
    out = dict(obs)
    out["candidates"] = [[[x, y] for x, y in cells if not (11 <= x <= 15 and 11 <= y <= 15)]
                         for (px, py), cells in zip(obs["pursuers"], obs["candidates"])]
    return out
