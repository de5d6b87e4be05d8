"""Pursuer moves: every cell a pursuer could aim at, then only the legal ones."""

VERSION = "1.0.0"


def pursuer_candidate_cells(obs):
    """List, for each pursuer, every cell within its reach, before any legality check.

    Stage: pursuer.generate
    Reads: obs["pursuers"], obs["reach"] (2 when absent)
    Returns: obs plus "candidates": per pursuer, the cells [x, y] within Manhattan distance reach of it, staying included, off-board cells too, ordered by x then y
    Rules: a pursuer may move to any cell within Manhattan distance 2 of its own cell (|dx| + |dy| <= 2, 13 cells); staying is a move.
    Example:
        >>> pursuer_candidate_cells({"reach": 2, "pursuers": [[0, 0]]})
        {'reach': 2, 'pursuers': [[0, 0]], 'candidates': [[[-2, 0], [-1, -1], [-1, 0], [-1, 1], [0, -2], [0, -1], [0, 0], [0, 1], [0, 2], [1, -1], [1, 0], [1, 1], [2, 0]]]}
        >>> pursuer_candidate_cells({"reach": 1, "pursuers": [[3, 4], [3, 4]]})
        {'reach': 1, 'pursuers': [[3, 4], [3, 4]], 'candidates': [[[2, 4], [3, 3], [3, 4], [3, 5], [4, 4]], [[2, 4], [3, 3], [3, 4], [3, 5], [4, 4]]]}
    """
    reach = obs.get("reach", 2)
    steps = [(dx, dy) for dx in range(-reach, reach + 1) for dy in range(-reach, reach + 1)
             if abs(dx) + abs(dy) <= reach]
    out = dict(obs)
    out["candidates"] = [[[p[0] + dx, p[1] + dy] for dx, dy in steps] for p in obs["pursuers"]]
    return out


def filter_legal_cells(obs):
    """Keep only the candidate cells each pursuer may legally move to.

    Stage: pursuer.filter
    Reads: obs["candidates"], obs["pursuers"], obs["size"], obs["forbidden"], obs["evader"], obs["reach"] (2 when absent)
    Returns: obs with "candidates" narrowed to legal cells, per pursuer, in the same order
    Rules: a pursuer's target must be on the board (0 <= x, y < size), within Manhattan distance 2 of the pursuer,
        not a forbidden cell and not the evader's cell; pursuers may share a cell.
    Example:
        >>> filter_legal_cells({"size": 3, "evader": [1, 1], "forbidden": [], "pursuers": [[0, 0]], "candidates": [[[0, 0], [1, 1], [3, 0], [-1, 0]]]})
        {'size': 3, 'evader': [1, 1], 'forbidden': [], 'pursuers': [[0, 0]], 'candidates': [[[0, 0]]]}
        >>> filter_legal_cells({"size": 5, "evader": [4, 4], "forbidden": [[1, 0]], "pursuers": [[0, 0], [2, 2]], "candidates": [[[1, 0], [0, 1], [2, 2]], [[4, 4], [3, 3], [2, 2]]]})
        {'size': 5, 'evader': [4, 4], 'forbidden': [[1, 0]], 'pursuers': [[0, 0], [2, 2]], 'candidates': [[[0, 1]], [[3, 3], [2, 2]]]}
    """
    size, reach = obs["size"], obs.get("reach", 2)
    forbidden = set((c[0], c[1]) for c in obs["forbidden"])
    evader = (obs["evader"][0], obs["evader"][1])
    legal = []
    for p, cells in zip(obs["pursuers"], obs["candidates"]):
        keep = []
        for c in cells:
            cell = (c[0], c[1])
            if (0 <= cell[0] < size and 0 <= cell[1] < size and cell not in forbidden and cell != evader
                    and abs(cell[0] - p[0]) + abs(cell[1] - p[1]) <= reach):
                keep.append([cell[0], cell[1]])
        legal.append(keep)
    out = dict(obs)
    out["candidates"] = legal
    return out


def evader_candidate_cells(obs):
    """List the cells the evader could step to this turn, before any legality check.

    Stage: evader.generate
    Reads: obs["evader"]
    Returns: obs plus "evader_candidates": the evader's own cell and its four neighbours, in the order stay, x+1, x-1, y+1, y-1, off-board cells too
    Rules: the evader moves to a cell within Manhattan distance 1 of its cell (staying is a move); it never moves diagonally.
    Example:
        >>> evader_candidate_cells({"evader": [0, 3]})
        {'evader': [0, 3], 'evader_candidates': [[0, 3], [1, 3], [-1, 3], [0, 4], [0, 2]]}
    """
    x, y = obs["evader"]
    out = dict(obs)
    out["evader_candidates"] = [[x, y], [x + 1, y], [x - 1, y], [x, y + 1], [x, y - 1]]
    return out


def evader_legal_cells(obs):
    """Keep only the cells the evader may legally step to.

    Stage: evader.filter
    Reads: obs["evader_candidates"], obs["size"], obs["forbidden"], obs["pursuers"]
    Returns: obs with "evader_candidates" narrowed to the legal cells, in the same order
    Rules: the evader's cell must be on the board (0 <= x, y < size), not forbidden and not a pursuer's cell.
    Example:
        >>> evader_legal_cells({"size": 3, "forbidden": [[1, 2]], "pursuers": [[1, 0]], "evader_candidates": [[1, 1], [2, 1], [0, 1], [1, 2], [1, 0]]})
        {'size': 3, 'forbidden': [[1, 2]], 'pursuers': [[1, 0]], 'evader_candidates': [[1, 1], [2, 1], [0, 1]]}
    """
    size = obs["size"]
    blocked = set((c[0], c[1]) for c in obs["forbidden"]) | set((p[0], p[1]) for p in obs["pursuers"])
    out = dict(obs)
    out["evader_candidates"] = [[c[0], c[1]] for c in obs["evader_candidates"]
                                if 0 <= c[0] < size and 0 <= c[1] < size and (c[0], c[1]) not in blocked]
    return out
