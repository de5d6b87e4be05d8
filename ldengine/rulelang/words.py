"""A rule's words split every way the language's frames and connectives allow: regions,
frames and their fillers, parses (trees of clauses joined by connectives).
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from ldengine import lexicon
from ldengine.contracts import RuleLanguage
from ldengine.notation import compares


HOLE = re.compile(r"\{(\w+)\}")
MAX_PARSES = 4000       # trees of one rule's words, at most (the rest are not enumerated)


@dataclass(frozen=True)
class Parse:
    """A tree over the words: a clause (``op`` None, its ``words``) or a combinator over
    parts; ``bare`` counts compound operands written without parentheses (each an ambiguity
    a careful writer avoids)."""
    op: str | None
    parts: tuple[Parse, ...] = ()
    words: str = ""
    bare: int = 0

    def clauses(self) -> list[str]:
        return [self.words] if self.op is None else [w for p in self.parts for w in p.clauses()]


def _normal(text: str) -> str:
    return " ".join(text.split()).strip().rstrip(".").strip()


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            return False
    return depth == 0


def _unwrap(text: str) -> tuple[str, bool]:
    """The text without parentheses around the whole of it, and whether it had them."""
    wrapped = False
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text, wrapped = text[1:-1].strip(), True
    return text, wrapped


def matches(template: str, text: str) -> list[dict[str, str]]:
    """Every way ``text`` fills ``template``'s holes (``{a}``): the literal words in between
    matched without regard to case, each hole with balanced parentheses and non-empty (but
    ``{_}``, words that are ignored)."""
    pieces = HOLE.split(template)
    literals, holes = [p.lower() for p in pieces[0::2]], pieces[1::2]
    low = text.lower()
    if not low.startswith(literals[0]) or not low.endswith(literals[-1]) \
            or len(low) < len(literals[0]) + len(literals[-1]):
        return []
    found: list[dict[str, str]] = []

    def fill(i: int, pos: int, taken: dict[str, str]) -> None:
        last = i == len(holes) - 1
        lit = literals[i + 1]
        ends = [len(low) - len(lit)] if last else [m.start() for m in re.finditer(re.escape(lit), low)] if lit else []
        for end in ends:
            if end <= pos:
                continue
            part = text[pos:end].strip().strip(",;:").strip()
            if (part or holes[i] == "_") and _balanced(part):
                got = {**taken, holes[i]: part}
                if last:
                    found.append(got)
                else:
                    fill(i + 1, end + len(lit), got)
    if holes:
        fill(0, len(literals[0]), {})
    return found


NEGATION = re.compile(r"(?:not|never|no longer|nowhere|no)\b", re.I)


def regions(language: RuleLanguage, text: str) -> list[tuple[bool, str]]:
    """(forbidden, words of the region) of ``framed``, without its subject."""
    return [(forbids, words) for forbids, words, _, _ in framed(language, text)]


def framed(language: RuleLanguage, text: str) -> list[tuple[bool, str, str, str]]:
    """(forbidden, words of the region, subject, heading): the rule's frame (``language.frames``) that
    starts first in the text (of two at the same place, the longer: "only if" before "if"),
    then any opening frames (``{r}`` alone after words, e.g. "the following holds: {r}") at the
    region's start; the whole text as a forbidden region when no frame fits. The words before
    a frame are its subject where the lexicon reads a condition in them ("pieces standing in
    columns 0 to 4 may not move west": the rule holds for those moves only), else ignored
    (""); a frame is not taken where those words hold one the lexicon must not read past
    ("eastward moves are forbidden except when ...": no "when" frame there). Where the region
    is written in symbols, words before a colon are its heading, not its subject ("A wall
    stands between columns 6 and 7 for rows 10 to 16: a move ... is forbidden when min(px, x)
    <= 6 < ...": the symbols state the rule)."""
    text = " " + _normal(text)            # a frame's words may open the text
    best: tuple[int, int, bool, str, str] | None = None    # (where the frame's words start, -their length,
    #                                                          forbids, region, words before the frame)
    for template, forbids in language.frames:
        found = matches(template, text)
        if found and not forbids:       # "must not cross": no region of allowed moves
            found = [m for m in found if not NEGATION.match(m["r"])]
        if found and template.startswith("{_}"):
            found = [m for m in found if not lexicon.stops(language, m["_"])]
        if found and template.startswith("{_}"):
            m = min(found, key=lambda m: len(m["_"]))
            key = (len(m["_"]), -len(HOLE.sub("", template)), forbids, m["r"], m["_"])
        elif found:
            key = (0, -len(HOLE.sub("", template)), forbids, found[0]["r"], "")
        else:
            continue
        best = key if best is None or key[:2] < best[:2] else best
    if best is None:
        return [(True, text.strip(), "", "")]
    forbids, words, subject, heading = best[2], best[3], best[4], ""     # subject: the words before the frame
    if ":" in subject and compares(words):
        heading, subject = subject.rsplit(":", 1)
    subject = subject if lexicon.states(language, subject) else ""
    opened = True
    while opened:
        opened = False
        for template in language.openers:
            found = matches(template, words)
            if found:
                words, opened = found[0]["r"], True
    return [(forbids, words, subject.strip(), heading)]


def parses(language: RuleLanguage, words: str, depth: int | None = None) -> list[Parse]:
    """Every tree of ``words`` under the language's connectives (``language.connectives``),
    at most ``max_depth`` combinators deep and ``max_primitives`` clauses, never Not(Not(...))."""
    memo: dict[tuple[str, int], list[Parse]] = {}
    return _parses(language, _normal(words), language.max_depth if depth is None else depth, memo)


def _parses(language: RuleLanguage, words: str, depth: int, memo: dict) -> list[Parse]:
    key = (words, depth)
    if key in memo:
        return memo[key]
    inner, _ = _unwrap(words)
    out = [Parse(None, words=inner)]
    for op, templates in language.connectives.items() if depth > 0 else ():
        for template in templates:
            for m in matches(template, inner):
                options = []
                for hole in sorted(m):
                    sub = _parses(language, m[hole], depth - 1, memo)
                    if op == "Not":
                        sub = [p for p in sub if p.op != "Not"]
                    bare = 0 if _unwrap(m[hole])[1] else 1
                    options.append([(p, bare if p.op is not None else 0) for p in sub])
                for combo in itertools.product(*options):
                    parts = tuple(p for p, _ in combo)
                    if sum(len(p.clauses()) for p in parts) <= language.max_primitives and len(out) < MAX_PARSES:
                        out.append(Parse(op, parts, bare=sum(p.bare + b for p, b in combo)))
    memo[key] = out
    return out


# ---- reading ---------------------------------------------------------------------------------
