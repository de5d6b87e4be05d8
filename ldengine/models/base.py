"""What every student backend offers, in plain Python (no torch here).

The student never answers in free text: for each stage it picks one of K
candidate functions, so its choice is always a candidate (entropy <= log K,
Eq. 3 of the paper). ``Selection`` (``ldengine.contracts``) is that choice; ``selection_context`` and
``option_row`` are the one prompt format all backends score, so a choice made by
one backend can be compared with another's.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping, TypeVar

from ldengine.errors import LDEngineError, UnknownNameError

if TYPE_CHECKING:
    from ldengine.contracts import Student

MAX_OPTIONS = 26
QUESTION = "Does the candidate perform this stage? Answer:"
TAIL = "Fits? Answer:"
YES, NO = " Yes", " No"
# How a selection's text is read (the adapter's manifest records the one it was trained with):
# "joint": the query, then each candidate's row with the question, as one text per candidate;
# "rows": each candidate's row right after the prefix (cached per candidate), the query once,
#         then per candidate a short tail that reads its row and the query (see ``candidate_row``).
JOINT, ROWS = "joint", "rows"
LAYOUTS = (JOINT, ROWS)
StudentT = TypeVar("StudentT")   # what a registry's loaders return


def check_options(options: list[str]) -> None:
    """Refuse an empty option list, and one too long to be a top-K."""
    if not options:
        raise LDEngineError("the student was given no options to select from")
    if len(options) > MAX_OPTIONS:
        raise LDEngineError(f"the student can select among at most {MAX_OPTIONS} options, "
                            f"got {len(options)}; retrieve fewer candidates (top-K)")


def selection_context(query: str) -> str:
    """The per-selection text read once, after the fixed prefix (ends with a newline)."""
    return query if query.endswith("\n") else query + "\n"


def option_row(option: str) -> str:
    """The text read for one candidate after the context; the next token is scored.

    Each candidate is judged on its own, right after the query (`` Yes`` minus
    `` No``), and the K judgements are softmaxed. A multiple-choice prompt
    (``A) ... B) ... Answer:``) was tried first: a 135M model cannot bind
    letters to options, and 40 LoRA steps on all layers left it at chance
    (0.18 on shuffled candidates); comparing one candidate with the query is a
    local task it learns.
    """
    return f"Candidate: {option}\n{QUESTION}"


def candidate_row(option: str) -> str:
    """The ``rows`` layout's text of one candidate, read right after the prefix.

    It does not depend on the state, so its keys and values are computed once
    per candidate and reused by every selection that offers it; a selection
    then reads only its query and K short tails (``TAIL``), each of which sees
    the prefix, its own candidate's row and the query. About a quarter of the
    tokens the ``joint`` layout reads per selection.
    """
    return f"Candidate: {option}\n"


def load_by_name(name: str, registry: Mapping[str, Callable[..., StudentT]], **kwargs: object) -> StudentT:
    """Load the student backend registered under ``name`` (e.g. through a
    ``ldengine_register_students(register)`` hook) with ``loader(**kwargs)``."""
    try:
        loader = registry[name]
    except KeyError:
        known = ", ".join(sorted(registry)) or "none"
        raise UnknownNameError(f"no student backend named {name!r}; registered: {known}") from None
    return loader(**kwargs)


def dtype_identity(student: Student) -> dict:
    """``{"dtype": ...}`` when a student runs in another type than float32 (older runs
    recorded none, and float32 is what they used)."""
    dtype = getattr(student, "dtype", "float32")
    return {} if dtype == "float32" else {"dtype": dtype}
