"""ldengine: Logic Distillation as a sandboxed, plugin-based decision engine.

The Python API (``ldengine.api``, docs/python-api.md) is imported on first use, so
that ``import ldengine`` and ``ldengine --help`` stay light (no torch).
"""
from typing import Any

from ldengine.version import __version__

API = ("load_registry", "play", "make_agent", "first_state", "decide", "stage_input", "select_function",
       "run_function")
__all__ = ["__version__", *API]


def __getattr__(name: str) -> Any:
    if name in API:
        from ldengine import api  # on first use: `import ldengine` stays light
        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
