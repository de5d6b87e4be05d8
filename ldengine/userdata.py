"""Where a user's own data lives: functions stored for emergencies, adapters trained here, and
the signing key that vouches for them (``ldengine.signing``).

Never the package or the checkout (those hold only what ships): ``$LDENGINE_DATA``, else
``$XDG_DATA_HOME/ldengine``, else ``~/.local/share/ldengine``. Caches that the engine can
rebuild live apart, under ``ldengine.cache.cache_root``, so that ``ldengine cache clean``
never removes a user's work or key.
"""
from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    """``$LDENGINE_DATA``, else ``$XDG_DATA_HOME/ldengine``, else ``~/.local/share/ldengine``."""
    env = os.environ.get("LDENGINE_DATA")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share") / "ldengine"
