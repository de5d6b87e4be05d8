"""What the plugins registered: tasks, function-base modules, evaders, agents.

``Registry.load()`` calls each plugin's hook implementation on its own, with a
``register`` callback that knows the plugin's name, so every item carries its
provenance and a plugin whose hook raises is reported, not fatal.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, cast

from ldengine.contracts import EmergencyKind, Evader, RuleLanguage, Task, TaskBase, adapt, require
from ldengine.errors import PluginError, UnknownNameError
from ldengine.plugins import PluginInfo, build_plugin_manager

if TYPE_CHECKING:
    import pluggy

MODULE_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*(/[A-Za-z0-9_][A-Za-z0-9_-]*)*\.py")   # no aliases of a path


@dataclass(frozen=True)
class Registered:
    """One named thing a plugin registered."""
    name: str
    obj: Any
    description: str
    plugin: str


@dataclass(frozen=True)
class ModuleSource:
    """A function-base module as source text; compiled by the sandbox, never imported."""
    task: str
    source: str
    filename: str
    plugin: str


@dataclass
class Registry:
    tasks: dict[str, Registered] = field(default_factory=dict)
    evaders: dict[str, Registered] = field(default_factory=dict)
    agents: dict[str, Registered] = field(default_factory=dict)
    students: dict[str, Registered] = field(default_factory=dict)
    emergencies: dict[str, Registered] = field(default_factory=dict)
    rule_languages: dict[str, Registered] = field(default_factory=dict)
    modules: list[ModuleSource] = field(default_factory=list)
    plugins: list[PluginInfo] = field(default_factory=list)
    pm: Any = None

    @classmethod
    def load(cls) -> "Registry":
        reg = cls()
        reg.pm, reg.plugins = build_plugin_manager()
        reg._collect("ldengine_register_tasks", reg._task_register)
        reg._collect("ldengine_register_evaders", lambda p: reg._named(reg.evaders, "evader", p, "policy"))
        reg._collect("ldengine_register_agents", lambda p: reg._named(reg.agents, "agent", p, "factory"))
        reg._collect("ldengine_register_students", lambda p: reg._named(reg.students, "student", p, "loader"))
        reg._collect("ldengine_register_functions", reg._module_register)
        reg._collect("ldengine_register_emergencies", reg._emergency_register)
        reg._collect("ldengine_register_rule_languages", reg._language_register)
        return reg

    def hook_order(self, hook: str) -> list:
        """``hook``'s implementations in the order the engine calls them: the built-in plugins' first
        (a third-party plugin never takes a name from a built-in one, whatever it asks), then, within
        each group, ``tryfirst`` ones, the others in the order they were registered, ``trylast``
        ones last (pluggy's own markers, honoured in their meaning)."""
        impls = getattr(self.pm.hook, hook).get_hookimpls()     # pluggy's: trylast..., others..., tryfirst...
        builtin = {p.name for p in self.plugins if p.origin == "built-in"}
        rank = {id(i): (i.plugin_name not in builtin, 0 if i.tryfirst else 2 if i.trylast else 1, n)
                for n, i in enumerate(impls)}
        return sorted(impls, key=lambda i: rank[id(i)])

    def call_one(self, hook: str, impl: pluggy.HookImpl, **kwargs: object) -> list:
        """One plugin's implementation of ``hook``, called through pluggy (its hook-call
        monitoring, ``pm.add_hookcall_monitoring``, sees the call)."""
        others = [i.plugin for i in getattr(self.pm.hook, hook).get_hookimpls() if i.plugin is not impl.plugin]
        return self.pm.subset_hook_caller(hook, remove_plugins=others)(**kwargs)

    def _collect(self, hook: str, make_register: Callable[[str], Callable]) -> None:
        for impl in self.hook_order(hook):
            try:
                self.call_one(hook, impl, register=make_register(impl.plugin_name))
            except Exception as exc:  # one plugin's failure is reported, not fatal
                self._mark_broken(impl.plugin_name, f"{hook}: {type(exc).__name__}: {exc}")

    def _mark_broken(self, plugin: str, message: str) -> None:
        """Record what failed; a plugin whose several hooks fail gets every message."""
        for info in self.plugins:
            if info.name == plugin:
                info.error = f"{info.error}; {message}" if info.error else message

    def _named(self, table: dict, kind: str, plugin: str, callable_as: str | None = None) -> Callable:
        """A ``register(name, obj, description)``; with ``callable_as``, ``obj`` must be callable
        (an evader's policy, an agent's factory, a student's loader)."""
        def register(name: str, obj: object, description: str = "") -> None:
            if not isinstance(name, str) or not name.isidentifier():
                raise PluginError(f"plugin {plugin!r} registered {kind} with invalid name {name!r}")
            if callable_as and not callable(obj):
                raise PluginError(f"plugin {plugin!r} registered {kind} {name!r} with a {callable_as} that is "
                                  f"not callable ({type(obj).__name__}; see ldengine.hookspecs)")
            if name in table:
                raise PluginError(f"plugin {plugin!r} registered {kind} {name!r}, "
                                  f"already registered by {table[name].plugin!r}")
            table[name] = Registered(name, obj, description, plugin)
        return register

    def _task_register(self, plugin: str) -> Callable:
        named = self._named(self.tasks, "task", plugin)

        def register(task: Task) -> None:
            require(task, Task, plugin, f"task {getattr(task, 'name', type(task).__name__)!r}")
            named(task.name, adapt(task), task.description)
        return register

    def _emergency_register(self, plugin: str) -> Callable:
        def register(kind: EmergencyKind) -> None:
            name = getattr(kind, "name", None)
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name):
                raise PluginError(f"plugin {plugin!r} registered an emergency with invalid name {name!r} "
                                  "(lowercase words joined by hyphens)")
            require(kind, EmergencyKind, plugin, f"emergency {name!r}")
            if name in self.emergencies:
                raise PluginError(f"plugin {plugin!r} registered emergency {name!r}, "
                                  f"already registered by {self.emergencies[name].plugin!r}")
            self.emergencies[name] = Registered(name, kind, getattr(kind, "summary", ""), plugin)
        return register

    def _language_register(self, plugin: str) -> Callable:
        def register(language: RuleLanguage) -> None:
            task = getattr(language, "task", None)
            require(language, RuleLanguage, plugin, f"rule language of {task!r}")
            task = str(task)
            if task in self.rule_languages:
                raise PluginError(f"plugin {plugin!r} registered a rule language for {task!r}, "
                                  f"already registered by {self.rule_languages[task].plugin!r}")
            self.rule_languages[task] = Registered(task, language, getattr(language, "covers", ""), plugin)
        return register

    def _module_register(self, plugin: str) -> Callable:
        def register(task: str, source: str, filename: str) -> None:
            if not isinstance(source, str):
                raise PluginError(f"plugin {plugin!r}: module {filename!r} source must be text")
            if not isinstance(filename, str) or not MODULE_PATH.fullmatch(filename):
                raise PluginError(f"plugin {plugin!r}: module path {filename!r} must be plain, as FOLDER/NAME.py "
                                  "(letters, digits, _ and -; no '.', '..', '//' or leading '/')")
            taken = next((m for m in self.modules if m.task == task and m.filename.casefold() == filename.casefold()),
                         None)
            if taken is not None:       # a later module of the same path would replace the first one's
                raise PluginError(f"plugin {plugin!r}: module {filename!r} of {task} is already registered by "
                                  f"{taken.plugin!r}; a plugin cannot replace another's module (name yours "
                                  f"after your plugin, e.g. {plugin.split('.')[-1]}/{filename.split('/')[-1]})")
            self.modules.append(ModuleSource(task, source, filename, plugin))
        return register

    def get(self, kind: str, name: str) -> Registered:
        table = getattr(self, kind)
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            singular = "emergency" if kind == "emergencies" else kind[:-1]
            raise UnknownNameError(f"unknown {singular} {name!r} (known: {known})")
        return table[name]

    def default_task(self) -> str:
        """The task a command plays when the user names none: the first one registered (the
        built-in plugins register first, in ``plugins.DEFAULT_PLUGINS`` order)."""
        if not self.tasks:
            raise UnknownNameError("no task is registered (ldengine plugins shows what loaded)")
        return next(iter(self.tasks))

    def task(self, name: str) -> TaskBase:
        """The registered task ``name``, with ``TaskBase``'s defaults for what it lacks."""
        return cast(TaskBase, self.get("tasks", name).obj)

    def policy(self, evader: str | None) -> Evader | None:
        """The registered evader ``evader``'s policy; None for no evader (a task without one)."""
        return None if evader is None else self.get("evaders", evader).obj

    def modules_for(self, task: str) -> list[ModuleSource]:
        return [m for m in self.modules if m.task == task]


def default_task() -> str:
    """The first task registered (``Registry.default_task``), for a configuration made without
    a registry at hand; it loads the plugins."""
    return Registry.load().default_task()
