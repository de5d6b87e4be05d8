"""A clause's words tagged by the lexicon's longest entries and composed by a Lark grammar
into conditions of the notation (``read``); no model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterator

from lark import Lark, Token, Tree
from lark.common import LexerConf
from lark.exceptions import LarkError
from lark.lexer import Lexer
from lark.visitors import CollapseAmbiguities

from ldengine.errors import LDEngineError
from ldengine.notation import compares, segments


Node = tuple           # ("cond", notation text) | ("and" | "or", *nodes) | ("not", node)
KINDS = ("TERM", "CMP", "RANGE", "REL", "DIFF", "BY", "STEPS", "COND", "POST", "AND", "OR", "NUM")
NAMED = re.compile(r"\b[a-z]\s*=\s*-?\d+\b")     # "the line y = 3" names a line; it is no condition of its own
MAX_TOKENS = 40         # a clause longer than this is not read by the lexicon
MAX_TREES = 16          # parses of one clause, at most
NUMBER = r"-?\d+"
WORD_START = r"(?<![\w])"
WORD_END = r"(?![\w])"
WORD = re.compile(r"\w+|\S")          # a word no entry knows, skipped

# Conditions side by side are joined by "and"; "or" binds after "and".
GRAMMAR = r"""
start: group (OR group)*
     | alternatives AND? cond          -> shared_after
     | cond AND? alternatives          -> shared_before
alternatives: cond (OR cond)+
group: cond (AND? cond)*
cond: TERM CMP? NUM POST?            -> compare
    | TERM CMP? NUM NUM* (AND | OR) NUM -> one_of
    | TERM? CMP TERM NUM POST?       -> compare_before
    | TERM AND TERM CMP? REL         -> both
    | TERM CMP? RANGE                -> in_range
    | TERM CMP? REL                  -> relation
    | REL TERM                       -> relation_before
    | TERM CMP TERM BY NUM           -> difference_by
    | TERM CMP? DIFF TERM            -> difference
    | TERM CMP TERM                  -> terms
    | CMP? STEPS POST?               -> steps
    | COND                           -> whole
%declare TERM CMP NUM POST RANGE REL DIFF BY STEPS COND AND OR
"""


@dataclass(frozen=True)
class Entry:
    """One entry of a lexicon: words of ``kind`` matching ``pattern`` mean ``fragment``.

    Fragments by kind: ``TERM`` an expression ("x + y"; may use the numbers the pattern
    captures: "abs(x - {a}) + abs(y - {b})"); ``CMP`` and ``POST`` a comparison operator
    (">=": "at least", "or more"); ``RANGE`` and ``REL`` a condition on the term ``{t}``
    ("{a} <= {t} <= {b}", "{t} % 2 == 0"); ``DIFF`` a condition on two terms
    ("{t} - {u} == {n}": "4 more than"); ``STEPS`` an expression compared with the number
    ``{n}`` it captures ("3 steps from (5, 6)"); ``COND`` a whole condition; ``BY``, ``AND``
    and ``OR`` nothing; ``SKIP`` words read as nothing ("counting steps"); ``STOP`` words the
    lexicon must not read past ("but", "must": the clause is left to the student); ``SPLIT``
    words that join clauses ("unless", "it is false that"): a clause holding them is no
    primitive's, and its parse is dropped (``unreadable``); any other
    kind is a marker, handed to ``Lexicon.mark`` with the clause's condition. ``given``: numbers
    the words state without digits ("two steps": n=2)."""
    kind: str
    pattern: str
    fragment: str = ""
    given: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Lexicon:
    """A language's words: its ``entries`` and ``mark(kind, condition, markers)``, which rewrites
    a clause's condition for each marker it holds (None: the marker does not fit the condition;
    ``markers``: the kinds of all the clause's markers); ``bounds``: a condition true everywhere
    on the board, joined to each reading so that its edges are numbers a primitive may take);
    ``names``: the notation's names, so that a condition in symbols is marked too ("the border
    of the rectangle 6 <= x <= 11, 1 <= y <= 5": the symbols alone say the rectangle);
    ``filler``: a pattern of the words that say nothing about which moves a rule forbids
    ("the", "pieces"), so that any other word no entry reads is one the lexicon does not
    know (``unread``)."""
    entries: tuple[Entry, ...]
    mark: Callable[[str, str, tuple[str, ...]], str | None] = field(default=lambda kind, condition, markers: None)
    bounds: str = ""
    names: frozenset[str] = frozenset()
    filler: str = ""

    def __post_init__(self) -> None:
        for entry in self.entries:
            try:
                re.compile(entry.pattern)
            except re.error as exc:
                raise LDEngineError(f"lexicon entry {entry.pattern!r} is not a pattern: {exc}") from None


@dataclass(frozen=True)
class Tag:
    kind: str
    words: str
    fragment: str
    numbers: dict[str, str]
    span: tuple[int, int] = field(default=(0, 0), compare=False)    # where, in the clause's words


@lru_cache(maxsize=8)
def _compiled(lexicon: Lexicon) -> tuple[list[tuple[Entry, re.Pattern]], re.Pattern]:
    patterns = [(e, re.compile(WORD_START + "(?:" + e.pattern + ")" + WORD_END, re.IGNORECASE))
                for e in lexicon.entries]
    return patterns, re.compile(WORD_START + NUMBER + WORD_END)


def tag(lexicon: Lexicon, clause: str) -> list[Tag]:
    """The clause's tokens, left to right (the longest entry at each place; words no entry
    matches are skipped)."""
    return list(_tags(lexicon, clause))


@lru_cache(maxsize=2048)
def _tags(lexicon: Lexicon, clause: str) -> tuple[Tag, ...]:
    """``tag``, once per clause (``unreadable`` and ``read`` both ask for a rule's clauses)."""
    patterns, number = _compiled(lexicon)
    tags: list[Tag] = []
    pos = 0
    text = " ".join(clause.split())
    while pos < len(text):
        best: tuple[int, Entry, re.Match] | None = None
        for entry, pattern in patterns:
            m = pattern.match(text, pos)
            if m and m.end() > pos and (best is None or m.end() > best[0]):
                best = (m.end(), entry, m)
        if best is not None:
            end, entry, m = best
            groups = {**dict(entry.given), **{k: v for k, v in m.groupdict().items() if v is not None}}
            tags.append(Tag(entry.kind, m.group(0), entry.fragment, groups, m.span()))
            pos = end
            continue
        m = number.match(text, pos)
        if m:
            tags.append(Tag("NUM", m.group(0), "", {"n": m.group(0)}, m.span()))
            pos = m.end()
            continue
        word = WORD.match(text, pos)
        pos = word.end() if word else pos + 1
    # "the horizontal line y": one term, said twice
    return tuple(t for i, t in enumerate(tags)
                 if not (i and t.kind == "TERM" and tags[i - 1].kind == "TERM" and _term(t) == _term(tags[i - 1])))


class _Tokens(Lexer):
    """Hands the tagger's tokens to the parser as they are."""

    def __init__(self, conf: LexerConf) -> None:
        self.conf = conf          # Lark hands every lexer its configuration

    def lex(self, data: list[Token]) -> Iterator[Token]:    # type: ignore[override]
        yield from data


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="earley", lexer=_Tokens, ambiguity="explicit")


class _Composer:
    """One parse tree as a notation text (its tokens' values index ``tags``)."""

    def __init__(self, tags: list[Tag]) -> None:
        self.tags = tags

    def node(self, tree: Tree) -> Node:
        if tree.data in ("shared_after", "shared_before"):       # "row 5 or row 15 within columns 5 to 15"
            parts = [c for c in tree.children if isinstance(c, Tree)]
            return _joined("and", [_joined("or", [self.cond(c) for c in p.children if isinstance(c, Tree)])
                                   if p.data == "alternatives" else self.cond(p) for p in parts])
        groups = [_joined("and", [self.cond(c) for c in g.children if isinstance(c, Tree)])
                  for g in tree.children if isinstance(g, Tree)]
        return _joined("or", groups)

    def cond(self, tree: Tree) -> Node:
        tags = [self.tags[int(c)] for c in tree.children if isinstance(c, Token)]
        if tree.data == "one_of":                                 # "columns 3 and 17": either
            term = _term(tags[0])
            op = tags[1].fragment if tags[1].kind == "CMP" else "=="
            return _joined("or", [("cond", f"{term} {op} {t.words}") for t in tags if t.kind == "NUM"])
        return ("cond", self.condition(tree, tags))

    def condition(self, tree: Tree, tags: list[Tag]) -> str:
        by = {t.kind: t for t in tags}
        terms = [t for t in tags if t.kind == "TERM"]
        op = by["CMP"].fragment if "CMP" in by else "=="
        rule = tree.data
        if len(terms) == 2 and rule == "compare_before" and _term(terms[0]) != _term(terms[1]):
            raise ValueError("a comparison of one term with another's number")
        if rule == "both":
            self._no_comparison(by)
            return " and ".join("(" + _fill(by["REL"].fragment, by["REL"].numbers, t=_term(t)) + ")" for t in terms)
        if rule in ("compare", "compare_before"):
            if "POST" in by:
                if "CMP" in by and by["CMP"].fragment != "==":
                    raise ValueError("a comparison and a bound after the number")
                op = by["POST"].fragment
            return f"{_term(terms[0])} {op} {by['NUM'].words}"
        if rule == "in_range":
            self._no_comparison(by)
            term = _term(terms[0])
            return "(" + _fill(by["RANGE"].fragment, by["RANGE"].numbers, t=term) + ")"
        if rule in ("relation", "relation_before"):
            self._no_comparison(by)
            return "(" + _fill(by["REL"].fragment, by["REL"].numbers, t=_term(terms[0])) + ")"
        if rule == "difference_by":
            first, second = _term(terms[0]), _term(terms[1])
            n = by["NUM"].words
            if op in (">", ">="):
                return f"({first}) - ({second}) == {n}"
            if op in ("<", "<="):
                return f"({second}) - ({first}) == {n}"
            raise ValueError("a difference by a number needs more or less")
        if rule == "difference":
            self._no_comparison(by)
            return "(" + _fill(by["DIFF"].fragment, by["DIFF"].numbers, t=f"({_term(terms[0])})",
                               u=f"({_term(terms[1])})") + ")"
        if rule == "terms":
            return f"{_term(terms[0])} {op} {_term(terms[1])}"
        if rule == "steps":
            if "POST" in by:
                op = by["POST"].fragment
            steps = by["STEPS"]
            return f"({_fill(steps.fragment, steps.numbers)}) {op} {steps.numbers['n']}"
        return "(" + _fill(by["COND"].fragment, by["COND"].numbers) + ")"

    @staticmethod
    def _no_comparison(by: dict[str, Tag]) -> None:
        if "CMP" in by and by["CMP"].fragment != "==":
            raise ValueError("a comparison before a range or relation")


def _joined(op: str, parts: list[Node]) -> Node:
    return parts[0] if len(parts) == 1 else (op, *parts)


def text_of(node: Node) -> str:
    """The node as one condition of the notation."""
    if node[0] == "cond":
        return node[1]
    if node[0] == "not":
        return f"not ({text_of(node[1])})"
    return f" {node[0]} ".join(f"({text_of(part)})" for part in node[1:])


def _term(t: Tag) -> str:
    """The term's expression, in parentheses when it is more than a name ("(x + y) % 2 == 0")."""
    term = _fill(t.fragment, t.numbers)
    return term if term.isidentifier() else f"({term})"


def _fill(fragment: str, numbers: dict[str, str], **terms: str) -> str:
    return fragment.format(**numbers, **terms)


def read(lexicon: Lexicon, clause: str) -> list[Node]:
    """The conditions the clause's words compose into, one per distinct parse (none when the
    grammar cannot parse them): a node is ("cond", notation text), ("and"|"or", *nodes) or
    ("not", node); a marker other than ``NEG`` makes the whole clause one condition."""
    tags = [t for t in tag(lexicon, clause) if t.kind != "SKIP"]
    if any(t.kind in ("STOP", "SPLIT") for t in tags):
        return []
    markers = [t for t in tags if t.kind not in KINDS]
    if compares(NAMED.sub(" ", clause)):
        return _marked_symbols(lexicon, clause, markers)
    tags = [t for t in tags if t.kind in KINDS]
    tokens = [Token(t.kind, str(i)) for i, t in enumerate(tags)]
    if not tokens or len(tokens) > MAX_TOKENS:
        return []
    try:
        tree = _parser().parse(tokens)
    except LarkError:
        return []
    out: list[Node] = []
    for one in CollapseAmbiguities().transform(tree)[:MAX_TREES]:
        try:
            node = _Composer(tags).node(one)
        except (ValueError, KeyError, IndexError):
            continue
        marked = _marked(lexicon, node, markers)
        if marked is not None and marked not in out:
            out.append(marked)
    return out


def _marked(lexicon: Lexicon, node: Node, markers: list[Tag]) -> Node | None:
    """The node under each of the clause's markers in turn (None: one does not fit it)."""
    for marker in markers:
        if marker.kind == "NEG":
            node = node[1] if node[0] == "not" else ("not", node)
            continue
        marked = lexicon.mark(marker.kind, text_of(node), tuple(m.kind for m in markers))
        if marked is None:
            return None
        node = ("cond", marked)
    return node


def _marked_symbols(lexicon: Lexicon, clause: str, markers: list[Tag]) -> list[Node]:
    """A condition in symbols under the words' markers, where they change what it says (the
    border of a rectangle written in symbols); none where the symbols say it all (the notation
    reads them, ``rulelang.symbolic``)."""
    found = segments(clause, lexicon.names) if lexicon.names and markers else []
    if not found:
        return []
    # a marker says what the symbols after it are ("the border of the rectangle 2 <= x <= 6");
    # not one after them or in an aside ("y == 16 (the evader may stand on it)")
    first = " ".join(clause.split()).find(found[0][0])
    markers = [m for m in markers if first < 0 or m.span[1] <= first]
    if not markers:
        return []
    node: Node = _joined("and", [("cond", text) for text, _ in found])
    marked = _marked(lexicon, node, markers)
    return [marked] if marked is not None and marked != node else []
