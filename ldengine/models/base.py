"""What every student backend offers, in plain Python (no torch here).

The student never answers in free text: for each stage it picks one of K
candidate functions, so its choice is always a candidate (entropy <= log K,
Eq. 3 of the paper). ``Selection`` is that choice; ``selection_suffix`` is the
one prompt format all backends score, so a choice made by one backend can be
compared with another's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

from ldengine.errors import LDEngineError, UnknownNameError

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ANSWER_CUE = "Answer:"


@dataclass(frozen=True)
class Selection:
    """The student's choice among K options and its distribution over them."""
    index: int
    probabilities: list[float]


@runtime_checkable
class Student(Protocol):
    """A student backend: selects among candidates and writes new functions."""
    name: str
    model_hash: str
    adapter_hash: str | None

    def select(self, prefix: str, query: str, options: list[str]) -> Selection: ...

    def select_batch(self, items: list[tuple[str, str, list[str]]]) -> list[Selection]: ...

    def generate(self, prompt: str, max_new_tokens: int = 256, temperature: float = 0.0,
                 seed: int = 0, num_return_sequences: int = 1) -> list[str]: ...


def check_options(options: list[str]) -> None:
    """Refuse option lists that cannot be labelled with one letter each."""
    if not options:
        raise LDEngineError("the student was given no options to select from")
    if len(options) > len(LABELS):
        raise LDEngineError(f"the student can select among at most {len(LABELS)} options, "
                            f"got {len(options)}; retrieve fewer candidates (top-K)")


def selection_suffix(query: str, options: list[str]) -> str:
    """The part of the selection prompt after the fixed prefix.

    The query is followed by one line per option, ``A) ...``, and the answer
    cue; the next token after the cue is scored for each label (`` A``, `` B``...).
    """
    check_options(options)
    lines = "".join(f"{LABELS[i]}) {option}\n" for i, option in enumerate(options))
    return f"{query}\n{lines}{ANSWER_CUE}"


def load_by_name(name: str, registry: dict[str, Callable[..., Any]], **kwargs: Any) -> Any:
    """Load the student backend registered under ``name`` (e.g. through a
    ``ldengine_register_students(register)`` hook) with ``loader(**kwargs)``."""
    try:
        loader = registry[name]
    except KeyError:
        known = ", ".join(sorted(registry)) or "none"
        raise UnknownNameError(f"no student backend named {name!r}; registered: {known}") from None
    return loader(**kwargs)
