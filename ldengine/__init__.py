"""ldengine: Logic Distillation as a sandboxed, plugin-based decision engine."""

__version__ = "0.1.0"
