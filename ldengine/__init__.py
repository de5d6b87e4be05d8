"""ldengine: Logic Distillation as a sandboxed, plugin-based decision engine.

The Python API (``ldengine.api``, docs/python-api.md) is imported on first use, so
that ``import ldengine`` and ``ldengine --help`` stay light (no torch).
"""
from typing import TYPE_CHECKING, Callable

from ldengine.version import __version__

if TYPE_CHECKING:   # the API's real signatures for type checkers; at run time ``__getattr__`` loads them
    from ldengine.api import (decide, first_state, load_registry, make_agent, play, run_function,
                              select_function, stage_input)

API = ("load_registry", "play", "make_agent", "first_state", "decide", "stage_input", "select_function",
       "run_function")
__all__ = ["__version__", *API]


def __getattr__(name: str) -> Callable[..., object]:
    if name in API:
        from ldengine import api  # on first use: `import ldengine` stays light
        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
