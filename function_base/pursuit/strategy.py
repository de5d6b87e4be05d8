"""Pursuer decision: one legal cell per pursuer, closing in on the evader from several sides.

pursuer.decide has four strategies, chosen by the state (the oracle checks the
when_ predicates in module order): capture_adjacent when every pursuer can step
next to the evader, route_around_block when an obstacle (a new rule's wall or
forbidden cells) stops some pursuer from closing in, pin_against_edge when the
evader is near an edge and capture is not ready, encircle_evader (the default)
elsewhere. The first three are specialists: outside their state each plays only
the plain chase, so a wrong choice costs steps.
Also a plain chase (a yardstick) and the greedy evader's rule seen from both sides.
encircle_evader keeps its helpers nested: every top-level def of a function-base
module is a manual entry, and helpers are not functions a selector should see.
"""
VERSION = "1.0.0"

# A joint move is scored after the evader's predicted reply: the farthest
# pursuer's distance counts in full, the sum of all distances a little (so no
# pursuer idles), and each pursuer's slant a little: a pursuer on one of the
# evader's diagonals blocks two of its four escape directions, one straight
# beside, above or below it blocks only one.
SUM_WEIGHT = 0.01
SLANT_WEIGHT = 0.01
# Rounds of changing one pursuer's cell while the other pursuers keep theirs,
# for this step's move and for the next step's when looking ahead.
ROUNDS = 2
FOLLOW_ROUNDS = 1
# How many of the best joint moves are looked at one step further.
BEAM = 5
# Path distance of a cell that forbidden cells cut off from the evader.
FAR = 999
# A pursuer's moves: every offset within Manhattan distance 2, staying included.
STEPS = ((-2, 0), (-1, -1), (-1, 0), (-1, 1), (0, -2), (0, -1), (0, 0), (0, 1), (0, 2),
         (1, -1), (1, 0), (1, 1), (2, 0))

# pin_against_edge: how many of each pursuer's cells (nearest the evader first) it
# tries, and how many cells from an edge count as "near an edge".
PIN_CELLS = 7
EDGE_MARGIN = 2


def capture_adjacent(obs):
    """Move every pursuer next to the evader at once: the capture, when every pursuer can make it.

    Stage: pursuer.decide
    When: every pursuer can reach a cell next to the evader this step (capture ready)
    Reads: obs["candidates"] (legal cells per pursuer), obs["pursuers"], obs["evader"]
    Returns: the action, a list with one cell [x, y] per pursuer, each taken from that pursuer's legal candidates
    Rules: the evader is captured when every pursuer is within Manhattan distance 1 of it right after the
        pursuers move. Each pursuer takes its first candidate next to the evader; a pursuer without one takes
        its candidate nearest the evader (the first on ties), and one with no candidate stays. Outside its
        state this is only a plain chase, which corners the greedy evader slowly (about 16 steps a game, not 9).
    Example:
        >>> capture_adjacent({"evader": [2, 2], "pursuers": [[0, 2], [4, 3], [2, 4]], "candidates": [[[0, 2], [1, 2], [2, 1]], [[4, 3], [3, 2], [2, 3]], [[2, 4], [2, 3]]]})
        [[1, 2], [3, 2], [2, 3]]
        >>> capture_adjacent({"evader": [0, 0], "pursuers": [[4, 0], [0, 1], [0, 3]], "candidates": [[[2, 0], [3, 0]], [[1, 0], [0, 2]], []]})
        [[2, 0], [1, 0], [0, 3]]
    """
    ex, ey = obs["evader"]
    action = []
    for p, cells in zip(obs["pursuers"], obs["candidates"]):
        ranked = sorted(cells, key=lambda c: abs(c[0] - ex) + abs(c[1] - ey))
        action.append([ranked[0][0], ranked[0][1]] if ranked else [p[0], p[1]])
    return action


def when_capture_adjacent(obs):
    """Every pursuer has a legal candidate cell next to the evader (the candidates, not the usual reach of 2:
    a new rule may shorten a pursuer's reach or close cells)."""
    ex, ey = obs["evader"]
    candidates = obs["candidates"]
    return len(candidates) > 0 and all(any(abs(c[0] - ex) + abs(c[1] - ey) == 1 for c in cells)
                                       for cells in candidates)


def route_around_block(obs):
    """Lead a pursuer that an obstacle cuts off around the obstacle's end; the others surround the evader.

    Stage: pursuer.decide
    When: a pursuer is blocked: a wall or forbidden cells leave it no legal cell nearer the evader
    Reads: obs["candidates"] (legal cells per pursuer), obs["pursuers"], obs["evader"], obs["size"], obs["forbidden"]
    Returns: the action, a list with one cell [x, y] per pursuer, each taken from that pursuer's legal candidates
    Rules: a pursuer is blocked along x when |x - ex| >= 2 and none of its candidates has a smaller |x - ex|
        (a wall or forbidden cells stop every move toward the evader in x); blocked along y likewise. A blocked
        pursuer slides along the obstacle on the other axis, toward the board edge on the evader's side (the
        edge nearer the evader along that axis; at the middle, the edge nearer the pursuer): that way does not
        change as the pursuer moves, so it keeps sliding until the obstacle ends, and a fleeing evader is
        usually on that side. It takes the candidate that goes farthest that way, then the one nearest the
        evader along the blocked axis, so it hugs the obstacle and turns past its end as soon as a move there
        is legal; at the board edge it slides the other way. The other pursuers play encircle_evader's move,
        planned with the blocked ones on their chosen cells. Played elsewhere it has nothing to route
        around: it plays only the plain chase (chase_nearest), about 16 steps a game instead of 9.
    Example:
        >>> route_around_block({"size": 21, "evader": [10, 15], "forbidden": [], "pursuers": [[6, 15], [12, 13], [12, 17]], "candidates": [[[6, 13], [5, 14], [6, 14], [4, 15], [5, 15], [6, 15], [5, 16], [6, 16], [6, 17]], [[12, 13], [11, 13], [11, 14], [10, 13]], [[12, 17], [11, 17], [11, 16], [10, 17]]]})
        [[6, 17], [11, 13], [11, 16]]
    """
    if not when_route_around_block(obs):
        return chase_nearest(obs)
    size = obs["size"]
    e = obs["evader"]
    chosen = []
    for p, cells in zip(obs["pursuers"], obs["candidates"]):
        cell = None
        for axis in (0, 1):
            other = 1 - axis
            far = abs(p[axis] - e[axis])
            if cell is None and cells and far >= 2 and min(abs(c[axis] - e[axis]) for c in cells) >= far:
                # Blocked along `axis`: slide along `other`, toward the edge on the evader's side.
                side = e[other] * 2 - (size - 1)
                if side == 0:
                    side = p[other] * 2 - (size - 1)
                way = 1 if side >= 0 else -1
                ahead = [c for c in cells if (c[other] - p[other]) * way > 0]
                if not ahead:
                    way = -way
                    ahead = [c for c in cells if (c[other] - p[other]) * way > 0]
                if ahead:
                    best = sorted(ahead, key=lambda c: (-(c[other] - p[other]) * way, abs(c[axis] - e[axis])))[0]
                    cell = [best[0], best[1]]
        chosen.append(cell)
    # The others plan around the blocked pursuers' cells, as encircle_evader does.
    narrowed = dict(obs)
    narrowed["candidates"] = [[c] if c is not None else cells for c, cells in zip(chosen, obs["candidates"])]
    return encircle_evader(narrowed)


def when_route_around_block(obs):
    """Some pursuer is 2 or more columns (rows) from the evader and no legal cell brings it nearer in x (y)."""
    e = obs["evader"]
    for p, cells in zip(obs["pursuers"], obs["candidates"]):
        for axis in (0, 1):
            far = abs(p[axis] - e[axis])
            if cells and far >= 2 and min(abs(c[axis] - e[axis]) for c in cells) >= far:
                return True
    return False


def pin_against_edge(obs):
    """Pin the evader against the edge: the joint move after whose reply every pursuer can step next to it.

    Stage: pursuer.decide
    When: the evader is within 2 cells of an edge of the board and capture is not ready
    Reads: obs["candidates"] (legal cells per pursuer), obs["pursuers"], obs["evader"], obs["size"], obs["forbidden"]
    Returns: the action, a list with one cell [x, y] per pursuer, each taken from that pursuer's legal candidates
    Rules: near an edge the evader has few escape cells, so the pursuers can often leave it none that keeps it
        free for two steps. A joint move that puts every pursuer next to the evader is a capture and is taken
        at once. Otherwise every joint move of each pursuer's 7 candidates nearest the evader is tried; the
        greedy evader's reply is predicted (it stays or steps to the free cell, not a pursuer's, that maximises
        its distance to the nearest pursuer, then the sum; ties go to stay, x+1, x-1, y+1, y-1). A joint move
        after which every pursuer has a cell within its reach that is next to the evader's new cell (capture
        next step) wins (a pursuer's reach is read from its candidates, the farthest of them: 2, or 1 when a
        new rule shortens it), the one leaving the farthest pursuer closest, then the smallest sum of distances.
        When no joint move pins it, it plays encircle_evader's move. Played elsewhere it has nothing to pin
        against: it plays only the plain chase (chase_nearest), about 16 steps a game instead of 9.
    Example:
        >>> pin_against_edge({"size": 9, "evader": [0, 4], "forbidden": [], "pursuers": [[3, 4], [2, 7], [2, 1]], "candidates": [[[1, 4], [2, 4], [3, 4]], [[1, 6], [2, 6], [2, 7]], [[1, 2], [2, 2], [2, 1]]]})
        [[3, 4], [1, 6], [1, 2]]
    """
    size = obs["size"]
    ex, ey = obs["evader"]
    forbidden = set((c[0], c[1]) for c in obs["forbidden"])
    if min(ex, ey, size - 1 - ex, size - 1 - ey) > EDGE_MARGIN:
        return chase_nearest(obs)

    def around(e):
        # The free cells next to e.
        cells = ((e[0] + 1, e[1]), (e[0] - 1, e[1]), (e[0], e[1] + 1), (e[0], e[1] - 1))
        return [c for c in cells if 0 <= c[0] < size and 0 <= c[1] < size and c not in forbidden]

    def reply_to(cells):
        best, key = (ex, ey), None
        for r in [(ex, ey)] + around((ex, ey)):
            ds = [abs(q[0] - r[0]) + abs(q[1] - r[1]) for q in cells]
            if min(ds) > 0 and (key is None or (min(ds), sum(ds)) > key):
                best, key = r, (min(ds), sum(ds))
        return best

    options = []
    for i, p in enumerate(obs["pursuers"]):
        cells = [(c[0], c[1]) for c in obs["candidates"][i]] or [(p[0], p[1])]
        options.append(sorted(cells, key=lambda c: abs(c[0] - ex) + abs(c[1] - ey))[:PIN_CELLS])
    # How far each pursuer can move this step, read from its candidates (a new rule may shorten the reach).
    reach = [max([abs(c[0] - p[0]) + abs(c[1] - p[1]) for c in cells] or [2])
             for p, cells in zip(obs["pursuers"], obs["candidates"])]
    best, best_key = None, None
    for a in options[0]:
        for b in options[1]:
            for c in options[2]:
                if all(abs(q[0] - ex) + abs(q[1] - ey) == 1 for q in (a, b, c)):
                    return [[q[0], q[1]] for q in (a, b, c)]
                reply = reply_to((a, b, c))
                near = around(reply)
                if all(any(abs(q[0] - x) + abs(q[1] - y) <= r for x, y in near) for q, r in zip((a, b, c), reach)):
                    ds = [abs(q[0] - reply[0]) + abs(q[1] - reply[1]) for q in (a, b, c)]
                    if best_key is None or (max(ds), sum(ds)) < best_key:
                        best, best_key = (a, b, c), (max(ds), sum(ds))
    if best is None:
        return encircle_evader(obs)
    return [[q[0], q[1]] for q in best]


def when_pin_against_edge(obs):
    """The evader is within EDGE_MARGIN cells of an edge and capture is not ready."""
    ex, ey = obs["evader"]
    size = obs["size"]
    return min(ex, ey, size - 1 - ex, size - 1 - ey) <= EDGE_MARGIN and not when_capture_adjacent(obs)


def encircle_evader(obs):
    """Choose each pursuer's cell so that the three surround the evader, never an illegal one.

    Stage: pursuer.decide
    Reads: obs["candidates"] (legal cells per pursuer), obs["pursuers"], obs["evader"], obs["size"], obs["forbidden"]
    Returns: the action, a list with one cell [x, y] per pursuer, each taken from that pursuer's legal candidates
    Rules: the evader is captured when every pursuer is within Manhattan distance 1 of it, checked right after
        the pursuers move, so capture at once whenever every pursuer can step next to the evader. Otherwise
        predict the greedy evader's reply (it stays or steps to the cell that maximises its distance to the
        nearest pursuer, then the sum; ties go to stay, x+1, x-1, y+1, y-1) and prefer the joint move that
        leaves the farthest pursuer closest to it, the pursuers approaching along its diagonals from different
        sides; the best few joint moves are judged one step further. Distances go around forbidden cells.
        Pursuers may share a cell; a pursuer with no candidate stays.
    Example:
        >>> encircle_evader({"size": 5, "evader": [2, 2], "forbidden": [], "pursuers": [[0, 2], [4, 2], [2, 4]], "candidates": [[[0, 2], [1, 2]], [[4, 2], [3, 2]], [[2, 4], [2, 3]]]})
        [[1, 2], [3, 2], [2, 3]]
        >>> encircle_evader({"size": 9, "evader": [4, 4], "forbidden": [], "pursuers": [[0, 0], [8, 8], [8, 0]], "candidates": [[[0, 0], [1, 1], [2, 0]], [[8, 8], [7, 7], [6, 8]], [[8, 0], [7, 1], [6, 0]]]})
        [[1, 1], [7, 7], [7, 1]]
    """
    size = obs["size"]
    evader = (obs["evader"][0], obs["evader"][1])
    forbidden = set((c[0], c[1]) for c in obs["forbidden"])
    first = []
    for i, p in enumerate(obs["pursuers"]):
        cells = [(c[0], c[1]) for c in obs["candidates"][i]]
        first.append(cells if cells else [(p[0], p[1])])

    # How much longer than the Manhattan distance the way from the evader to
    # each cell is, going around forbidden cells (None: nothing is forbidden).
    detour = None
    if forbidden:
        ex, ey = evader
        detour = [[FAR] * size for x in range(size)]
        detour[ex][ey] = 0
        queue = [evader]
        head = 0
        while head < len(queue):
            x, y = queue[head]
            head = head + 1
            step = detour[x][y] + 1
            for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if 0 <= nx < size and 0 <= ny < size and detour[nx][ny] == FAR and (nx, ny) not in forbidden:
                    detour[nx][ny] = step
                    queue.append((nx, ny))
        for x in range(size):
            for y in range(size):
                detour[x][y] = detour[x][y] - abs(x - ex) - abs(y - ey)

    def replies_of(e):
        # The evader's cells in the greedy policy's tie-break order (pursuers aside).
        ex, ey = e
        steps = [(ex + 1, ey), (ex - 1, ey), (ex, ey + 1), (ex, ey - 1)]
        return [e] + [r for r in steps if 0 <= r[0] < size and 0 <= r[1] < size and r not in forbidden]

    def greedy_reply(e, cells):
        best, key = e, -1
        for r in replies_of(e):
            ds = [abs(c[0] - r[0]) + abs(c[1] - r[1]) for c in cells]
            if min(ds) > 0 and min(ds) * 100000 + sum(ds) > key:
                best, key = r, min(ds) * 100000 + sum(ds)
        return best

    def plan(moves, e, want):
        # The `want` best joint moves found, as (score, cells), lowest score first.
        ex, ey = e
        adjacent = [[c for c in cells if abs(c[0] - ex) + abs(c[1] - ey) == 1] for cells in moves]
        if all(adjacent):
            return [(-10.0, [cells[0] for cells in adjacent])]
        replies = replies_of(e)
        nreplies = len(replies)
        # Per pursuer, its cells as rows: (order, cell, distance to each reply
        # cell, detour, score terms for each reply cell), straight diagonal
        # approach first.
        options = []
        for cells in moves:
            rows = []
            for c in cells:
                extra_path = 0 if detour is None else detour[c[0]][c[1]]
                dist = [abs(c[0] - r[0]) + abs(c[1] - r[1]) for r in replies]
                terms = [SUM_WEIGHT * (dist[k] + extra_path)
                         + SLANT_WEIGHT * abs(abs(c[0] - replies[k][0]) - abs(c[1] - replies[k][1]))
                         for k in range(nreplies)]
                order = (abs(c[0] - ex) + abs(c[1] - ey) + extra_path, abs(abs(c[0] - ex) - abs(c[1] - ey)))
                rows.append((order, c, dist, extra_path, terms))
            rows.sort(key=lambda row: row[0])
            options.append(rows)

        def fixed(others):
            # Per reply cell, what the pursuers keeping their cells contribute:
            # min, sum and max of their distances, max path distance, score terms.
            ctx = []
            for k in range(nreplies):
                ds = [row[2][k] for row in others] or [FAR]
                ctx.append((min(ds), sum(ds), max(ds),
                            max([row[2][k] + row[3] for row in others] or [0]),
                            sum(row[4][k] for row in others)))
            return ctx

        def score(row, ctx):
            # The greedy reply to the joint move, then how well the evader is surrounded there.
            best, key = 0, -1
            for k in range(nreplies):
                d, c = row[2][k], ctx[k]
                if d > 0 and c[0] > 0 and min(d, c[0]) * 100000 + d + c[1] > key:
                    best, key = k, min(d, c[0]) * 100000 + d + c[1]
            c = ctx[best]
            if max(row[2][best], c[2]) <= 1:
                return -5.0
            return max(row[2][best] + row[3], c[3]) + row[4][best] + c[4]

        # From each pursuer's straight approach, change one pursuer's cell at a
        # time whenever that improves the score.
        chosen = [rows[0] for rows in options]
        value = score(chosen[0], fixed(chosen[1:]))
        seen = {tuple(row[1] for row in chosen): value}
        for sweep in range(ROUNDS if want > 1 else FOLLOW_ROUNDS):
            improved = False
            for i in range(len(options)):
                others = chosen[:i] + chosen[i + 1:]
                ctx = fixed(others)
                for row in options[i]:
                    trial_value = score(row, ctx)
                    if want > 1:
                        seen[tuple(r[1] for r in others[:i] + [row] + others[i:])] = trial_value
                    if trial_value < value:
                        chosen, value, improved = others[:i] + [row] + others[i:], trial_value, True
            if not improved:
                break
        if want == 1:
            return [(value, [row[1] for row in chosen])]
        return sorted([(v, list(cells)) for cells, v in seen.items()], key=lambda vc: vc[0])[:want]

    # Look one step further at the best joint moves: after the evader's reply,
    # how well can the pursuers do next?
    ranked = plan(first, evader, BEAM)
    best, best_key = ranked[0][1], None
    if ranked[0][0] > -1:
        for value, cells in ranked:
            reply = greedy_reply(evader, cells)
            if all(abs(c[0] - reply[0]) + abs(c[1] - reply[1]) <= 1 for c in cells):
                best = cells
                break
            moves = [[(c[0] + dx, c[1] + dy) for dx, dy in STEPS] for c in cells]
            moves = [[m for m in ms if 0 <= m[0] < size and 0 <= m[1] < size and m not in forbidden and m != reply]
                     for ms in moves]
            key = (plan(moves, reply, 1)[0][0], value)
            if best_key is None or key < best_key:
                best, best_key = cells, key
    return [[c[0], c[1]] for c in best]


def chase_nearest(obs):
    """Move every pursuer straight at the evader: the plain chase, a yardstick for other strategies.

    Stage: pursuer.baseline
    Reads: obs["candidates"] (legal cells per pursuer), obs["pursuers"], obs["evader"]
    Returns: an action, one cell [x, y] per pursuer: its candidate closest to the evader
    Rules: each pursuer independently takes the legal cell with the smallest Manhattan distance to the evader,
        the first one on ties; a pursuer with no candidate stays. It ignores the other pursuers.
    Example:
        >>> chase_nearest({"evader": [2, 2], "pursuers": [[0, 0], [4, 4], [0, 4]], "candidates": [[[0, 0], [1, 1], [2, 0]], [[4, 4], [3, 3]], []]})
        [[1, 1], [3, 3], [0, 4]]
    """
    ex, ey = obs["evader"]
    action = []
    for p, cells in zip(obs["pursuers"], obs["candidates"]):
        ranked = sorted(cells, key=lambda c: abs(c[0] - ex) + abs(c[1] - ey))
        action.append([ranked[0][0], ranked[0][1]] if ranked else [p[0], p[1]])
    return action


def predict_evader_reply(obs):
    """Predict the cell the greedy evader steps to, given where the pursuers stand.

    Stage: pursuer.analyse
    Reads: obs["pursuers"] (their cells after moving), obs["evader"], obs["size"], obs["forbidden"]
    Returns: the evader's predicted cell [x, y]
    Rules: the greedy evader stays or steps to x+1, x-1, y+1 or y-1 onto a board cell that is neither forbidden
        nor a pursuer's cell, maximising the Manhattan distance to the nearest pursuer, then the sum of distances;
        ties go to the first in the order stay, x+1, x-1, y+1, y-1.
    Example:
        >>> predict_evader_reply({"size": 5, "evader": [2, 2], "forbidden": [], "pursuers": [[0, 2], [2, 0], [0, 0]]})
        [3, 2]
        >>> predict_evader_reply({"size": 3, "evader": [2, 2], "forbidden": [], "pursuers": [[1, 2], [2, 1], [0, 0]]})
        [2, 2]
    """
    ex, ey = obs["evader"]
    size = obs["size"]
    pursuers = obs["pursuers"]
    blocked = set((c[0], c[1]) for c in obs["forbidden"]) | set((p[0], p[1]) for p in pursuers)
    best, best_key = [ex, ey], None
    for x, y in ((ex, ey), (ex + 1, ey), (ex - 1, ey), (ex, ey + 1), (ex, ey - 1)):
        if 0 <= x < size and 0 <= y < size and (x, y) not in blocked:
            ds = [abs(p[0] - x) + abs(p[1] - y) for p in pursuers]
            key = (min(ds), sum(ds))
            if best_key is None or key > best_key:
                best, best_key = [x, y], key
    return best


def evader_flee_greedy(obs):
    """Pick the evader's step that keeps it farthest from the pursuers (the greedy evader).

    Stage: evader.decide
    Reads: obs["evader_candidates"] (the evader's legal cells), obs["pursuers"], obs["evader"]
    Returns: the evader's next cell [x, y]
    Rules: among its legal cells, maximise the Manhattan distance to the nearest pursuer, then the sum of the
        distances to all pursuers; ties go to the first cell in the order stay, x+1, x-1, y+1, y-1. With no
        legal cell it stays.
    Example:
        >>> evader_flee_greedy({"evader": [2, 2], "pursuers": [[0, 2], [2, 0], [0, 0]], "evader_candidates": [[2, 2], [3, 2], [1, 2], [2, 3], [2, 1]]})
        [3, 2]
    """
    best, best_key = [obs["evader"][0], obs["evader"][1]], None
    for c in obs["evader_candidates"]:
        ds = [abs(p[0] - c[0]) + abs(p[1] - c[1]) for p in obs["pursuers"]]
        key = (min(ds), sum(ds))
        if best_key is None or key > best_key:
            best, best_key = [c[0], c[1]], key
    return best


# The facts a query at pursuer.decide states with yes or no (the student reads them beside each
# alternative's When: field). Their words are the state's, not copies of a When: text.

def fact_capture_ready(obs):
    """all three pursuers have a legal move that lands beside the evader

    Stage: pursuer.decide
    """
    return when_capture_adjacent(obs)


def fact_blocked(obs):
    """an obstacle stops some pursuer from getting any closer to the evader

    Stage: pursuer.decide
    """
    return when_route_around_block(obs)


def fact_near_edge(obs):
    """the evader stands at most 2 cells from the border of the board

    Stage: pursuer.decide
    """
    ex, ey = obs["evader"]
    size = obs["size"]
    return min(ex, ey, size - 1 - ex, size - 1 - ey) <= EDGE_MARGIN
