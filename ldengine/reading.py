"""Training that teaches the student to *read* a ``When:`` field against the stated facts.

The base's own selections teach which names go with which facts; a plugin's new
alternative, with words never seen, is then never picked. So the training data also
holds *synthetic* selections at a stage with alternatives: made-up facts stated in
the query with yes or no (beside the real ones), made-up alternatives whose ``When:``
paraphrases one fact, its negation, or two facts joined by "and", a made-up default
(no ``When:``), and real functions of other stages as distractors, all in a random
order. The right one is the alternative whose ``When:`` holds, else the default. The
functions exist only in the data; nothing here is run.

Facts come from *families*: a sentence as the state states it and, per family,
several other ways to say it (the ``When:`` words) and to deny it. The engine's own
families are abstract (levers, lights, counters); a task may add families in its own
words (``task.fact_families``). Whole families, one phrasing of each, and one naming
style are held out of training, so accuracy on them measures reading, not memory.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ldengine.contracts import TaskBase
from ldengine.ld import SelectionExample, fact_line, option_line, option_text, prompt_prefix

if TYPE_CHECKING:
    from ldengine.functionbase import FunctionBase
    from ldengine.loop import CandidateProvider


@dataclass(frozen=True)
class FactFamily:
    """A kind of fact: ``said`` is how the query states it, ``means`` other ways to say it
    (the last held out of training), ``denied`` ways to say it does not hold (likewise).
    ``{slot}`` fields are filled from ``slots``."""
    name: str
    said: str
    means: tuple[str, ...]
    denied: tuple[str, ...]
    slots: tuple[tuple[str, tuple[str, ...]], ...] = ()
    split: str = "train"      # "train" or "eval" (held out whole)


def family(name: str, said: str, means: tuple, denied: tuple, slots: tuple = (), split: str = "train") -> FactFamily:
    """A ``FactFamily`` from plain tuples (task plugins declare theirs with it too)."""
    return FactFamily(name, said, tuple(means), tuple(denied), tuple((k, tuple(v)) for k, v in slots), split)


COLOURS = ("red", "blue", "green", "amber", "white", "black")
THINGS = ("gate", "lever", "valve", "switch", "door", "bridge")
COUNTERS = ("the turn counter", "the alarm count", "the score", "the round number")

# Abstract families: they teach the skill in words no task uses.
GENERIC = (
    family("light", "the {c} light is on",
       ("the {c} light shines", "the {c} lamp is lit", "the {c} light is switched on"),
       ("the {c} light is off", "the {c} lamp is dark", "the {c} light is switched off"),
       (("c", COLOURS),)),
    family("open", "the {t} is open",
       ("the {t} stands open", "the {t} has been opened", "nothing closes the {t}"),
       ("the {t} is shut", "the {t} is closed", "the {t} has been closed"),
       (("t", THINGS),)),
    family("count", "{k} has reached {n}",
       ("{k} is {n} or more", "{k} is at least {n}", "{k} is no lower than {n}"),
       ("{k} is below {n}", "{k} is less than {n}", "{k} has not yet reached {n}"),
       (("k", COUNTERS), ("n", ("3", "5", "8", "10")))),
    family("held", "the {c} token is held by the leader",
       ("the leader holds the {c} token", "the leader has the {c} token", "the {c} token belongs to the leader"),
       ("the leader lacks the {c} token", "nobody at the front holds the {c} token",
        "the leader does not have the {c} token"),
       (("c", COLOURS),)),
    family("raining", "it is raining on the {t}",
       ("rain falls on the {t}", "the {t} is getting wet from rain", "the {t} is under rain"),
       ("the {t} stays dry", "no rain falls on the {t}", "the weather over the {t} is dry"),
       (("t", THINGS),), "eval"),
    family("locked", "the {t} is locked",
       ("a lock holds the {t}", "the {t} cannot be moved without a key", "the {t} is secured by a lock"),
       ("the {t} is unlocked", "no lock holds the {t}", "the {t} is free of any lock"),
       (("t", THINGS),), "eval"),
)

NAME_VERBS = ("hold", "sweep", "press", "guard", "drift", "split", "mirror", "shadow", "rotate", "probe")
NAME_NOUNS = ("line", "flank", "corner", "centre", "ring", "wedge", "column", "arc", "gap", "lane")
HELD_NAME_PARTS = ("plan", "scheme", "tactic", "play")        # held-out naming style: plan_q7
SUMMARIES = ("Move every piece by the {a} plan.", "Choose each piece's cell with the {a} rule.",
             "Pick the joint move that the {a} plan prefers.", "Play the {a} pattern this step.")
ADJECTIVES = ("steady", "quick", "wide", "tight", "patient", "bold", "narrow", "even")
DEFAULT_SUMMARIES = ("The usual move when no special case applies.", "The plain plan for every other state.",
                     "Play the standard move of this stage.")


@dataclass(frozen=True)
class Drawn:
    """One made-up fact in an example: how the query says it and whether it holds."""
    family: str
    said: str
    holds: bool
    means: str
    denied: str


def families(task: TaskBase, split: str) -> list[FactFamily]:
    """The engine's and the task's fact families of ``split``."""
    own = tuple(task.fact_families or ())
    return [f for f in GENERIC + own if f.split == split]


def _fill(text: str, values: dict) -> str:
    return text.format(**values)


def draw_fact(rng: random.Random, family: FactFamily, heldout_phrasing: bool) -> Drawn:
    values = {k: rng.choice(v) for k, v in family.slots}
    means = family.means[-1] if heldout_phrasing else rng.choice(family.means[:-1])
    denied = family.denied[-1] if heldout_phrasing else rng.choice(family.denied[:-1])
    return Drawn(family.name, _fill(family.said, values), rng.random() < 0.5, _fill(means, values),
                 _fill(denied, values))


def when_text(rng: random.Random, facts: list[Drawn]) -> tuple[str, bool, list[Drawn]]:
    """A When: text over one or two of ``facts`` (a paraphrase, a denial, or two joined by and)
    and whether it holds."""
    shape = rng.random()
    if shape < 0.55 or len(facts) < 2:
        f = rng.choice(facts)
        return f.means, f.holds, [f]
    if shape < 0.8:
        f = rng.choice(facts)
        return f.denied, not f.holds, [f]
    a, b = rng.sample(facts, 2)
    return f"{a.means} and {b.means}", a.holds and b.holds, [a, b]


def synthetic_name(rng: random.Random, heldout: bool, taken: set) -> str:
    while True:
        name = (f"{rng.choice(HELD_NAME_PARTS)}_{rng.choice('bdfhkmqrtvwz')}{rng.randint(2, 9)}" if heldout
                else f"{rng.choice(NAME_VERBS)}_{rng.choice(NAME_NOUNS)}")
        if name not in taken:
            taken.add(name)
            return name


def reading_example(rng: random.Random, task: TaskBase, stage: str, summary: str, distractors: list[str],
                    split: str = "train", heldout_phrasing: bool = False, heldout_names: bool = False,
                    real_facts: tuple[str, ...] = ()) -> SelectionExample | None:
    """One synthetic selection at ``stage``: 2-4 made-up facts among ``real_facts`` (already worded
    "sentence: yes/no"), 2-3 made-up alternatives (at most one holds), a made-up default and
    ``distractors`` (option texts of other stages). None when the families cannot give enough facts."""
    pool = families(task, split)
    if len(pool) < 2:
        return None
    chosen = rng.sample(pool, min(len(pool), rng.randint(2, 4)))
    facts = [draw_fact(rng, f, heldout_phrasing) for f in chosen]
    want_one = rng.random() < 0.7
    alts: list[tuple[str, bool]] = []
    used: set[str] = set()
    names: set[str] = set()
    for _ in range(rng.randint(2, 3)):
        for _try in range(20):
            text, holds, _ = when_text(rng, facts)
            if text in used or (holds and (not want_one or any(h for _, h in alts))):
                continue
            break
        else:
            continue
        used.add(text)
        alts.append((text, holds))
    if want_one and not any(h for _, h in alts):
        f = rng.choice(facts)
        alts[0] = (f.means if f.holds else f.denied, True)
    options, answer = [], None
    for text, holds in alts:
        name = synthetic_name(rng, heldout_names, names)
        summary_line = rng.choice(SUMMARIES).format(a=rng.choice(ADJECTIVES))
        options.append(option_line(name, stage, summary_line, text))
        if holds:
            answer = options[-1]
    default = option_line(synthetic_name(rng, heldout_names, names), stage, rng.choice(DEFAULT_SUMMARIES), "")
    options.append(default)
    options += distractors[:max(0, 6 - len(options))]
    rng.shuffle(options)
    stated = [fact_line(f.said, f.holds) for f in facts] + list(real_facts)
    rng.shuffle(stated)
    query = f"Stage: {stage}\nState: {'; '.join([summary] + stated)}\n"
    return SelectionExample(prompt_prefix(task), query, tuple(options), options.index(answer or default),
                            stage, True)


def reading_examples(task: TaskBase, base: FunctionBase, provider: CandidateProvider,
                     pairs: Sequence[tuple[str, object]], n: int, seed: int = 0,
                     split: str = "train", heldout_phrasing: bool = False,
                     heldout_names: bool = False) -> list[SelectionExample]:
    """``n`` synthetic selections built on the states of ``pairs`` at stages with alternatives
    (their summary and real facts, and the retriever's candidates of other stages as distractors)."""
    rng = random.Random(seed)
    states = [(stage, state) for stage, state in pairs if len(base.for_stage(stage)) > 1]
    out: list[SelectionExample] = []
    while states and len(out) < n:
        stage, state = rng.choice(states)
        summary = task.summarize_state(state)
        real = tuple(fact_line(f.sentence, v) for f, v in base.fact_values(stage, state))
        others = [option_text(c) for c in provider.candidates(stage, state) if c.stage != stage]
        example = reading_example(rng, task, stage, summary, others, split, heldout_phrasing, heldout_names, real)
        if example is not None:
            out.append(example)
    return out
