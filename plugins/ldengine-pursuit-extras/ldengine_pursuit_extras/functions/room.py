"""How much room the evader has: cells it can reach in two steps, pursuers and forbidden cells aside."""

VERSION = "0.1.0"


def evader_room(obs):
    """Count the free cells the evader can reach within two steps.

    Stage: pursuer.analyse
    Reads: obs["evader"], obs["pursuers"], obs["size"], obs["forbidden"]
    Returns: an int, the number of board cells within Manhattan distance 2 of the evader (its own included)
        that are neither forbidden nor a pursuer's cell
    Rules: the evader steps to x+1, x-1, y+1 or y-1 (or stays) onto a board cell that is neither forbidden nor
        a pursuer's cell; distance is Manhattan.
    Example:
        >>> evader_room({"size": 3, "evader": [0, 0], "pursuers": [[1, 0]], "forbidden": []})
        5
    """
    ex, ey = obs["evader"]
    size = obs["size"]
    blocked = set((c[0], c[1]) for c in obs["forbidden"]) | set((p[0], p[1]) for p in obs["pursuers"])
    return len([(x, y) for x in range(ex - 2, ex + 3) for y in range(ey - 2, ey + 3)
                if abs(x - ex) + abs(y - ey) <= 2 and 0 <= x < size and 0 <= y < size and (x, y) not in blocked])
