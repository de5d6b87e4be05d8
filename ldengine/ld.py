"""Logic Distillation's learned selection: a retriever proposes the top-K
functions for a stage, the student picks one (Eq. 3 of the paper).

The prompt has a fixed prefix (task rules and stage list: its key/value cache
is reused) and a short per-stage part (stage, state summary, the K options).
Training examples for the student are built here too, from expert rollouts, so
training and play see exactly the same text.
"""
from __future__ import annotations

import hashlib
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, cast

from tqdm.auto import tqdm

from ldengine.contracts import TaskBase
from ldengine.adapters import adapter_misfit, find_adapter
from ldengine.agents import AgentContext, LoopAgent, expert_agent
from ldengine.cache import read_json
from ldengine.conditions import Readings, called_for
from ldengine.emergency.adopt import adopt
from ldengine.emergency.rule import with_stage
from ldengine.functionbase import FunctionBase
from ldengine.lexical import LexicalSelector
from ldengine.loop import FirstSelector, Selector
from ldengine.manual import ManualEntry
from ldengine.models.base import dtype_identity
from ldengine.retriever import Retriever, build_query

if TYPE_CHECKING:
    from ldengine.contracts import Evader, Student
    from ldengine.emergency.rule import Instance
    from ldengine.emergency.write import Written

DEFAULT_K = 5


def prompt_prefix(task: TaskBase) -> str:
    """The fixed part of every selection prompt for a task."""
    stages = "\n".join(f"- {stage}: {text}" for stage, text in task.stages.items())
    return (f"Rules: {task.rules}\n"
            f"A decision step runs these stages in order, one function each:\n{stages}\n"
            "Choose the function that performs the given stage; where several do, the one whose "
            "use-when fits the state.\n")


def stage_query(task: TaskBase, stage: str, state: object, base: FunctionBase | None = None) -> str:
    """The per-stage text: which stage (the prefix says what each does) and what the state holds.

    Kept short on purpose: on a 2-core CPU the student reads about 400 tokens
    a second, and this part and the options are read for every selection.
    """
    return f"Stage: {stage}\nState: {state_words(task, stage, state, base)}\n"


def state_words(task: TaskBase, stage: str, state: object, base: FunctionBase | None = None) -> str:
    """What the stage's input holds: the task's summary, then each fact the base declares for the
    stage (``fact_`` defs, the task's and its plugins') as its sentence and yes or no."""
    facts = base.fact_values(stage, state) if base is not None else []
    return "; ".join([task.summarize_state(state)] + [fact_line(f.sentence, v) for f, v in facts])


def fact_line(sentence: str, holds: bool) -> str:
    """A fact as a query states it."""
    return f"{sentence}: {'yes' if holds else 'no'}"


def option_text(entry: ManualEntry) -> str:
    """One candidate as the student sees it: its name, its manual's stage and summary, and,
    for one of a stage's alternatives, when to use it (its manual's When: field)."""
    return option_line(entry.name, entry.stage, entry.summary, entry.when)


def option_line(name: str, stage: str, summary: str, when: str = "") -> str:
    """``option_text`` from its parts (synthetic alternatives in training are worded the same way)."""
    return f"{name} (stage {stage}): {summary}" + (f" Use when: {when}" if when else "")


class RetrieverProvider:
    """Top-K candidates from the dense retriever, for a stage and its input state."""

    def __init__(self, task: TaskBase, base: FunctionBase, retriever: Retriever, k: int = DEFAULT_K):
        self.task, self.base, self.retriever, self.k = task, base, retriever, k

    def query(self, stage: str, state: object) -> str:
        """The task in one line, the stage and what it must do, what the state holds.

        The task's one-line description stands for its rules here: with the full
        rule text in the query, its words outweighed the stage's and recall@1 of
        the right function fell from 1.00 to 0.25 (recall@3 stayed 1.00). The
        student's prompt carries the full rules.
        """
        return build_query(self.task.description, f"{stage}: {self.task.stages.get(stage, '')}",
                           state_words(self.task, stage, state, self.base))

    def k_for(self, stage: str) -> int:
        """K at ``stage``: at least one more than the functions declared for it (at most 2K), so
        that an alternative a plugin adds widens the top-K instead of pushing another out; the
        built-in bases (at most 4 per stage) keep K."""
        return min(2 * self.k, max(self.k, len(self.base.for_stage(stage)) + 1))

    def candidates(self, stage: str, state: object) -> list[ManualEntry]:
        """The retriever's top-K for the stage's query, in its order. A function declared for the
        stage that ranks below K takes the place of the lowest-ranked function of another stage
        (the stage's alternatives are always offered; the state decides among them). With the
        extras plugin's fifth decide alternative, the query's words ranked an evader's function
        and filter_legal_cells above capture_adjacent at every capture-ready decide stage; on
        the built-in bases no stage function ranks below K (6,271 stage inputs of expert games,
        with and without emergencies), so their candidates are the plain top-K."""
        return self.candidates_batch(stage, [state])[0]

    def candidates_batch(self, stage: str, states: list) -> list[list[ManualEntry]]:
        """``candidates`` for several states (games in lockstep): a query that several games ask
        is searched once (with the memo off too). Each is embedded alone, as in a game played
        alone: padded beside others, its vector (and a near tie) could differ."""
        k = self.k_for(stage)
        queries = [self.query(stage, state) for state in states]
        found = {query: self.retriever.search(query, k) for query in dict.fromkeys(queries)}
        return [self._offered(stage, query, [name for name, _ in found[query]], k) for query in queries]

    def _offered(self, stage: str, query: str, names: list[str], k: int) -> list[ManualEntry]:
        own = [e.name for e in self.base.for_stage(stage)][:k]
        missing = [name for name in own if name not in names]
        if missing:
            deep = {name: rank for rank, (name, _) in enumerate(self.retriever.search(query, len(self.retriever)))}
            others = [name for name in names if name not in own]
            names = [name for name in names if name not in others[len(others) - len(missing):]] + missing
            names.sort(key=lambda name: deep.get(name, len(deep)))
        return [self.retriever.entry(name) for name in names]


class StudentSelector:
    """The student scores the K options in one forward pass; its choice is always one of them."""

    def __init__(self, task: TaskBase, student: Student, base: FunctionBase | None = None):
        self.task, self.student, self.prefix, self.base = task, student, prompt_prefix(task), base
        self.last_probabilities: list[float] = []
        self.prompts: set = set()     # distinct (query, options) asked: what a memo could answer

    def select(self, stage: str, state: object, candidates: list[ManualEntry]) -> int:
        index, self.last_probabilities = self.select_batch(stage, [state], [candidates])[0]
        return index

    def select_batch(self, stage: str, states: list, candidates: list[list[ManualEntry]]) -> list[tuple]:
        """(index, probabilities) for each state's candidates, scored in one batch."""
        items = []
        for state, offered in zip(states, candidates):
            query, options = stage_query(self.task, stage, state, self.base), [option_text(c) for c in offered]
            self.prompts.add((query, tuple(options)))
            items.append((self.prefix, query, options))
        return [(s.index, s.probabilities) for s in self.student.select_batch(items)]

    def stats(self) -> dict:
        """Distinct selection prompts asked, and the model calls they cost (the memo answers repeats)."""
        return {"distinct_prompts": len(self.prompts),
                "model_calls": int(getattr(self.student, "usage", {}).get("model_calls", 0))}


@dataclass(frozen=True)
class SelectionExample:
    """One training or evaluation item: the texts the student sees and the right option."""
    prefix: str
    query: str
    options: tuple[str, ...]
    answer: int
    stage: str
    retrieved: bool     # was the right function in the retriever's top-K?

    def as_tuple(self) -> tuple[str, str, list[str], int]:
        return (self.prefix, self.query, list(self.options), self.answer)


def stage_inputs(task: TaskBase, base: FunctionBase, evader: Evader | None, seeds: list[int],
                 desc: str = "") -> list[tuple[str, object]]:
    """(stage, input state) pairs met by the expert over seeded games; with ``desc``,
    a progress bar on standard error."""
    agent = expert_agent(AgentContext(task, base))
    pairs: list[tuple[str, object]] = []
    agent.observers.append(lambda d: pairs.extend((s.stage, s.state) for s in d.stages))
    for i, seed in enumerate(tqdm(seeds, desc=desc, unit="game", disable=not desc, leave=False)):
        task.play(agent, i, seed, evader, lambda r: None)
    return pairs


def selection_examples(task: TaskBase, base: FunctionBase, provider: RetrieverProvider,
                       pairs: list[tuple[str, object]], shuffle_seed: int | None = None,
                       desc: str = "") -> list[SelectionExample]:
    """Retrieved top-K candidates -> the oracle's index. For training (``shuffle_seed``
    set) a missed oracle replaces the last candidate and the order is shuffled, so
    the student learns the stage, not a position. ``desc``: a progress bar."""
    rng = random.Random(shuffle_seed) if shuffle_seed is not None else None
    prefix, examples = prompt_prefix(task), []
    for stage, state in tqdm(pairs, desc=desc, unit="selection", disable=not desc, leave=False):
        candidates = provider.candidates(stage, state)
        oracle = base.oracle(stage, state)
        retrieved = oracle in candidates
        if rng is not None:
            if not retrieved:
                candidates[-1] = oracle
            rng.shuffle(candidates)
        answer = candidates.index(oracle) if oracle in candidates else -1
        examples.append(SelectionExample(prefix, stage_query(task, stage, state, base),
                                         tuple(option_text(c) for c in candidates), answer,
                                         stage, retrieved))
    return examples


def ld_agent(context: AgentContext) -> LoopAgent:
    """Retriever + fine-tuned student choose each stage's function; the sandbox runs it."""
    return _learned_agent(context, "ld")


def untuned_agent(context: AgentContext) -> LoopAgent:
    """Ablation: the ld agent with the student as shipped (no adapter)."""
    return _learned_agent(context, "ld_untuned", adapter=False)


def shuffled_agent(context: AgentContext) -> LoopAgent:
    """Ablation: the ld agent with each stage's candidates in a seeded random order, so a
    student that learnt the retriever's order (not the manual) is found out."""
    return _learned_agent(context, "ld_shuffled", shuffle=True)


def top1_agent(context: AgentContext) -> LoopAgent:
    """Ablation with no selection model: the retriever's first hit at every stage. Under an
    emergency it adopts the rule's function as ``ld`` does (the stored verified one, or one
    the student writes), so the two differ only in how a stage's function is chosen."""
    return _modelless_agent(context, "top1", FirstSelector())


def lexical_agent(context: AgentContext) -> LoopAgent:
    """Ablation with no selection model: among the retriever's top-K, the stage's alternative
    whose When: words match a fact stated yes (``ldengine.lexical``), else its default."""
    return _modelless_agent(context, "lexical", LexicalSelector(context.base))


def top1_read_agent(context: AgentContext) -> LoopAgent:
    """Ablation with no selection model: the read conditions narrow each stage's alternatives
    (as for ``ld``), then the retriever's first hit is played: what the reading does without
    the student."""
    return _modelless_agent(context, "top1_read", FirstSelector(), read=True)


def _modelless_agent(context: AgentContext, name: str, selector: Selector, read: bool = False) -> LoopAgent:
    written = adopt(context, context.options.get("log") or _stderr)
    provider = _provider(context, _retriever(context), read=read)
    agent = LoopAgent(context, provider, selector)
    agent.name = name
    _play_adopted(agent, context, written)
    agent.identity = lambda: {"retriever_index_hash": getattr(provider.retriever, "index_hash", None), "k": provider.k,
                              **provider.stats(), **_emergency_identity(written)}
    return agent


class ConditionProvider(RetrieverProvider):
    """The retriever's top-K with the stage's alternatives narrowed by their read ``When:``
    conditions (``ldengine.conditions``): the one the state calls for stays, the others of the
    stage leave the list; the functions of other stages stay as they were ranked."""

    def __init__(self, *args, readings: Readings | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.readings = readings    # None: no narrowing
        self.withheld = 0       # alternatives taken off the lists so far

    def candidates_batch(self, stage: str, states: list) -> list[list[ManualEntry]]:
        out = super().candidates_batch(stage, states)
        if self.readings is None or len(self.base.for_stage(stage)) < 2:
            return out
        narrowed = []
        for state, found in zip(states, out):
            _, withheld = called_for(self.base, self.readings, stage, state)
            self.withheld += sum(e.name in withheld for e in found)
            narrowed.append([e for e in found if e.name not in withheld])
        return narrowed

    def stats(self) -> dict:
        """The read conditions the alternatives were narrowed by (name -> program; None: unread)
        and how many alternatives left the lists; nothing without readings."""
        if self.readings is None:
            return {}
        said = {name: r.condition if r.read else None
                for stage in self.readings.stages_read() for name, r in stage.items()}
        return {"conditions": said, "alternatives_withheld": self.withheld}


def _provider(context: AgentContext, retriever: Retriever, shuffle: bool = False,
              read: bool = True) -> ConditionProvider:
    """The agent's candidate lists: narrowed by the read conditions unless ``--no-conditions``
    (``conditions`` option False) or ``read`` is off; shuffled for the shuffled ablation."""
    opts = context.options
    readings = Readings(context, log=opts.get("log") or _stderr) if read and opts.get("conditions", True) else None
    kind = ShuffledProvider if shuffle else ConditionProvider
    return kind(context.task, context.base, retriever, opts.get("k") or DEFAULT_K, readings=readings)


class ShuffledProvider(ConditionProvider):
    """The (narrowed) top-K in a seeded random order."""

    def __init__(self, *args, seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.rng = random.Random(seed)

    def candidates_batch(self, stage: str, states: list) -> list[list[ManualEntry]]:
        out = super().candidates_batch(stage, states)
        for found in out:
            self.rng.shuffle(found)
        return out


def _play_adopted(agent: LoopAgent, context: AgentContext, written: Written | None) -> None:
    """The emergency's new stage joins ``agent``'s pipeline when a function for it passed."""
    if written is not None and written.passed:
        kind = cast("Instance", context.task.emergency).kind     # adopt found it in force
        agent.pipeline = with_stage(agent.pipeline, kind.stage, kind.after)
    agent.emergency = written


def _retriever(context: AgentContext) -> Retriever:
    return (Retriever.for_library(context.base, context.registry) if context.registry
            else Retriever.for_base(context.base))


def _learned_agent(context: AgentContext, name: str, adapter: bool = True, shuffle: bool = False) -> LoopAgent:
    opts = context.options
    # the adapter first: a base it does not fit fails in one line before any model loads
    chosen = selection_adapter(context, opts.get("log") or _stderr) if adapter else None
    written = adopt(context, opts.get("log") or _stderr)
    retriever = _retriever(context)
    student = context.load_student(adapter=chosen)
    if opts.get("no_memo"):     # every selection and retrieval computed (benchmarks; the choices are the same)
        student.memo_size = 0
        retriever.memo_size = 0
    provider = _provider(context, retriever, shuffle)
    agent = LoopAgent(context, provider, StudentSelector(context.task, student, context.base))
    agent.name = name
    _play_adopted(agent, context, written)
    agent.setup = model_setup(student, chosen)
    agent.usage = lambda: dict(getattr(student, "usage", {}))
    agent.identity = lambda: {"model": student.name, "model_sha256": student.model_hash,
                              "adapter_hash": student.adapter_hash,
                              "retriever_index_hash": getattr(retriever, "index_hash", None),
                              "k": provider.k, **provider.stats(), **dtype_identity(student),
                              **_emergency_identity(written)}
    return agent


def selection_adapter(context: AgentContext, log: Callable[[str], None]) -> Path | str | None:
    """``--adapter DIR`` (with a warning line when it was trained on another function base),
    else the default adapter that fits this base (``find_adapter``)."""

    given, task = context.options.get("adapter"), context.task.name
    if not given:
        return find_adapter(context.task, context.base)
    manifest = read_json(Path(given) / "manifest.json")
    why = adapter_misfit(manifest, task, context.base) if isinstance(manifest, dict) else None
    if why:
        log(f"warning: the adapter {Path(given).name} was trained on another {task} function base ({why}); "
            "its selections may be wrong")
    return given


def model_setup(student: Student, adapter: Path | str | None) -> dict:
    """What a run names in its header and summary: the student model, its weights' type and
    the adapter's folder name (None without one)."""
    return {"student": student.name, "dtype": getattr(student, "dtype", "float32"),
            "adapter": Path(adapter).name if adapter else None}


def _emergency_identity(written: Written | None) -> dict:
    if written is None:
        return {}
    return {"emergency_function": written.name if written.passed else None,
            "emergency_function_sha256": hashlib.sha256(cast(str, written.source).encode()).hexdigest()
            if written.passed else None}


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)
