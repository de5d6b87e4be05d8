"""What the lexicon's readings mean in a rule language: programs (``program``), the
clauses it reads (``readings``), and the words no entry reads (``unread``, ``stops``, ``states``).
"""
from __future__ import annotations

import ast
import functools
import operator
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Sequence, cast

from ldengine.errors import LDEngineError
from ldengine.notation import compares
from ldengine.lexicon.tagging import KINDS, NAMED, Node, _tags, read, tag, text_of

if TYPE_CHECKING:
    from ldengine.contracts import RuleLanguage
    from ldengine.rulelang.grammar import Program


def program(language: RuleLanguage, node: Node) -> Program | None:
    """The program of the language that a node denotes: the whole node as one primitive where
    one denotes exactly its moves (``language.notation``), else its parts' programs joined by
    the language's And / Or / Not; None where a condition is no primitive."""
    text = text_of(node)
    bounds = language.lexicon.bounds if language.lexicon is not None else ""
    found = language.notation(f"({text}) and {bounds}" if bounds else text)
    if found:
        return found[0]
    if node[0] == "cond":
        node = _split(node[1])
        if node[0] == "cond":
            return None
    parts = [program(language, part) for part in node[1:]]
    if any(p is None for p in parts):
        return None
    if node[0] == "not":                    # no part is None (above)
        return cast("Program", parts[0])[1] if cast("Program", parts[0])[0] == "Not" else ("Not", parts[0])
    out = parts[-1]
    for part in reversed(parts[:-1]):
        out = ("And" if node[0] == "and" else "Or", part, out)
    return out


def _split(text: str) -> Node:
    """A condition's text as a node of its top-level and / or / not ("y > py and x == px")."""
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError):
        return ("cond", text)
    if isinstance(tree, ast.BoolOp):
        op = "and" if isinstance(tree.op, ast.And) else "or"
        return (op, *(("cond", ast.get_source_segment(text, v) or "") for v in tree.values))
    if isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.Not):
        return ("not", ("cond", ast.get_source_segment(text, tree.operand) or ""))
    return ("cond", text)


def _mask(language: RuleLanguage, prog: Any) -> int | None:
    try:
        return language.denotation(prog)
    except LDEngineError:
        return None


def _conjunction(language: RuleLanguage, node: Node) -> Program | None:
    """The program of a conjunction whose whole the language finds idle (its denotation None):
    without the parts that restate the others ("moving straight north, staying in the same
    column"); read as a list (Or) when the parts share no move ("the squares (5, 5) and
    (15, 15)"); None when a part is no primitive's."""
    parts = [program(language, part) for part in node[1:]]
    masks = [_mask(language, p) for p in parts]
    if any(p is None for p in parts) or any(m is None for m in masks):
        return None
    both = functools.reduce(operator.and_, masks)
    if not both:
        return program(language, ("or", *node[1:]))
    kept = list(range(len(parts)))
    for i in range(len(parts)):
        rest = [masks[j] for j in kept if j != i]
        if rest and functools.reduce(operator.and_, rest) == both:
            kept.remove(i)
    out = parts[kept[-1]]
    for i in reversed(kept[:-1]):
        out = ("And", parts[i], out)
    return out


def _fits(language: RuleLanguage, prog: Program) -> bool:
    """Within the language's nesting and its number of primitives."""
    def walk(p: Program, d: int) -> tuple[int, int]:
        if p[0] not in language.combinators:
            return 1, d
        counts = [walk(q, d + 1) for q in p[1:]]
        return sum(c for c, _ in counts), max(e for _, e in counts)
    count, deepest = walk(prog, 0)
    return count <= language.max_primitives and deepest <= language.max_depth


def unreadable(language: RuleLanguage, clauses: Sequence[str]) -> set[str]:
    """The clauses that hold words joining clauses (the lexicon's ``SPLIT`` entries): none of
    them is one primitive's words."""
    if language.lexicon is None:
        return set()
    return {c for c in clauses if any(t.kind == "SPLIT" for t in tag(language.lexicon, c))}


def readings(language: RuleLanguage, clauses: Sequence[str]) -> dict[str, tuple]:
    """Clause -> the programs its lexical readings denote (``program`` of each), for the
    clauses the lexicon reads; a language without a lexicon reads none."""
    lexicon = language.lexicon
    out: dict[str, tuple] = {}
    if lexicon is None:
        return out
    for clause in clauses:
        found: list = []
        for node in read(lexicon, clause):
            prog = program(language, node)
            if prog is not None and node[0] == "and" and _mask(language, prog) is None:
                prog = _conjunction(language, node)
            if prog is not None and prog not in found and _fits(language, prog):
                found.append(prog)
        if found:
            out[clause] = tuple(found)
    return out


# Kinds that state a condition: words of these kinds outside the rule's region are words the
# reading left out ("Eastward moves are forbidden except when they end north of row 15").
STATING = frozenset(KINDS) - {"TERM", "AND", "OR", "NUM", "BY"}
NEUTRAL = frozenset({"SKIP", "STOP", "SPLIT", "DEST"})


def unread(language: RuleLanguage, text: str, read: Sequence[str], clauses: Sequence[str],
           symbols: Sequence[str] = ()) -> tuple[str, ...]:
    """The words of a rule that its reading may have missed: in each of the ``clauses`` read
    (``read``: the region, the words after the rule's frame, and its subject; ``clauses``: their
    finest split by the connectives) that writes no condition in symbols and is no part of one of ``symbols`` (the
    clauses the notation reads, ``rulelang.symbolic``), each word no lexicon entry reads, that is no
    word of the language's frames or connectives and no filler; before or after the region,
    the words that state a condition (a marker counts where a number or a stating word is there
    too). Empty for a language without a lexicon."""
    lexicon = language.lexicon
    if lexicon is None:
        return ()
    known = _vocabulary(language)
    filler = re.compile(lexicon.filler, re.IGNORECASE) if lexicon.filler else None
    out = []
    for clause in clauses:
        if not clause or compares(NAMED.sub(" ", clause)) or any(clause in said for said in symbols):
            continue            # the symbols say it; words that change them are read as markers (_marked_symbols)
        words = " ".join(clause.split())
        covered = [t.span for t in _tags(lexicon, words)]
        for m in WORDS.finditer(words):
            word = POSSESSIVE.sub("", m.group(0))
            if not any(a <= m.start() and m.end() <= b for a, b in covered) and word.lower() not in known \
                    and not (filler and filler.fullmatch(word)):
                out.append(m.group(0))
    rest = " ".join(text.split())
    for words in read:
        rest = rest.replace(" ".join(words.split()), " ", 1) if words.strip() else rest
    tags = _tags(lexicon, rest)
    stating = [t.words for t in tags if t.kind in STATING]
    if stating or any(t.kind == "NUM" for t in tags):
        stating += [t.words for t in tags if t.kind not in KINDS and t.kind not in NEUTRAL]
    return tuple(dict.fromkeys(out + stating))


def stops(language: RuleLanguage, words: str) -> bool:
    """Whether ``words`` hold one the lexicon must not read past ("except", "unless")."""
    return language.lexicon is not None and any(t.kind in ("STOP", "SPLIT")
                                                for t in _tags(language.lexicon, " ".join(words.split())))


def states(language: RuleLanguage, words: str) -> bool:
    """Whether the lexicon reads a word of ``words`` that states a condition (a comparison, a
    range, a relation, a whole condition), or reads the words as one ("pieces on row 3": a
    term and its number)."""
    if language.lexicon is None:
        return False
    words = " ".join(words.split())
    return any(t.kind in STATING for t in _tags(language.lexicon, words)) or bool(words and read(language.lexicon, words))


WORDS = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
POSSESSIVE = re.compile(r"['’]s?$|['’]s(?=-)")


@lru_cache(maxsize=8)
def _vocabulary(language: RuleLanguage) -> frozenset[str]:
    """The words of the language's frames, openers and connectives."""
    templates = [t for t, _ in language.frames] + list(language.openers) \
        + [t for ts in language.connectives.values() for t in ts]
    return frozenset(w.lower() for t in templates for w in re.findall(r"[^\W\d_]+", re.sub(r"\{\w+\}", " ", t)))
