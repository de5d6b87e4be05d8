"""An alternative's ``When:`` field read once into a *condition* over its stage's facts, checked
against the alternative's own ``when_`` predicate, then used in every state.

The student did not learn to read a ``When:`` text against the stated facts state by state
(RESULTS.md, "Reading"): matching paraphrases inside a selection is a two-hop lookup that a
135M model did not pick up from a few thousand examples, and a plugin's new alternative was
never chosen. Reading is therefore a one-time, checkable step per function:

1. **Propose.** The ``When:`` text is scored against every condition of the rule language
   below (a fact, its negation, two of them joined by ``and`` or ``or``), rendered in the
   facts' own words; a proposer ranks them (``EncoderProposer``: the retriever's sentence
   encoder; ``LexicalProposer``: word overlap, the no-model ablation).
2. **Check.** On stage inputs the expert met (open board and under each registered new
   rule), each proposed condition is evaluated on the facts' values and compared with the
   alternative's ``when_`` predicate; both run in the sandbox. The best-ranked condition that
   agrees on every state is the reading; when none agrees, the alternative stays *unread*
   and ``ldengine functions read`` names a state where the words and the code part.
3. **Use.** At a stage whose alternatives are read, ``ConditionProvider`` offers only the
   alternative the state calls for (the first, in the base's order, whose condition holds;
   the default when none does), beside the top-K functions of other stages: the student
   picks the stage's function among them. This is the oracle's own rule (``FunctionBase.oracle``),
   applied to the words as read instead of to the code.

The language: ``fact``, ``not fact``, ``fact and fact``, ``fact or fact`` (with ``not`` on
either side), over the facts a stage's query states (``fact_`` defs, the task's and the
plugins'). A plugin whose alternative needs another fact declares it (docs/student.md, "Alternatives per stage").
Readings are cached in the user's cache folder (``conditions/``), keyed by the function's
source, its predicate's module, the stage's facts and the proposer.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Protocol

from ldengine.agents import AgentContext, expert_agent
from ldengine.cache import cache_root, read_json, write_atomic
from ldengine.contracts import Evader, TaskBase, emergency_params, task_evader
from ldengine.emergency.rule import Instance, kinds_of, reference_module, with_stage
from ldengine.errors import LDEngineError
from ldengine.functionbase import FunctionBase
from ldengine.lexical import overlap, words
from ldengine.manual import Fact, ManualEntry
from ldengine.retriever import Encoder

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from ldengine.registry import Registry

# Open-board games and games per registered rule change whose stage inputs check a reading.
CHECK_SEEDS = (0, 1, 2, 3, 4, 5)
RULE_SEEDS = (0, 1)
# A condition with two facts ranks below one with one unless its words match clearly better.
PER_FACT = 0.02
CONNECTIVES = ("and", "or")
CACHE_VERSION = 1


@dataclass(frozen=True)
class Literal:
    fact: str
    negated: bool = False

    def text(self) -> str:
        return f"not {self.fact}" if self.negated else self.fact


@dataclass(frozen=True)
class Condition:
    """A program of the stage's rule language: one or two literals and their connective."""
    literals: tuple[Literal, ...]
    op: str = "and"

    def holds(self, values: Mapping[str, bool]) -> bool:
        """Its value given each fact's (a fact missing from ``values`` counts as no)."""
        seen = [values.get(lit.fact, False) != lit.negated for lit in self.literals]
        return all(seen) if self.op == "and" else any(seen)

    def text(self) -> str:
        """The program as written: ``capture_ready``, ``near_edge and not capture_ready``."""
        return f" {self.op} ".join(lit.text() for lit in self.literals)

    def words(self, facts: Mapping[str, Fact]) -> str:
        """The program in the facts' own sentences (what a proposer compares with a ``When:``)."""
        said = [("it is not so that " if lit.negated else "") + facts[lit.fact].sentence for lit in self.literals]
        return f" {self.op} ".join(said)

    @property
    def facts(self) -> tuple[str, ...]:
        return tuple(lit.fact for lit in self.literals)


def parse_condition(text: str, facts: Mapping[str, object]) -> Condition:
    """``text`` as a condition over ``facts`` (names); a bad program is refused in one line."""
    words = text.split()
    ops = {w for w in words if w in CONNECTIVES}
    if len(ops) > 1:
        raise LDEngineError(f"condition {text!r} mixes 'and' and 'or' (one connective per condition)")
    op = ops.pop() if ops else "and"
    literals = []
    for part in re.split(r"\s+(?:and|or)\s+", text.strip()):
        bits = part.split()
        negated = bool(bits) and bits[0] == "not"
        name = " ".join(bits[1:] if negated else bits)
        if name not in facts:
            known = ", ".join(facts) or "none"
            raise LDEngineError(f"condition {text!r}: no fact {name!r} at this stage (facts: {known})")
        literals.append(Literal(name, negated))
    if not literals or len({lit.fact for lit in literals}) != len(literals):
        raise LDEngineError(f"condition {text!r}: name each fact once")
    return Condition(tuple(literals), op)


def conditions(names: list[str], most: int = 2) -> list[Condition]:
    """Every condition over ``names`` with up to ``most`` literals on distinct facts."""
    out = [Condition((Literal(n, neg),)) for n in names for neg in (False, True)]
    for size in range(2, most + 1):
        for chosen in itertools.combinations(names, size):
            for signs in itertools.product((False, True), repeat=size):
                lits = tuple(Literal(n, s) for n, s in zip(chosen, signs))
                out += [Condition(lits, op) for op in CONNECTIVES]
    return out


NEGATIONS = {"not", "no", "never", "none", "nobody", "nothing", "cannot", "without", "neither", "nor"}
# "or" joins clauses, not numbers ("6 or more cells")
_CLAUSE_BREAK = re.compile(r"\b(?:and|but|while)\b|\bor\b(?!\s+(?:more|fewer|less|so|greater|further|farther|nearer)\b)|[,;:()]")


def clauses(when: str) -> list[str]:
    """The ``When:`` text's clauses (split at connectives and punctuation; fragments of 3+ words)."""
    parts = [p.strip() for p in _CLAUSE_BREAK.split(when)]
    found = [p for p in parts if len(p.split()) >= 3]
    return found or [when]


def negated(text: str) -> bool:
    """An odd number of negation words (``capture is not ready``; ``n't`` counts)."""
    words = re.findall(r"[a-z']+", text.lower())
    return sum(w in NEGATIONS or w.endswith("n't") for w in words) % 2 == 1


class Proposer(Protocol):
    """Ranks the conditions a ``When:`` text may say (``EncoderProposer``, ``LexicalProposer``)."""
    name: str

    def score(self, when: str, found: list[Condition], facts: Mapping[str, Fact]) -> list[float]: ...


class EncoderProposer:
    """Links each clause of the ``When:`` text to the facts by the retriever's sentence encoder:
    a condition scores the mean of how well its facts are said by some clause and how well each
    clause is said by one of its facts, less a little where a literal's sign disagrees with the
    negation words of its clause and fact, or its connective with the text's."""
    name = "encoder"

    def __init__(self, encoder: Encoder | None = None):
        self._encoder = encoder

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = Encoder()
        return self._encoder

    def score(self, when: str, found: list[Condition], facts: Mapping[str, Fact]) -> list[float]:
        parts = clauses(when)
        names = list(facts)
        vectors = self.encoder.encode(parts + [facts[n].sentence for n in names])
        sims = vectors[len(parts):] @ vectors[:len(parts)].T     # [fact, clause]
        return [_linked_score(c, names, sims, parts, facts, when) for c in found]


def _linked_score(condition: Condition, names: list[str], sims: np.ndarray, parts: list[str],
                  facts: Mapping[str, Fact], when: str) -> float:
    rows = [names.index(lit.fact) for lit in condition.literals]
    said = sum(float(sims[r].max()) for r in rows) / len(rows)
    covered = sum(float(sims[rows, c].max()) for c in range(len(parts))) / len(parts)
    sign = 0.0
    for lit, r in zip(condition.literals, rows):
        clause = parts[int(sims[r].argmax())]
        if (negated(clause) != negated(facts[lit.fact].sentence)) != lit.negated:
            sign += 0.1
    op = "or" if re.search(r"\bor\b", when) else "and"
    joint = 0.05 if len(condition.literals) > 1 and condition.op != op else 0.0
    return (said + covered) / 2 - sign - joint


class LexicalProposer:
    """Ranks conditions by word overlap of the ``When:`` text and the condition's words (the
    no-model ablation)."""
    name = "lexical"

    def score(self, when: str, found: list[Condition], facts: Mapping[str, Fact]) -> list[float]:
        mine = words(when)
        return [overlap(mine, words(c.words(facts))) for c in found]


PROPOSERS: dict[str, Callable[[], Proposer]] = {"encoder": EncoderProposer, "lexical": LexicalProposer}


def rank(when: str, facts: Mapping[str, Fact], proposer: Proposer) -> list[tuple[Condition, float]]:
    """Every condition over ``facts``, best first (ties: fewer facts, then the language's order)."""
    found = conditions(list(facts))
    scores = proposer.score(when, found, facts)
    scored = [(c, s - PER_FACT * (len(c.literals) - 1)) for c, s in zip(found, scores)]
    return sorted(scored, key=lambda cs: -cs[1])


@dataclass
class Reading:
    """How one alternative's ``When:`` was read and what the check found."""
    name: str
    stage: str
    when: str
    condition: str | None        # the program (``Condition.text``); None while unread
    status: str                  # "checked" (agrees on every state), "disagrees", "no facts", "no states"
    agree: int = 0
    states: int = 0
    rank: int | None = None      # the reading's place in the proposer's ranking (0: its first)
    proposer: str = ""
    first: str | None = None     # the proposer's first choice, before the check
    example: dict = field(default_factory=dict)   # a state where the best condition and the code part

    @property
    def read(self) -> bool:
        return self.status == "checked" and self.condition is not None


def check(entry: ManualEntry, ranked: list[tuple[Condition, float]],
          states: list[tuple[dict, bool]], proposer: str) -> Reading:
    """The condition that agrees with ``entry``'s ``when_`` predicate on every state (``states``:
    the facts' values and the predicate's answer per stage input): of those, the one with the
    fewest facts, then the best ranked. Two conditions that agree on every state met differ only
    in states never met, where the simpler is the safer guess."""
    reading = Reading(entry.name, entry.stage, entry.when, None, "no states", 0, len(states),
                      proposer=proposer, first=ranked[0][0].text() if ranked else None)
    if not ranked:
        reading.status = "no facts"
        return reading
    if not states:
        return reading
    best, best_agree, agreeing = None, -1, []
    for place, (condition, _) in enumerate(ranked):
        agree = sum(condition.holds(values) == truth for values, truth in states)
        if agree == len(states):
            agreeing.append((len(condition.literals), place, condition))
        if agree > best_agree:
            best, best_agree = condition, agree
    if agreeing:   # the fewest facts that say it (the words rank conditions of one size)
        _, place, condition = min(agreeing, key=lambda x: x[:2])
        reading.condition, reading.status, reading.agree, reading.rank = condition.text(), "checked", len(states), place
        return reading
    assert best is not None
    reading.status, reading.agree, reading.condition = "disagrees", best_agree, None
    values, truth = next((v, t) for v, t in states if best.holds(v) != t)
    reading.example = {"condition": best.text(), "facts": values, "code_says": truth}
    return reading


def check_states(registry: Registry | None, task: TaskBase, base: FunctionBase, stage: str,
                 seeds: tuple = CHECK_SEEDS, rule_seeds: tuple = RULE_SEEDS) -> list[object]:
    """Inputs of ``stage`` the expert met: games on the open board, and games under each rule
    change the task registers (its teacher's function in force), where obstacles cut moves.
    The task as registered plays them (a rule in force for the run changes nothing here)."""
    if registry is not None:
        task = registry.task(task.name)
    evader = _evader(registry, task)
    out: list[object] = []
    seen = lambda d: out.extend(s.state for s in d.stages if s.stage == stage)  # noqa: E731
    agent = expert_agent(AgentContext(task, base))
    agent.observers.append(seen)
    for i, seed in enumerate(seeds):
        task.play(agent, i, seed, evader, lambda r: None)
    derive = task.with_emergency        # the task under a rule; None: it takes no new rules
    if registry is None or derive is None:
        return out
    for kind in [k for split in ("train", "eval") for k in kinds_of(registry, task.name, split)]:
        for seed in rule_seeds:
            params = emergency_params(kind, task, seed)
            ruled = FunctionBase.build(task.name, registry.modules_for(task.name))
            try:
                ruled.add_generated(reference_module(kind, params), f"{task.name}/emergencies/check-{kind.name}.py")
                in_force = derive(Instance(kind, params))
                player = expert_agent(AgentContext(in_force, ruled))
                player.pipeline = with_stage(player.pipeline, kind.stage, kind.after)
                player.observers.append(seen)
                in_force.play(player, 0, seed, evader, lambda r: None)
            finally:
                if ruled.isolated is not None:
                    ruled.isolated.close()
    return out


def _evader(registry: Registry | None, task: TaskBase) -> Evader | None:
    """The policy of the task's own evader; None for a task without one, or
    with no registry to find it in."""
    if registry is None:
        return None
    try:
        return registry.policy(task_evader(task))
    except LDEngineError:
        return None


def readable(base: FunctionBase, stage: str) -> list[ManualEntry]:
    """The stage's alternatives that have words to read and code to check them by."""
    return [e for e in base.for_stage(stage) if e.predicate and e.when]


def read_stage(base: FunctionBase, stage: str, states: list[object], proposer: Proposer) -> dict[str, Reading]:
    """Each alternative of ``stage`` with a ``When:`` and a ``when_`` predicate, read and checked."""
    facts = {f.name: f for f in base.facts_for(stage)}
    entries = readable(base, stage)
    if not entries:
        return {}
    values = [{f.name: v for f, v in base.fact_values(stage, s)} for s in states]
    out = {}
    for entry in entries:
        truths = [base.applies(entry, s) for s in states]
        ranked = rank(entry.when, facts, proposer) if facts else []
        out[entry.name] = check(entry, ranked, list(zip(values, truths)), proposer.name)
    return out


def reading_key(base: FunctionBase, entry: ManualEntry, proposer: str, seeds: tuple = CHECK_SEEDS,
                rule_seeds: tuple = RULE_SEEDS) -> str:
    """What a cached reading depends on: the entry's source and When:, its predicate's module
    (the predicate's code), the stage's facts, the proposer and the check's games."""
    h = hashlib.sha256()
    module = base.modules.get(entry.module)
    h.update(json.dumps([CACHE_VERSION, entry.name, entry.source_hash, entry.when, entry.predicate,
                         getattr(module, "source_hash", ""),
                         sorted((f.name, f.source_hash) for f in base.facts_for(entry.stage)),
                         proposer, list(seeds), list(rule_seeds)]).encode())
    return h.hexdigest()


class Readings:
    """The readings of a base's alternatives, from the cache or made (and cached) on demand."""

    def __init__(self, context: AgentContext, proposer: Proposer | None = None,
                 cache_dir: str | Path | None = None, log: Callable[[str], None] | None = None,
                 seeds: tuple = CHECK_SEEDS, rule_seeds: tuple = RULE_SEEDS):
        self.context = context
        self.seeds, self.rule_seeds = tuple(seeds), tuple(rule_seeds)
        self.base: FunctionBase = context.base
        self.proposer = proposer or EncoderProposer()
        self.folder = cache_root(cache_dir) / "conditions" / context.task.name
        self.log = log
        self._stages: dict[str, dict[str, Reading]] = {}
        self._parsed: dict[str, dict[str, Condition | None]] = {}   # stage -> name -> its program, parsed once

    def stage(self, stage: str) -> dict[str, Reading]:
        """Name -> Reading for the stage's read-able alternatives (empty: nothing to read)."""
        if stage in self._stages:
            return self._stages[stage]
        keys = {e.name: reading_key(self.base, e, self.proposer.name, self.seeds, self.rule_seeds)
                for e in readable(self.base, stage)}
        facts = {f.name: f for f in self.base.facts_for(stage)}
        found: dict[str, Reading] = {}
        for name, key in keys.items():
            data = read_json(self.folder / f"{key}.json")
            reading = _reading(data) if isinstance(data, dict) else None
            if reading is not None and (not reading.read or _parsed(reading, facts) is not None):
                found[name] = reading
        if len(found) < len(keys):
            if self.log:
                self.log(f"reading the When: fields of {stage} into conditions over its facts "
                         f"(once per function; checked on the expert's games)...")
            states = check_states(self.context.registry, self.context.task, self.base, stage, self.seeds,
                                  self.rule_seeds) if self.base.facts_for(stage) else []
            made = read_stage(self.base, stage, states, self.proposer)
            for name, reading in made.items():
                write_atomic(self.folder / f"{keys[name]}.json", json.dumps(asdict(reading), indent=1).encode())
            found = made
        self._stages[stage] = found
        return found

    def stages_read(self) -> list[dict[str, Reading]]:
        """The readings of the stages asked about so far."""
        return list(self._stages.values())

    def condition(self, name: str, stage: str) -> Condition | None:
        """``name``'s read condition (None: unread, or nothing to read)."""
        if stage not in self._parsed:
            facts = {f.name: f for f in self.base.facts_for(stage)}
            self._parsed[stage] = {n: _parsed(r, facts) if r.read else None for n, r in self.stage(stage).items()}
        return self._parsed[stage].get(name)


def _parsed(reading: Reading, facts: Mapping[str, Fact]) -> Condition | None:
    """A reading's program over ``facts``; None when it names a fact the stage no longer has."""
    try:
        return parse_condition(reading.condition or "", facts)
    except LDEngineError:
        return None


def _reading(data: dict) -> Reading | None:
    try:
        return Reading(**data)
    except TypeError:
        return None


def called_for(base: FunctionBase, readings: Readings, stage: str, state: object) -> tuple[set, set]:
    """(offered, withheld): the stage's alternatives the state calls for by their read conditions
    (the first in the base's order whose condition holds, else the default) and those withheld.
    An unread alternative is always offered; with none read, nothing is withheld."""
    entries = base.for_stage(stage)
    read = {e.name: readings.condition(e.name, stage) for e in entries if e.predicate}
    if len(entries) < 2 or not any(c is not None for c in read.values()):
        return {e.name for e in entries}, set()
    values = {f.name: v for f, v in base.fact_values(stage, state)}
    chosen = next((e.name for e in entries if _holds(read.get(e.name), values)), None)
    defaults = [e.name for e in entries if not e.predicate]
    unread = {name for name, c in read.items() if c is None}
    keep = {chosen} if chosen else set(defaults)
    keep |= unread
    return keep, {e.name for e in entries} - keep


def _holds(condition: Condition | None, values: Mapping[str, bool]) -> bool:
    return condition is not None and condition.holds(values)
