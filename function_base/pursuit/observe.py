"""Pursuer observation: the state plus the facts later stages read."""

VERSION = "1.0.0"


def observe_positions(state):
    """Add each pursuer's distance to the evader, the nearest pursuer and the evader's escape cells.

    Stage: pursuer.observe
    Reads: state["pursuers"], state["evader"], state["size"], state["forbidden"]
    Returns: state plus "distances" (each pursuer's Manhattan distance to the evader), "nearest" (index of the closest pursuer, the first on ties) and "evader_moves" (the evader's legal cells now, in the order stay, x+1, x-1, y+1, y-1)
    Rules: distance is Manhattan, |dx| + |dy|; the evader may stay or step to x+1, x-1, y+1 or y-1, onto a board cell
        that is neither forbidden nor a pursuer's cell.
    Example:
        >>> observe_positions({"size": 3, "pursuers": [[0, 0], [2, 2], [0, 2]], "evader": [1, 0], "forbidden": []})
        {'size': 3, 'pursuers': [[0, 0], [2, 2], [0, 2]], 'evader': [1, 0], 'forbidden': [], 'distances': [1, 3, 3], 'nearest': 0, 'evader_moves': [[1, 0], [2, 0], [1, 1]]}
    """
    ex, ey = state["evader"]
    size = state["size"]
    distances = [abs(p[0] - ex) + abs(p[1] - ey) for p in state["pursuers"]]
    blocked = set((c[0], c[1]) for c in state["forbidden"]) | set((p[0], p[1]) for p in state["pursuers"])
    moves = [[x, y] for x, y in ((ex, ey), (ex + 1, ey), (ex - 1, ey), (ex, ey + 1), (ex, ey - 1))
             if 0 <= x < size and 0 <= y < size and (x, y) not in blocked]
    out = dict(state)
    out["distances"] = distances
    out["nearest"] = distances.index(min(distances)) if distances else None
    out["evader_moves"] = moves
    return out
