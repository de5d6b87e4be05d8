"""Pieces every built-in task plugin shares: registering its function-base folder, and
playing a game generator (``task.game_steps``) with an agent's ``act``."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Generator, TypeVar

if TYPE_CHECKING:
    from ldengine.contracts import Agent

# The repository's function_base/ folder, installed under this name (setup.py).
FUNCTION_BASE_PACKAGE = "ldengine_function_base"

Result = TypeVar("Result")


def function_base_root() -> Path:
    """The built-in function base's folder: its modules, adapters, stored versions and
    emergencies (``function_base/`` in the repository)."""
    return Path(str(resources.files(FUNCTION_BASE_PACKAGE)))


def shipped(path: Path) -> bool:
    """Is ``path`` inside the built-in function base's folder (what ships with the package)?"""
    try:
        return Path(path).resolve().is_relative_to(function_base_root().resolve())
    except OSError:
        return False


def register_function_folder(register: Callable, task: str) -> None:
    """Hand every module of ``function_base/TASK/`` to ``register`` as text (never imported)."""
    folder = function_base_root() / task
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".py") and item.name != "__init__.py":
            register(task, item.read_text(encoding="utf-8"), f"{task}/{item.name}")


def play_through(agent: Agent, steps: Generator[object, tuple[object, list, list], Result]) -> Result:
    """Feed ``agent.act(state)`` (and the functions it used) to a game generator until it
    returns; its return value is the game's result."""
    state = next(steps)
    while True:
        action = agent.act(state)
        try:
            state = steps.send((action, list(getattr(agent, "last_functions", [])),
                                list(getattr(agent, "last_stages", []))))
        except StopIteration as done:
            return done.value


def selections_record(extra: list) -> dict:
    """The trace's ``"selections"`` key (one object per stage: candidates, chosen, oracle,
    probabilities) from what a game generator received beside the action; empty when the
    agent selects nothing."""
    stages = extra[0] if extra else []
    return {"selections": stages} if stages else {}
