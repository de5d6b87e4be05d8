"""The Python API: what ``from ldengine import ...`` gives (docs/python-api.md).

    from ldengine import (load_registry, play, make_agent, first_state, decide, stage_input,
                          select_function, run_function)

``play`` is ``ldengine run`` as a function; ``make_agent``, ``first_state``, ``decide``,
``stage_input`` and ``select_function`` look inside one decision step; ``run_function`` runs code in
the isolated sandbox. Every function runs in the sandbox, as from the command line.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

from ldengine.errors import LDEngineError, SandboxCompileError
from ldengine.loop import Decision, StageRecord, decide_batch
from ldengine.registry import Registry
from ldengine.runner import RunConfig, RunOutcome, build_agent, run_games
from ldengine.sandbox import IsolatedSandbox, Limits, SandboxResult, compile_module
from ldengine.sandbox.result import COMPILE_ERROR, error_text

if TYPE_CHECKING:
    from ldengine.contracts import Agent
    from ldengine.functionbase import FunctionBase
    from ldengine.loop import CandidateProvider, Selector


class SelectingAgent(Protocol):
    """An agent that selects functions (``expert``, ``ld``: a ``LoopAgent``), as ``_selecting`` checks it."""
    pipeline: list[str]
    base: FunctionBase
    provider: CandidateProvider
    selector: Selector

    def adopted(self) -> set: ...


def load_registry() -> Registry:
    """Every installed plugin's tasks, functions, evaders, agents, student backends and emergencies."""
    return Registry.load()


def play(task: str | None = None, agent: str = "expert", games: int = 1, seed: int = 0, *,
         evader: str | None = None, emergency: str | None = None, trace: str | None = None,
         registry: Registry | None = None, **options: object) -> RunOutcome:
    """Play ``games`` seeded games (game i: seed ``seed + i``) as ``ldengine run`` does.

    ``task`` None: the first task registered; ``evader`` None: the task's own (its
    ``evader``; none for a task without one).

    ``outcome.summary`` holds the summary keys (``success``, ``avg_steps_success``, ...),
    ``outcome.results`` each game's result. ``options`` go to the agent as the command
    line's do (``student``, ``adapter``, ``k``, ``dtype``, ``device``, ``log``)."""
    cfg = RunConfig(task, agent, games, seed, evader, trace, progress=False, options=options, emergency=emergency)
    return run_games(registry or load_registry(), cfg)


def make_agent(task: str | None = None, agent: str = "expert", registry: Registry | None = None,
               **options: object) -> Agent:
    """An agent of ``task`` (None: the first task registered) with its function base
    (``agent.base``), as ``play`` builds it."""
    registry = registry or load_registry()
    return build_agent(registry, registry.task(task or registry.default_task()), agent, options)[0]


def first_state(task: str | None = None, seed: int = 0, registry: Registry | None = None) -> object:
    """The first state an agent decides on in game ``seed`` of ``task`` (None: the first task
    registered), as plain data."""
    registry = registry or load_registry()
    game = registry.task(task or registry.default_task())
    if game.game_steps is None:
        raise LDEngineError(f"task {game.name!r} does not play its games step by step (no game_steps)")
    steps = game.game_steps(0, seed, lambda *args: None, lambda record: None)
    state = next(steps)
    steps.close()
    return state


def decide(agent: Agent, state: object) -> Decision:
    """One decision step of ``agent`` on ``state``: per stage the function chosen and its
    output (``decision.stages``), and the action (``decision.action``, None if a stage failed)."""
    _selecting(agent)
    loop = cast(SelectingAgent, agent)      # _selecting checked its members
    return decide_batch([state], loop.pipeline, loop.base, loop.provider, loop.selector, loop.adopted())[0]


def stage_input(agent: Agent, stage: str, state: object) -> object:
    """What ``stage`` receives when ``agent`` decides on ``state``: the state itself for the
    pipeline's first stage, else the output of the stages before it, each chosen and run as
    ``decide`` runs them (a decide stage gets the state with what the stages before it added,
    e.g. each piece's legal moves). A stage that fails on the way is an error naming it."""
    at = _stage_index(agent, stage)
    if at == 0:
        return state
    loop = cast(SelectingAgent, agent)      # _stage_index checked its members
    before = decide_batch([state], loop.pipeline[:at], loop.base, loop.provider, loop.selector,
                          loop.adopted())[0]
    failed = [s for s in before.stages if not s.result.ok and s.stage not in loop.adopted()]
    if failed:
        raise LDEngineError(f"stage {failed[0].stage} failed before {stage} ({failed[0].chosen}: "
                            f"{failed[0].result.error})")
    last = before.stages[-1]
    return last.result.value if last.result.ok else last.state       # a failed adopted stage passes its input on


def select_function(agent: Agent, stage: str, state: object) -> StageRecord:
    """The function ``agent`` selects at ``stage`` for ``state``, the stage's input (for a
    game's state, ``stage_input(agent, stage, state)`` gives it): ``.chosen``, its
    ``.candidates``, the ``.oracle``'s choice and the chosen function's output, run in the
    sandbox (``.result``)."""
    _stage_index(agent, stage)
    loop = cast(SelectingAgent, agent)      # _stage_index checked its members
    return decide_batch([state], [stage], loop.base, loop.provider, loop.selector)[0].stages[0]


def run_function(source: str, name: str, *args: object, timeout: float = 2.0,
                 memory_mb: int = 256) -> SandboxResult:
    """``name(*args)`` of the module ``source`` in an isolated worker (``ldengine sandbox run``):
    a ``SandboxResult`` (``.ok``, ``.value``, ``.error``), never an exception from the code."""
    try:
        module = compile_module(source, filename="<run_function>", load=False)    # loads only in the worker
    except SandboxCompileError as exc:
        return SandboxResult(name, error_type=COMPILE_ERROR, error=error_text(COMPILE_ERROR, str(exc)))
    with IsolatedSandbox(Limits(wall_s=timeout, cpu_s=timeout, memory_mb=memory_mb)) as box:
        return box.call(module, name, *args)


def _stage_index(agent: Agent, stage: str) -> int:
    _selecting(agent)
    loop = cast(SelectingAgent, agent)      # _selecting checked its members
    if stage not in loop.pipeline:
        raise LDEngineError(f"no stage {stage!r} in the agent's pipeline ({', '.join(loop.pipeline)})")
    return loop.pipeline.index(stage)


def _selecting(agent: Agent) -> None:
    if not all(hasattr(agent, key) for key in ("provider", "selector", "pipeline", "base")):
        raise LDEngineError(f"agent {getattr(agent, 'name', agent)!r} does not select functions "
                            "(it answers in text); use an agent such as expert or ld")
