"""Built-in plugin: the 21 Points task and its function base."""
from __future__ import annotations

from importlib import resources

from ldengine.hookspecs import hookimpl
from plugins.twentyone.task import TwentyOneTask


@hookimpl
def ldengine_register_tasks(register):
    register(TwentyOneTask())


@hookimpl
def ldengine_register_functions(register):
    folder = resources.files("function_base") / "twentyone"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".py") and item.name != "__init__.py":
            register("twentyone", item.read_text(encoding="utf-8"), f"twentyone/{item.name}")
