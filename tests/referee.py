"""An independent reading of the pursuit rules (README, "The two tasks: rules"), used to check traces.

Written from the spec, not from ``plugins/pursuit/rules.py``: it imports
nothing from the engine, so a rule misread in one place shows up as a
disagreement with the other.
"""
import json

KEYS = {
    "game": {"type", "task", "game", "seed", "size", "forbidden", "pursuers", "evader", "agent", "evader_policy"},
    "pursuers": {"type", "game", "step", "proposed", "positions", "illegal", "functions"},
    "evader": {"type", "game", "step", "position"},
    "end": {"type", "game", "outcome", "steps", "violations"},
}


def dist(a, b):
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def inside(c, size):
    return 0 <= c[0] < size and 0 <= c[1] < size


def greedy_choice(evader, pursuers, size, forbidden):
    x, y = evader
    options = [[x, y], [x + 1, y], [x - 1, y], [x, y + 1], [x, y - 1]]
    options = [c for c in options if inside(c, size) and c not in pursuers and c not in forbidden]
    return max(options, key=lambda c: (min(dist(c, p) for p in pursuers),
                                       sum(dist(c, p) for p in pursuers), -options.index(c)))


class TraceError(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise TraceError(msg)


def check_trace(path, evader_policy="greedy"):
    """Replays every game of a trace; returns the list of end records."""
    records = [json.loads(line) for line in open(path, encoding="utf-8")]
    ends, i = [], 0
    while i < len(records):
        i, end = _check_game(records, i, evader_policy)
        ends.append(end)
    return ends


def _check_game(records, i, policy):
    head = records[i]
    # an emergency in force adds its name and parameters; its closed cells are in "forbidden"
    check(head["type"] == "game" and KEYS["game"] <= set(head) <= KEYS["game"] | {"emergency"},
          f"bad game record {head}")
    size, forb = head["size"], head["forbidden"]
    pursuers, evader = head["pursuers"], head["evader"]
    check(all(dist(p, evader) >= 3 for p in pursuers), "start too close")
    check(len({tuple(c) for c in pursuers + [evader]}) == 4, "start cells not distinct")
    steps = violations = 0
    outcome = None
    i += 1
    while outcome is None:
        rec = records[i]
        check(rec["type"] == "pursuers" and KEYS["pursuers"] <= set(rec) <= KEYS["pursuers"] | {"selections"},
              f"bad pursuers record {rec}")
        for sel in rec.get("selections", []):
            check({"stage", "chosen", "oracle"} <= set(sel) and sel["chosen"] in rec["functions"],
                  f"bad selection {sel}")
        steps += 1
        check(rec["step"] == steps, "step numbers out of order")
        moved = []
        for src, prop, pos, bad in zip(pursuers, rec["proposed"], rec["positions"], rec["illegal"]):
            legal = (isinstance(prop, list) and len(prop) == 2 and inside(prop, size)
                     and dist(src, prop) <= 2 and prop not in forb and prop != evader)
            check(bad == (not legal), f"step {steps}: illegal flag wrong for {src}->{prop}")
            check(pos == (prop if legal else src), f"step {steps}: position wrong")
            violations += not legal
            moved.append(pos)
        pursuers = moved
        i += 1
        if violations > 7:
            outcome = "failure_with_violation"
        elif all(dist(p, evader) <= 1 for p in pursuers):
            outcome = "success"
        else:
            rec = records[i]
            check(rec["type"] == "evader" and set(rec) == KEYS["evader"], f"bad evader record {rec}")
            new = rec["position"]
            check(dist(new, evader) <= 1 and inside(new, size) and new not in pursuers
                  and new not in forb, f"step {steps}: illegal evader move {evader}->{new}")
            if policy == "greedy":
                check(new == greedy_choice(evader, pursuers, size, forb), f"step {steps}: not greedy")
            evader = new
            i += 1
            if all(dist(p, evader) <= 1 for p in pursuers):
                outcome = "success"
            elif steps >= 100:
                outcome = "failure_without_violation"
    end = records[i]
    check(end["type"] == "end" and set(end) == KEYS["end"], f"bad end record {end}")
    check((end["outcome"], end["steps"], end["violations"]) == (outcome, steps, violations),
          f"end {end} but replay says {outcome}, {steps}, {violations}")
    return i + 1, end
