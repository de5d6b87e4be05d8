"""What a plugin's objects must have: one Protocol per kind of thing a plugin registers.

The hooks (``ldengine.hookspecs``) say when each is registered; these classes say
what the engine calls on it. Registration checks the required members
(``require``), so an object that lacks one fails when its plugin loads, with the
plugin and the member named, not deep inside a run. A task's optional members
(``plot``, ``game_steps``, ``with_emergency``, ...) have typed defaults in ``TaskBase``;
those of the other kinds are listed in each class's docstring.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from types import FunctionType, MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Protocol, cast, runtime_checkable

from ldengine.errors import PluginError

if TYPE_CHECKING:
    import random

    from ldengine.emergency.rule import Instance
    from ldengine.lexicon.tagging import Lexicon


@dataclass(frozen=True)
class Selection:
    """The student's choice among K options and its distribution over them."""
    index: int
    probabilities: list[float]


@runtime_checkable
class Student(Protocol):
    """A student backend (``ldengine_register_students``: its loader returns one): it
    selects among candidates (``select``) and writes text (``generate``: new functions,
    the text baselines' answers)."""
    name: str
    model_hash: str
    adapter_hash: str | None

    def select(self, prefix: str, query: str, options: list[str]) -> Selection: ...

    def select_batch(self, items: list[tuple[str, str, list[str]]]) -> list[Selection]: ...

    def generate(self, prompt: str, max_new_tokens: int = 256, temperature: float = 0.0,
                 seed: int = 0, num_return_sequences: int = 1) -> list[str]: ...

    def generate_batch(self, prompts: list[str], prefix: str = "", max_new_tokens: int = 48,
                       stop: Callable[[str], bool] | None = None, chat: bool = True,
                       temperature: float = 0.0, seed: int = 0) -> list[str]: ...


class Agent(Protocol):
    """What an agent factory (``ldengine_register_agents``) returns. Optional:
    ``act_batch(states)`` (games in lockstep), ``last_functions`` and ``last_stages``
    (what the last step ran, for traces)."""

    def act(self, state: Any) -> object: ...

    def stats(self) -> dict: ...


class Evader(Protocol):
    """An evader policy (``ldengine_register_evaders``): one of ``legal`` cells."""

    def __call__(self, legal: list, movers: list, rng: random.Random) -> object: ...


class Task(Protocol):
    """What a registered task (``ldengine_register_tasks``) must have; registration checks
    these members. The optional ones, and what the engine assumes when a task lacks one, are
    ``TaskBase``'s: subclass it, or register any object with these members and the engine sees
    it through ``adapt`` with ``TaskBase``'s defaults."""
    name: str
    description: str
    pipeline: list[str]
    rules: str

    def play(self, agent: Agent, game_index: int, seed: int, evader: Evader | None, emit: Callable[[dict], None],
             agent_name: str = "", evader_name: str = "", **options: object) -> object: ...

    def summarize(self, results: list) -> dict: ...

    def summarize_state(self, state: Any) -> str: ...


# The paper's outcomes (Table 1), a task's when it names none of its own (``outcome_columns``).
OUTCOMES = (("success", "Success"), ("failure_without_violation", "Failure without Violation"),
            ("failure_with_violation", "Failure with Violation"))


class _Recorded(Protocol):
    """A game's result that has its own ``record()`` (its row, for ``TaskBase.record``)."""

    def record(self) -> Mapping[str, object]: ...


class TaskBase:
    """A task as the engine sees it: the required members (``Task``) and typed defaults for the
    optional ones, as ``llm``'s ``Model`` declares ``can_stream = False``. A member that is None
    is a feature the task lacks (no figures, no lockstep play, no new rules...)."""
    name: str
    description: str
    pipeline: list[str]
    play: Callable[..., object]         # (agent, game_index, seed, evader, emit, agent_name, evader_name, **options)
    summarize: Callable[[list], dict]   # the games' results -> the run's summary
    summarize_state: Callable[[Any], str]   # a state in words, for the student's prompt
    unit: str = "game"                  # what summaries call one game ("hand")
    evader: str | None = None           # the registered evader a run plays against when the user names none
    uses_evader: bool = True            # False: the task's games have no opponent to name in summaries
    size: int | None = None             # the board's side, passed to an emergency kind's ``params``
    starts: Mapping[str, dict] = MappingProxyType({})    # named start positions (``eval --start``)
    emergency: Instance | None = None   # the new rule in force (``with_emergency``'s instance), if any
    outcome_columns: tuple[tuple[str, str], ...] = OUTCOMES     # (outcome key, column label)
    eval_headers: Sequence[str] = ()    # ``eval_cells``' column labels
    eval_note: str | None = None        # the table's note (default: Wilson intervals, average steps)
    # a folder of adapters the task's plugin ships (``NAME/manifest.json`` each): found like the package's,
    # vouched for by the installed plugin, their weights checked against the manifest's hash when loaded
    adapters: Path | None = None
    # optional callables, None when the task lacks the feature
    # a game as a generator (states out, (action, functions, stage records) in): lockstep play, verification
    game_steps: Callable[..., Generator[object, tuple[object, list, list], object]] | None = None
    with_emergency: Callable[[Instance], TaskBase] | None = None    # the same task under a new rule
    custom_emergency: Callable[..., CustomRule] | None = None  # a rule of the user's own, as an instance
    rule_refusal: Callable[[str], str | None] | None = None    # why words cannot be a rule of the task (None: they can)
    rule_language: Callable[..., list] | None = None           # generated rules in the task's rule language
    plot: Callable[..., None] | None = None                    # (result, path, title): a game's figure
    trace_result: Callable[[list], object] | None = None       # a trace's records back to a game's result
    summary_lines: Callable[[dict], list[str]] | None = None   # a run summary's lines
    eval_metrics: Callable[[list], dict] | None = None         # eval's own figures (default: average steps)
    eval_cells: Callable[[dict], list[str]] | None = None      # a table row's own cells
    eval_reference: Callable[[], dict] | None = None           # a reference row (e.g. an exact optimum)
    distill_checks: Callable[..., list] | None = None          # checks of a function base the teacher wrote

    def record(self, result: object) -> dict:
        """A game's result (what ``play`` returned) as its row of eval's ``games.jsonl``: at least
        ``outcome`` (a key of ``outcome_columns``) and ``violations``; the default figures read
        ``steps``. Default: the result's own ``record()``, else its dataclass fields."""
        if callable(getattr(result, "record", None)):
            return dict(cast(_Recorded, result).record())
        if dataclasses.is_dataclass(result) and not isinstance(result, type):
            return dataclasses.asdict(result)
        raise PluginError(f"task {self.name!r}: a game's result ({type(result).__name__}) has no record() and is "
                          "no dataclass; give the task a record(result) method that returns its row")

    @property
    def rules(self) -> str:
        """The rules in words, as the models read them. Required: a task that lacks them is refused
        when its plugin loads (``require`` finds no ``rules``), not deep inside a run."""
        raise AttributeError("rules")

    @property
    def stages(self) -> Mapping[str, str]:
        """Stage -> what it decides, for the teacher's prompt."""
        return {}

    @property
    def fact_families(self) -> tuple:
        """Fact families of the task's own, read in ``When:`` fields."""
        return ()

    @property
    def text(self) -> Any:
        """The text protocol of the agents that answer in words (``student``), or None."""
        return None

    @property
    def kd(self) -> Any:
        """The protocol of the ``kd`` agent (moves as text), or None."""
        return None

class TaskAdapter:
    """A registered task that does not subclass ``TaskBase``, seen with its defaults: what the
    task has is its own, what it lacks is ``TaskBase``'s; a task it derives under a new rule
    (``with_emergency``) is seen the same way."""

    def __init__(self, task: object):
        self._task = task

    def __getattr__(self, name: str) -> object:
        if name.startswith("__") or name == "_task":     # copy and pickle look these up before __init__
            raise AttributeError(name)
        try:
            value = getattr(self._task, name)
        except AttributeError:
            default = inspect.getattr_static(TaskBase, name)    # AttributeError for a member no task has
            # a property or method of the defaults works on the adapted task (``self``)
            return default.__get__(self, TaskBase) if isinstance(default, (property, FunctionType)) else default
        if name == "with_emergency" and callable(value):
            return lambda emergency: adapt(value(emergency))
        return value

    def __repr__(self) -> str:
        return repr(self._task)


def adapt(task: object) -> TaskBase:
    """``task`` as the engine sees it: itself when it subclasses ``TaskBase``, else through a
    ``TaskAdapter`` that supplies the defaults."""
    return task if isinstance(task, TaskBase) else cast(TaskBase, TaskAdapter(task))


def emergency_params(kind: EmergencyKind, task: TaskBase, seed: int) -> dict:
    """An emergency kind's parameters drawn with ``seed``, for ``task``'s board when it has a size."""
    return kind.params(seed) if task.size is None else kind.params(seed, task.size)


class EmergencyKind(Protocol):
    """A kind of new rule (``ldengine_register_emergencies``). ``stage`` is the new
    function's stage, put into the pipeline right after ``after``; ``split`` is "eval"
    (held out of training) or "train". Optional: ``example`` (shown in the writing
    prompt), ``summary``."""
    name: str
    task: str
    stage: str
    after: str
    split: str

    def params(self, seed: int, size: int = 21) -> dict: ...

    def describe(self, params: dict) -> str: ...

    def allows(self, params: dict, piece: str, src: object, dst: object) -> bool: ...

    def function_name(self) -> str: ...

    def header(self, params: dict, name: str | None = None) -> str: ...

    def cases(self, params: dict, seed: int = 0) -> list: ...

    def properties(self, given: object, out: object) -> list[str]: ...

    def reference(self, params: dict, name: str | None = None) -> str: ...


class CustomRule(EmergencyKind, Protocol):
    """A rule of the user's own (a task's ``custom_emergency``): its words (``text``), the user's
    example moves (``(src, dst)`` pairs) and the registered kind it reads like (``like``, or None);
    ``examples_given``: known by more than its words; ``confirmed(forbidden_moves, allowed_moves)``:
    the rule restated with the moves of a board map the user confirmed."""

    @property
    def text(self) -> str: ...

    @property
    def allowed(self) -> Sequence[tuple]: ...

    @property
    def forbidden(self) -> Sequence[tuple]: ...

    @property
    def like(self) -> EmergencyKind | None: ...

    @property
    def examples_given(self) -> bool: ...

    def confirmed(self, forbidden_moves: list, allowed_moves: list) -> CustomRule: ...


class RuleLanguage(Protocol):
    """A task's rule language (``ldengine_register_rule_languages``, read by ``ldengine.rulelang``).
    Programs are nested tuples. ``primitives``: name -> per parameter, None (a number the
    rule's text states) or the values it may take; ``combinators``: name -> how many programs
    it joins; ``max_depth`` bounds nesting. ``frames``: (template, forbids) sentences around the
    region (``{r}``; ``{_}`` any words), ``forbids`` False for a region of *allowed* moves;
    ``openers``: templates of words that may open the region itself (``the following holds: {r}``);
    ``connectives``: combinator -> templates joining its programs' words (``{a}``, ``{b}``).
    ``notation(clause)``: the primitives a condition the clause writes in the language's symbols
    denotes exactly (``ldengine.notation`` finds and evaluates such conditions), else ().
    ``lexicon``: the language's words (``ldengine.lexicon.Lexicon``: what words mean in that
    notation), read before the student; None for a language without one."""
    task: str
    stage: str
    primitives: dict[str, tuple]
    combinators: dict[str, int]
    frames: tuple
    openers: tuple
    connectives: dict[str, tuple]
    max_depth: int
    max_primitives: int
    covers: str
    lacks: str
    lexicon: Lexicon | None

    def __hash__(self) -> int: ...       # readings of a language are cached per language

    def manual(self) -> str: ...

    def english(self, program: tuple) -> str: ...

    def denotation(self, program: tuple) -> Any: ...

    def refusal(self, program: tuple) -> str | None: ...

    def kind(self, program: tuple, text: str) -> EmergencyKind: ...

    def picture(self, program: tuple) -> str: ...

    def outside(self, text: str) -> str | None: ...

    def examples(self, n: int, seed: int = 0, split: str = "train", wording: str | None = None) -> list: ...

    def clause_examples(self, n: int, seed: int = 0) -> list: ...

    def words(self, program: tuple) -> tuple: ...

    def notation(self, clause: str) -> tuple: ...


def task_evader(task: TaskBase, choice: str | None = None) -> str | None:
    """The evader ``task``'s games are played against: the user's ``choice`` when given, else
    the task's own ``evader``, else None (a task without one)."""
    return choice or task.evader or None


def members(contract: type) -> list[str]:
    """The required members of ``contract``: its annotated attributes and its methods."""
    methods = [n for n, v in vars(contract).items() if callable(v) and (n == "__call__" or not n.startswith("_"))]
    return [*getattr(contract, "__annotations__", {}), *methods]


def missing(obj: object, contract: type) -> list[str]:
    """The members of ``contract`` that ``obj`` lacks (a method must be callable)."""
    methods = {n for n, v in vars(contract).items() if callable(v)}
    return [n for n in members(contract)
            if not hasattr(obj, n) or (n in methods and not callable(getattr(obj, n)))]


def require(obj: object, contract: type, plugin: str, what: str) -> None:
    """Refuse ``obj`` (registered by ``plugin`` as ``what``) when it lacks a member."""
    lacking = missing(obj, contract)
    if lacking:
        raise PluginError(f"plugin {plugin!r} registered {what} without {', '.join(lacking)}: "
                          f"a {contract.__name__} needs {', '.join(members(contract))} "
                          f"(see ldengine.contracts.{contract.__name__})")
