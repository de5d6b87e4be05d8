"""Rules in words, read into a task's rule language.

A task may declare a *rule language* (``ldengine_register_rule_languages``): typed
primitives, each with the parameters it takes, combinators over them, a canonical English
rendering of any program, its denotation (which moves it forbids) and a compiler from a
program to an emergency kind (the teacher-style stage function and the referee's rule).

The student reads a rule in words into a program of that language instead of writing
Python token by token: its output is constrained by a grammar built for the text (the
language's names and brackets; each number a parameter takes is one the text states, or
one of the few values the parameter allows), so every answer is a well-formed program
whose numbers come from the text. Several programs are sampled; they are grouped by
denotation and ranked by votes, by the text's numbers all being used, by fewer primitives,
then by the greedy answer. Words the language cannot express (``language.outside(text)``, e.g.
a rule about the evader) are refused with the reason before any model loads. The grammar runs in llguidance (a Lark grammar, token masks computed in Rust).

Programs are nested tuples, ``("And", ("column", 5), ("Not", ("row", 7)))``, written
``And(column(5), Not(row(7)))``; ``parse_program`` reads that text with Python's own
parser and accepts only names, calls and whole numbers (nothing is evaluated).
"""
from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

from ldengine.contracts import RuleLanguage
from ldengine.errors import LDEngineError

Program = Any       # (name, *numbers) for a primitive, (combinator, *programs) for a combinator
NUMBER = re.compile(r"(?<![\w.])-?\d+(?![\w.]\d)")
MAX_NEW_TOKENS = 96
SAMPLES = 6             # sampled answers besides the greedy one
READER_PREFIX = "Read the rule into a program of the rule language.\n"


# ---- programs as text ------------------------------------------------------------------------

def program_text(program: Program) -> str:
    """``And(column(5), Not(row(7)))``."""
    name, args = program[0], program[1:]
    return f"{name}({', '.join(program_text(a) if isinstance(a, tuple) else str(a) for a in args)})"


def parse_program(text: str) -> Program:
    """The program written in ``text`` (names, calls, whole numbers; nothing else is accepted)."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise LDEngineError(f"not a program: {text!r} ({exc.msg})") from None
    return _node(tree, text)


def _node(node: ast.AST, text: str) -> Program:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        return (node.func.id, *(_arg(a, text) for a in node.args))
    raise LDEngineError(f"not a program: {text!r} (expected name(arguments))")


def _arg(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and type(node.operand.value) is int:
        return -node.operand.value
    return _node(node, text)


def primitives_in(program: Program, language: RuleLanguage) -> list[Program]:
    if program[0] in language.combinators:
        return [p for part in program[1:] for p in primitives_in(part, language)]
    return [program]


def numbers_in(text: str) -> list[int]:
    """The whole numbers the text states, each once, in order."""
    return list(dict.fromkeys(int(m.group()) for m in NUMBER.finditer(text)))


# ---- the grammar -----------------------------------------------------------------------------

def grammar(language: RuleLanguage, numbers: Sequence[int]) -> str:
    """A Lark grammar of the programs of ``language`` whose text-stated parameters are among
    ``numbers`` (nesting at most ``max_depth`` deep, never Not(Not(...)))."""
    lines, prims = [], []
    stated = sorted(set(numbers))
    for name, params in language.primitives.items():
        slots = []
        for allowed in params:
            values = stated if allowed is None else sorted(allowed)
            if not values:
                break
            slots.append("(" + " | ".join(f'"{v}"' for v in values) + ")")
        else:
            prims.append(f'"{name}(" ' + ' ", " '.join(slots) + ' ")"' if slots else f'"{name}()"')
    if not prims:
        raise LDEngineError("the text states no number any primitive of the rule language can take")
    lines.append("prim: " + "\n    | ".join(prims))
    unary = [c for c, n in language.combinators.items() if n == 1]
    binary = [c for c, n in language.combinators.items() if n == 2]
    below = "prim"
    for depth in range(1, language.max_depth + 1):
        rule = f"r{depth}"
        alts = ["prim"] + [f'"{c}(" {below}_nn ")"' for c in unary] \
            + [f'"{c}(" {below} ", " {below} ")"' for c in binary]
        lines.append(f"{rule}: " + "\n    | ".join(alts))
        # the same level without a negation at its top (what a negation may wrap)
        lines.append(f"{rule}_nn: prim" + "".join(f'\n    | "{c}(" {below} ", " {below} ")"' for c in binary))
        below = rule
    lines.insert(0, f"start: {below}")
    lines.append("prim_nn: prim")
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=4)
def _ll_tokenizer(tokenizer: Any) -> Any:
    import llguidance.hf
    return llguidance.hf.from_tokenizer(tokenizer)


class GrammarMask:
    """The tokens a grammar allows next, for one answer (llguidance's matcher, fed the tokens
    the answer took so far)."""

    def __init__(self, tokenizer: Any, lark: str):
        import llguidance
        self.matcher = llguidance.LLMatcher(_ll_tokenizer(tokenizer), lark, log_level=0)
        if self.matcher.is_error():
            raise LDEngineError(f"the rule language's grammar is refused: {self.matcher.get_error()}")
        self.taken = 0

    def __call__(self, answer: list[int]) -> Any:
        import torch
        for token in answer[self.taken:]:
            self.matcher.consume_token(token)
        self.taken = len(answer)
        bias = self.matcher.compute_logit_bias()
        return torch.frombuffer(bytearray(bias), dtype=torch.uint8).bool()


# ---- reading ---------------------------------------------------------------------------------

def reader_prefix(language: RuleLanguage) -> str:
    return READER_PREFIX + language.manual() + "\n"


def reader_prompt(text: str) -> str:
    return f"Rule: {text.strip()}\nProgram:"


def training_pairs(language: RuleLanguage, pairs: list[tuple[str, Program]]) -> list[tuple[str, str, str]]:
    """(prefix, prompt, answer) examples for ``Student.train_lora_text``."""
    prefix = reader_prefix(language)
    return [(prefix, reader_prompt(text), " " + program_text(program)) for text, program in pairs]


@dataclass
class Reading:
    """One denotation the sampled programs agree on: its first program, how many samples
    gave it, its canonical English, and why it is refused (None: usable)."""
    program: Program
    votes: int
    english: str
    refusal: str | None
    uses_every_number: bool
    programs: list[Program] = field(default_factory=list)

    @property
    def text(self) -> str:
        return program_text(self.program)


def read(student: Any, language: RuleLanguage, text: str, samples: int = SAMPLES, temperature: float = 0.7,
         seed: int = 0) -> list[Reading]:
    """The student's readings of ``text``, best first: the greedy answer and ``samples``
    sampled ones, each constrained to the grammar of ``language`` with the text's numbers,
    grouped by denotation (programs forbidding the same moves are one reading)."""
    numbers = numbers_in(text)
    lark = grammar(language, numbers)
    prefix, prompt = reader_prefix(language), reader_prompt(text)
    answers = []
    for n, temp in ((1, 0.0), (samples, temperature)):
        if n:
            masks = [GrammarMask(student.tokenizer, lark) for _ in range(n)]
            answers += student.generate_batch([prompt] * n, prefix=prefix, max_new_tokens=MAX_NEW_TOKENS,
                                              temperature=temp, seed=seed, allowed=masks)
    return rank(language, text, answers)


def rank(language: RuleLanguage, text: str, answers: list[str]) -> list[Reading]:
    """Group answers by denotation, best first: more votes, every stated number used, fewer
    primitives (the simpler reading), earlier."""
    numbers = set(numbers_in(text))
    groups: dict[Any, list[Program]] = {}
    for answer in answers:
        try:
            program = parse_program(answer)
            key = language.denotation(program)
        except LDEngineError:
            continue                        # cut off at the token limit
        if key is None:
            key = ("idle", program_text(program))
        groups.setdefault(key, []).append(program)
    readings = []
    for programs in groups.values():
        first = Counter(program_text(p) for p in programs).most_common(1)[0][0]
        program = next(p for p in programs if program_text(p) == first)
        used = {a for prim in primitives_in(program, language) for a in prim[1:]}
        readings.append(Reading(program, len(programs), language.english(program), language.refusal(program),
                                numbers <= used, programs))
    order = {id(r): i for i, r in enumerate(readings)}
    return sorted(readings, key=lambda r: (r.refusal is not None, -r.votes, not r.uses_every_number,
                                           len(primitives_in(r.program, language)), order[id(r)]))
