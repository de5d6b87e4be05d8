"""A clause in words read by a lexicon and a grammar into the rule language's notation, no model.

A rule language may declare a *lexicon* (``RuleLanguage.lexicon``): entries, each a kind, a
pattern of words (a regular expression; named groups capture the numbers it states) and a
fragment of the language's notation (``ldengine.notation``). Reading a clause is tag, then
compose:

1. **Tag.** Left to right, the longest entry that matches at a word's start becomes a token of
   its kind (ties: the entry declared first); words no entry matches are not read (they are the
   rule's frame and filler: "a piece may not step onto the"). Whole numbers are ``NUM``.
2. **Parse.** A Lark grammar over the kinds (Earley, every parse kept) says how tokens make a
   condition: a term and a comparison with its number (``x`` ``greater than`` ``5``), a term
   and a range (``columns`` ``3 through 7``), a term and a relation (``column`` ``even``), a
   comparison before its term (``east of`` ``column 5``), two terms and a difference, a number
   of steps, or a whole condition (``the square at (4, 13)``); conditions side by side are
   joined by ``and``, ``or`` joins them explicitly (``and`` before ``or``); a condition beside
   alternatives may also hold for all of them ("row 5 or row 15 within columns 5 to 15": both
   parses are kept, so the reading is not one way and ``--yes`` refuses where they differ).
3. **Compose.** Each parse's conditions become one notation text ("3 <= x <= 7 and
   12 <= y <= 16"); markers anywhere in the clause (``NEG``: "outside"; the language's own,
   e.g. a border or where the piece starts) rewrite it through ``lexicon.mark``.

Each distinct text is then a condition in symbols, and the language says which primitives
denote exactly the same moves (``language.notation``). A clause the grammar cannot parse
(a number no condition takes, words in an order the grammar does not know) has no lexical
reading, and the student reads it as before; a clause with several readings is ranked by
the student (``rulelang.read``). Every number a reading states is one its clause states.
"""
from __future__ import annotations

import ast
import functools
import operator
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Sequence

from lark import Lark, Token, Tree
from lark.exceptions import LarkError
from lark.lexer import Lexer
from lark.visitors import CollapseAmbiguities

from ldengine.errors import LDEngineError
from ldengine.notation import compares, segments

if TYPE_CHECKING:
    from ldengine.contracts import RuleLanguage

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

    def __init__(self, conf: Any) -> None:
        self.conf = conf          # Lark hands every lexer its configuration

    def lex(self, data: Any) -> Any:                        # type: ignore[override]
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


def program(language: RuleLanguage, node: Node) -> Any:
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
    if node[0] == "not":
        return parts[0][1] if parts[0][0] == "Not" else ("Not", parts[0])
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


def _conjunction(language: RuleLanguage, node: Node) -> Any:
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


def _fits(language: RuleLanguage, prog: Any) -> bool:
    """Within the language's nesting and its number of primitives."""
    def walk(p: Any, d: int) -> tuple[int, int]:
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
def _vocabulary(language: Any) -> frozenset[str]:
    """The words of the language's frames, openers and connectives."""
    templates = [t for t, _ in language.frames] + list(language.openers) \
        + [t for ts in language.connectives.values() for t in ts]
    return frozenset(w.lower() for t in templates for w in re.findall(r"[^\W\d_]+", re.sub(r"\{\w+\}", " ", t)))
