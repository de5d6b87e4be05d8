"""Two more alternatives for pursuer.decide, written after every committed adapter was trained,
with When: fields in words of their own (paraphrases, not copies, of the facts they depend on),
and the two facts they need (fact_deep_inside, fact_straggler)."""

VERSION = "0.1.0"

DEEP = 6        # cells from every edge that count as "deep inside the board"
BEHIND = 8      # a pursuer farther than this from the evader trails behind


def box_in_centre(obs):
    """Box the evader in from three sides while it keeps to the middle of the board.

    Stage: pursuer.decide
    When: the evader stays deep inside the board, six cells or more away from all four sides
    Reads: obs["candidates"] (legal cells per pursuer), obs["pursuers"], obs["evader"]
    Returns: the action, one cell [x, y] per pursuer, each taken from that pursuer's legal candidates
    Rules: in the open middle the evader can flee any way, so the pursuers come from three sides:
        the first aims 2 cells left of the evader, the second 2 cells right, the third 2 cells below;
        each takes its legal cell nearest its aim (Manhattan), then nearest the evader; a pursuer with
        no candidate stays.
    Example:
        >>> box_in_centre({"evader": [10, 10], "pursuers": [[4, 10], [16, 10], [10, 4]], "candidates": [[[4, 10], [6, 10], [5, 11]], [[16, 10], [14, 10]], [[10, 4], [10, 6]]]})
        [[6, 10], [14, 10], [10, 6]]
    """
    ex, ey = obs["evader"]
    aims = [[ex - 2, ey], [ex + 2, ey], [ex, ey - 2]]
    action = []
    for i, (p, cells) in enumerate(zip(obs["pursuers"], obs["candidates"])):
        ax, ay = aims[i % 3]
        ranked = sorted(cells, key=lambda c: (abs(c[0] - ax) + abs(c[1] - ay), abs(c[0] - ex) + abs(c[1] - ey)))
        action.append([ranked[0][0], ranked[0][1]] if ranked else [p[0], p[1]])
    return action


def when_box_in_centre(obs):
    """True when the evader is at least 6 cells from every edge."""
    return fact_deep_inside(obs)


def bring_up_straggler(obs):
    """Bring a pursuer that trails far behind up to the others while the rest keep close.

    Stage: pursuer.decide
    When: the pursuers cannot all step beside the evader yet, and one of them lags more than 8 cells behind it
    Reads: obs["candidates"] (legal cells per pursuer), obs["pursuers"], obs["evader"]
    Returns: the action, one cell [x, y] per pursuer, each taken from that pursuer's legal candidates
    Rules: a pursuer farther than 8 cells (Manhattan) from the evader takes its legal cell closest to
        the evader; the others take their legal cell closest to 2 cells from the evader (near, not
        adjacent, so they keep it from slipping past), the nearer one to the evader on ties; a pursuer
        with no candidate stays.
    Example:
        >>> bring_up_straggler({"evader": [10, 10], "pursuers": [[0, 10], [12, 10], [10, 13]], "candidates": [[[0, 10], [2, 10]], [[12, 10], [11, 10], [13, 10]], [[10, 13], [10, 12], [10, 11]]]})
        [[2, 10], [12, 10], [10, 12]]
    """
    ex, ey = obs["evader"]
    action = []
    for p, cells in zip(obs["pursuers"], obs["candidates"]):
        far = abs(p[0] - ex) + abs(p[1] - ey) > BEHIND
        if far:
            key = lambda c: abs(c[0] - ex) + abs(c[1] - ey)  # noqa: E731
        else:
            key = lambda c: (abs(abs(c[0] - ex) + abs(c[1] - ey) - 2), abs(c[0] - ex) + abs(c[1] - ey))  # noqa: E731
        ranked = sorted(cells, key=key)
        action.append([ranked[0][0], ranked[0][1]] if ranked else [p[0], p[1]])
    return action


def when_bring_up_straggler(obs):
    """True when capture is not ready and some pursuer is more than 8 cells from the evader."""
    ex, ey = obs["evader"]
    ready = len(obs["candidates"]) > 0 and all(any(abs(c[0] - ex) + abs(c[1] - ey) == 1 for c in cells)
                                               for cells in obs["candidates"])
    return not ready and fact_straggler(obs)


def fact_deep_inside(obs):
    """the evader is at least 6 cells from every edge of the board

    Stage: pursuer.decide
    """
    ex, ey = obs["evader"]
    size = obs["size"]
    return min(ex, ey, size - 1 - ex, size - 1 - ey) >= DEEP


def fact_straggler(obs):
    """some pursuer is over 8 cells away from the evader

    Stage: pursuer.decide
    """
    ex, ey = obs["evader"]
    return max(abs(p[0] - ex) + abs(p[1] - ey) for p in obs["pursuers"]) > BEHIND
