"""Built-in plugin: the pursuit task, its evader policies and its function base."""
from __future__ import annotations

from importlib import resources

from ldengine.hookspecs import hookimpl
from plugins.pursuit import emergencies, evaders
from plugins.pursuit.task import PursuitTask


@hookimpl
def ldengine_register_tasks(register):
    register(PursuitTask())


@hookimpl
def ldengine_register_evaders(register):
    register("greedy", evaders.greedy, "maximise distance to the nearest pursuer, then the sum")
    register("random", evaders.uniform, "a seeded uniformly random legal cell")


@hookimpl
def ldengine_register_functions(register):
    folder = resources.files("function_base") / "pursuit"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".py") and item.name != "__init__.py":
            register("pursuit", item.read_text(encoding="utf-8"), f"pursuit/{item.name}")


@hookimpl
def ldengine_register_emergencies(register):
    for kind in emergencies.KINDS:
        register(kind)
