"""Built-in plugin: the pursuit task, its evader policies and its function base."""
from __future__ import annotations

from ldengine.hookspecs import hookimpl
from ldengine.taskkit import register_function_folder
from ldengine_plugins.pursuit import emergencies, evaders
from ldengine_plugins.pursuit.task import PursuitTask


@hookimpl
def ldengine_register_tasks(register):
    register(PursuitTask())


@hookimpl
def ldengine_register_evaders(register):
    register("greedy", evaders.greedy, "maximise distance to the nearest pursuer, then the sum")
    register("random", evaders.uniform, "a seeded uniformly random legal cell")


@hookimpl
def ldengine_register_functions(register):
    register_function_folder(register, "pursuit")


@hookimpl
def ldengine_register_emergencies(register):
    for kind in emergencies.KINDS:
        register(kind)


@hookimpl
def ldengine_register_rule_languages(register):
    from ldengine_plugins.pursuit.rule_program import PursuitRules
    register(PursuitRules())
