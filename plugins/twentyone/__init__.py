"""Built-in plugin: the 21 Points task and its function base."""
from __future__ import annotations

from ldengine.hookspecs import hookimpl
from ldengine.taskkit import register_function_folder
from ldengine_plugins.twentyone.task import TwentyOneTask


@hookimpl
def ldengine_register_tasks(register):
    register(TwentyOneTask())


@hookimpl
def ldengine_register_functions(register):
    register_function_folder(register, "twentyone")
