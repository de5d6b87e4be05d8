"""ldengine-pursuit-extras: a lookahead evader and a function-base module for pursuit.

ldengine finds this module through the entry point ``pursuit_extras`` in the group
``ldengine`` and calls the hooks below, exactly as it calls its built-in plugins.
Function-base modules are handed over as text: ldengine compiles them in its
sandbox and never imports them.
"""
from importlib import resources

import pluggy

hookimpl = pluggy.HookimplMarker("ldengine")

REACH = 2


def lookahead(legal, pursuers, rng):
    """The evader's legal cell that is farthest from the pursuers after their best reply
    (each moves up to 2 cells straight toward it): nearest pursuer first, then the sum."""
    def after_reply(cell):
        dists = []
        for p in pursuers:
            d = abs(p[0] - cell[0]) + abs(p[1] - cell[1])
            dists.append(max(d - REACH, 1) if d > 1 else d)
        return (min(dists), sum(dists))
    best = legal[0]
    for cell in legal[1:]:
        if after_reply(cell) > after_reply(best):
            best = cell
    return best


@hookimpl
def ldengine_register_evaders(register):
    register("lookahead", lookahead, "farthest from the pursuers after their best reply (pursuit_extras)")


@hookimpl
def ldengine_register_functions(register):
    folder = resources.files(__name__) / "functions"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".py"):
            register("pursuit", item.read_text(encoding="utf-8"), f"pursuit-extras/{item.name}")
