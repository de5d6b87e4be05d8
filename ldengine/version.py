"""The engine's version (one place: setup.cfg reads it, manifests and results record it)."""
__version__ = "0.1.0"
