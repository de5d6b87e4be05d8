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


def count_adjacent_pursuers(obs):
    """Count the pursuers already next to the evader.

    Stage: pursuer.analyse
    Reads: obs["pursuers"], obs["evader"]
    Returns: an int, how many pursuers are within Manhattan distance 1 of the evader
    Rules: the evader is captured when all three pursuers are within Manhattan distance 1 of it.
    Example:
        >>> count_adjacent_pursuers({"evader": [2, 2], "pursuers": [[2, 3], [1, 2], [0, 0]]})
        2
    """
    ex, ey = obs["evader"]
    return len([p for p in obs["pursuers"] if abs(p[0] - ex) + abs(p[1] - ey) <= 1])


def capture_possible_now(obs):
    """Tell whether every pursuer can reach a cell next to the evader this step.

    Stage: pursuer.analyse
    Reads: obs["pursuers"], obs["evader"], obs["size"], obs["forbidden"]
    Returns: True when each pursuer has a legal cell within Manhattan distance 1 of the evader, else False
    Rules: a pursuer moves up to Manhattan distance 2 onto a board cell that is neither forbidden nor the
        evader's; the evader is captured when every pursuer ends within distance 1 of it.
    Example:
        >>> capture_possible_now({"size": 5, "evader": [2, 2], "forbidden": [], "pursuers": [[0, 2], [4, 3], [2, 4]]})
        True
        >>> capture_possible_now({"size": 5, "evader": [2, 2], "forbidden": [], "pursuers": [[0, 0], [4, 3], [2, 4]]})
        False
    """
    ex, ey = obs["evader"]
    size = obs["size"]
    forbidden = set((c[0], c[1]) for c in obs["forbidden"])
    near = [(x, y) for x, y in ((ex + 1, ey), (ex - 1, ey), (ex, ey + 1), (ex, ey - 1))
            if 0 <= x < size and 0 <= y < size and (x, y) not in forbidden]
    return all(any(abs(p[0] - x) + abs(p[1] - y) <= 2 for x, y in near) for p in obs["pursuers"])


def evader_escape_routes(obs):
    """List the evader's steps that take it farther from the nearest pursuer.

    Stage: pursuer.analyse
    Reads: obs["pursuers"], obs["evader"], obs["size"], obs["forbidden"]
    Returns: a list of cells [x, y], in the order x+1, x-1, y+1, y-1, where the evader's distance to its nearest pursuer grows
    Rules: the evader steps to x+1, x-1, y+1 or y-1 onto a board cell that is neither forbidden nor a pursuer's
        cell; distance is Manhattan.
    Example:
        >>> evader_escape_routes({"size": 5, "evader": [2, 2], "forbidden": [], "pursuers": [[0, 1], [1, 0], [0, 0]]})
        [[3, 2], [2, 3]]
        >>> evader_escape_routes({"size": 5, "evader": [4, 4], "forbidden": [], "pursuers": [[2, 4], [4, 2], [0, 0]]})
        []
    """
    ex, ey = obs["evader"]
    size = obs["size"]
    pursuers = obs["pursuers"]
    blocked = set((c[0], c[1]) for c in obs["forbidden"]) | set((p[0], p[1]) for p in pursuers)
    now = min(abs(p[0] - ex) + abs(p[1] - ey) for p in pursuers)
    routes = []
    for x, y in ((ex + 1, ey), (ex - 1, ey), (ex, ey + 1), (ex, ey - 1)):
        if 0 <= x < size and 0 <= y < size and (x, y) not in blocked:
            if min(abs(p[0] - x) + abs(p[1] - y) for p in pursuers) > now:
                routes.append([x, y])
    return routes
