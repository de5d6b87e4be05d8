"""Programs of a rule language as text, and the grammar one clause is read under
(the language's names; the numbers the clause states), as llguidance token masks.
"""
from __future__ import annotations

import ast
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

from ldengine.contracts import RuleLanguage
from ldengine.errors import LDEngineError

if TYPE_CHECKING:
    import torch
    from llguidance import LLTokenizer
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast


Program = tuple     # (name, *numbers) for a primitive, (combinator, *programs) for a combinator


NUMBER = re.compile(r"(?:(?<![\w.])|(?<=\.\.))-?\d+(?![\w.]\d)")     # "3..7" states 3 and 7; "1.5" nothing
MAX_NEW_TOKENS = 32      # one clause's primitive


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


def _arg(node: ast.AST, text: str) -> int | Program:
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

def clause_grammar(language: RuleLanguage, numbers: Sequence[int], none: bool = True,
                   only: Sequence[Program] | None = None, names: Sequence[str] | None = None) -> str:
    """A Lark grammar of one clause's reading: a primitive of ``language`` whose text-stated
    parameters are among ``numbers`` (the clause's own), or (with ``none``) ``none``: the words
    are not one clause (several joined, a fragment, the rule's frame) or not known words.
    ``only``: exactly these primitives (those the clause's symbols denote); ``names``: only
    primitives of these names (all, where none of them fits the clause's numbers)."""
    if only is not None:
        prims = [f'"{program_text(p)}"' for p in only]
    else:
        prims = _prim_lines(language, numbers, names) or _prim_lines(language, numbers)
    # the answer starts with a space, as the reader's training answers do (" column(5)")
    top = '" " (prim | "none")' if none else '" " prim'
    return f"start: {top}\nprim: " + "\n    | ".join(prims) + "\n"


def _prim_lines(language: RuleLanguage, numbers: Sequence[int], names: Sequence[str] | None = None) -> list[str]:
    """One grammar alternative per primitive (of ``names``, if given) whose parameters the
    clause's numbers can fill."""
    prims = []
    stated = sorted(set(numbers))
    for name, params in language.primitives.items():
        if names is not None and name not in names:
            continue
        slots = []
        for allowed in params:
            values = stated if allowed is None else sorted(allowed)
            if not values:
                break
            slots.append("(" + " | ".join(f'"{v}"' for v in values) + ")")
        else:
            prims.append(f'"{name}(" ' + ' ", " '.join(slots) + ' ")"' if slots else f'"{name}()"')
    return prims


@lru_cache(maxsize=4)
def _ll_tokenizer(tokenizer: PreTrainedTokenizerFast) -> LLTokenizer:
    import llguidance.hf
    return llguidance.hf.from_tokenizer(tokenizer)


class GrammarMask:
    """The tokens a grammar allows next, for one answer (llguidance's matcher, fed the tokens
    the answer took so far)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, lark: str):
        import llguidance
        self.matcher = llguidance.LLMatcher(_ll_tokenizer(tokenizer), lark, log_level=0)
        if self.matcher.is_error():
            raise LDEngineError(f"the rule language's grammar is refused: {self.matcher.get_error()}")
        self.taken = 0

    def __call__(self, answer: list[int]) -> torch.Tensor:
        import torch
        for token in answer[self.taken:]:
            self.matcher.consume_token(token)
        self.taken = len(answer)
        bias = self.matcher.compute_logit_bias()
        return torch.frombuffer(bytearray(bias), dtype=torch.uint8).bool()


# ---- splitting the words: frames, connectives, clauses -------------------------------------
