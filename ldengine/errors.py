"""Errors meant for people.

Every error a user can cause (a bad argument, a broken plugin, a manual entry
without its fields, code the sandbox refuses to compile) is an ``LDEngineError``
carrying a message written for them. ``ldengine.cli`` is the one place that turns
these into ``click.ClickException``; nothing else prints tracebacks at users.
"""


class LDEngineError(Exception):
    """Base of the errors whose message is meant for the user."""


class PluginError(LDEngineError):
    """A plugin registered something invalid; the message names the plugin."""


class ManualError(PluginError):
    """A function's docstring lacks a manual field or is malformed."""


class SandboxCompileError(LDEngineError):
    """Code was refused by the sandbox before it ran (syntax or policy)."""


class UnknownNameError(LDEngineError):
    """A task, agent, evader or function name that nothing registered."""
