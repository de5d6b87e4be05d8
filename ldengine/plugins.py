"""The plugin manager: built-in plugins first, then third-party entry points.

Built-ins register by module name through the same hooks a third party uses.
Third-party plugins come from the setuptools entry-point group ``ldengine``;
each loads inside its own try/except so one broken plugin is reported by
``ldengine plugins`` instead of locking users out. (``pm.load_setuptools_entrypoints``
would stop at the first failure, so the loop is written here.)
Set ``LDENGINE_LOAD_PLUGINS`` to a comma-separated list of entry-point names to
load only those (empty: none); set ``LDENGINE_TRACE_PLUGINS`` (to anything but empty or 0)
to have every hook call written to standard error with the plugins it calls (through
pluggy's hook-call monitoring), and any failure, as datasette's ``DATASETTE_TRACE_PLUGINS`` does.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from collections.abc import Mapping, Sequence

import pluggy

from ldengine import hookspecs
from ldengine.errors import UnknownNameError

DEFAULT_PLUGINS = ("ldengine_plugins.pursuit", "ldengine_plugins.twentyone", "ldengine_plugins.agents", "ldengine_plugins.openai_student")
ENTRY_POINT_GROUP = "ldengine"


@dataclass
class PluginInfo:
    """Where a loaded (or broken) plugin came from."""
    name: str
    origin: str            # "built-in" or "distribution-name version"
    error: str | None = None
    hooks: list[str] = field(default_factory=list)


def _third_party_entry_points() -> list:
    """The installed entry points, or those LDENGINE_LOAD_PLUGINS names (a name that no
    installed plugin has is a mistake to report, not a plugin to skip quietly)."""
    allowed = os.environ.get("LDENGINE_LOAD_PLUGINS")
    names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    found = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    unknown = sorted((names or set()) - {ep.name for ep in found})
    if unknown:
        installed = ", ".join(sorted({ep.name for ep in found})) or "none"
        raise UnknownNameError(f"LDENGINE_LOAD_PLUGINS names {', '.join(map(repr, unknown))}, which no installed "
                               f"plugin provides (installed: {installed}; the built-in plugins always load)")
    return [ep for ep in found if names is None or ep.name in names]


def _origin(ep) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist else f"entry point {ep.value}"


def build_plugin_manager() -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """A plugin manager with every plugin that loaded, and what happened to each."""
    pm = pluggy.PluginManager("ldengine")
    pm.add_hookspecs(hookspecs)
    if os.environ.get("LDENGINE_TRACE_PLUGINS", "") not in ("", "0"):
        pm.add_hookcall_monitoring(_trace_before, _trace_after)
    infos = []
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
        infos.append(PluginInfo(name, "built-in"))
    for ep in _third_party_entry_points():
        info = PluginInfo(ep.name, _origin(ep))
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must not lock users out
            info.error = f"{type(exc).__name__}: {exc}"
        infos.append(info)
    _drop_misspelt(pm, infos)
    for info in infos:
        plugin = pm.get_plugin(info.name)
        if plugin is not None:
            info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    return pm, infos


def _trace_before(hook_name: str, hook_impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, object]) -> None:
    sys.stderr.write(f"ldengine plugins: {hook_name} -> {', '.join(i.plugin_name for i in hook_impls) or 'none'}\n")


def _trace_after(outcome: pluggy.Result[object], hook_name: str, hook_impls: Sequence[pluggy.HookImpl],
                 kwargs: Mapping[str, object]) -> None:
    failed = outcome.exception
    if failed is not None:
        sys.stderr.write(f"ldengine plugins: {hook_name} failed: {type(failed).__name__}: {failed}\n")


def _drop_misspelt(pm: pluggy.PluginManager, infos: list[PluginInfo]) -> None:
    """Like pytest's ``check_pending``, but a plugin with an unknown hook is
    unregistered and reported rather than stopping the engine."""
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin)
            pm.unregister(exc.plugin)
            for info in infos:
                if info.name == name:
                    info.error = str(exc)
