"""Written by the student for the emergency restricted-area {"x0": 3, "y0": 13, "x1": 7, "y1": 17};
verified in the isolated sandbox. Provenance: the .json file beside this one."""

VERSION = "1.0.0"


def obey_restricted_area(obs):
    """Drop the candidate cells that the new rule forbids.

    Stage: pursuer.emergency
    Reads: obs["candidates"], obs["pursuers"]
    Returns: obs with "candidates" narrowed, per pursuer, to the cells the new rule allows, in the same order
    Rules: A 5x5 restricted area appeared: no piece may enter a cell (x, y) with 3 <= x <= 7 and 13 <= y <= 17.
    Example:
        >>> obey_restricted_area({"pursuers": [[5, 18]], "candidates": [[[3, 18], [4, 17], [4, 18], [5, 16]]]})
        {"pursuers": [[5, 18]], "candidates": [[[3, 18], [4, 18]]]}
    """
    out = dict(obs)
    out["candidates"] = [[[x, y] for x, y in cells if not (3 <= x <= 7 and 13 <= y <= 17)]
                         for (px, py), cells in zip(obs["pursuers"], obs["candidates"])]
    return out
