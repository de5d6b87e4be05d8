"""What a plugin's objects must have: one Protocol per kind of thing a plugin registers.

The hooks (``ldengine.hookspecs``) say when each is registered; these classes say
what the engine calls on it. Registration checks the required members
(``require``), so an object that lacks one fails when its plugin loads, with the
plugin and the member named, not deep inside a run. Members the engine looks up
with ``getattr`` (a task's ``plot``, ``game_steps``, ``with_emergency``, ...) are
optional and listed in each class's docstring.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

from ldengine.errors import PluginError


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

    def act(self, state: Any) -> Any: ...

    def stats(self) -> dict: ...


class Evader(Protocol):
    """An evader policy (``ldengine_register_evaders``): one of ``legal`` cells."""

    def __call__(self, legal: list, pursuers: list, rng: Any) -> Any: ...


class Task(Protocol):
    """A decision task (``ldengine_register_tasks``). Optional members the engine uses
    when present: ``stages`` (stage -> what it decides, for the teacher's prompt),
    ``game_steps`` (a game as a generator: lockstep play, verification inputs),
    ``with_emergency``/``emergency``/``custom_emergency`` (new rules), ``starts``
    (named start sets), ``plot``/``trace_result`` (figures), ``kd`` and ``text``
    (text-answering baselines), ``size``, ``unit``, ``uses_evader``, ``evader`` (the name
    of the registered evader its games are played against when the user names none, e.g.
    pursuit's ``"greedy"``; absent or None: none, and ``play`` gets None; ``task_evader``),
    ``summary_lines`` and ``eval_*`` (how results are worded)."""
    name: str
    description: str
    pipeline: list[str]
    rules: str

    def play(self, agent: Agent, game_index: int, seed: int, evader: Evader | None, emit: Callable[[dict], None],
             agent_name: str = "", evader_name: str = "", **options: Any) -> Any: ...

    def summarize(self, results: list) -> dict: ...

    def summarize_state(self, state: Any) -> str: ...


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

    def allows(self, params: dict, piece: str, src: Any, dst: Any) -> bool: ...

    def function_name(self) -> str: ...

    def header(self, params: dict, name: str | None = None) -> str: ...

    def cases(self, params: dict, seed: int = 0) -> list: ...

    def properties(self, given: Any, out: Any) -> list[str]: ...

    def reference(self, params: dict) -> str: ...


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
    lexicon: Any

    def manual(self) -> str: ...

    def english(self, program: Any) -> str: ...

    def denotation(self, program: Any) -> Any: ...

    def refusal(self, program: Any) -> str | None: ...

    def kind(self, program: Any, text: str) -> Any: ...

    def picture(self, program: Any) -> str: ...

    def outside(self, text: str) -> str | None: ...

    def examples(self, n: int, seed: int = 0, split: str = "train", wording: str | None = None) -> list: ...

    def clause_examples(self, n: int, seed: int = 0) -> list: ...

    def words(self, program: Any) -> tuple: ...

    def notation(self, clause: str) -> tuple: ...


def task_evader(task: Any, choice: str | None = None) -> str | None:
    """The evader ``task``'s games are played against: the user's ``choice`` when given, else
    the task's own ``evader`` (pursuit: greedy), else None (a task without one, twentyone)."""
    return choice or getattr(task, "evader", None) or None


def members(contract: type) -> list[str]:
    """The required members of ``contract``: its annotated attributes and its methods."""
    methods = [n for n, v in vars(contract).items() if callable(v) and (n == "__call__" or not n.startswith("_"))]
    return [*getattr(contract, "__annotations__", {}), *methods]


def missing(obj: Any, contract: type) -> list[str]:
    """The members of ``contract`` that ``obj`` lacks (a method must be callable)."""
    methods = {n for n, v in vars(contract).items() if callable(v)}
    return [n for n in members(contract)
            if not hasattr(obj, n) or (n in methods and not callable(getattr(obj, n)))]


def require(obj: Any, contract: type, plugin: str, what: str) -> None:
    """Refuse ``obj`` (registered by ``plugin`` as ``what``) when it lacks a member."""
    lacking = missing(obj, contract)
    if lacking:
        raise PluginError(f"plugin {plugin!r} registered {what} without {', '.join(lacking)}: "
                          f"a {contract.__name__} needs {', '.join(members(contract))} "
                          f"(see ldengine.contracts.{contract.__name__})")
