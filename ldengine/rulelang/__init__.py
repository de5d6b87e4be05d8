"""Rules in words, read into a task's rule language.

A task may declare a *rule language* (``ldengine_register_rule_languages``): typed
primitives, each with the parameters it takes, combinators over them, a canonical English
rendering of any program, its denotation (which moves it forbids) and a compiler from a
program to an emergency kind (the teacher-style stage function and the referee's rule).

The student reads a rule in words into a program of that language instead of writing
Python token by token, one clause at a time (tag, then compose): the language's frames
and connectives split the words every way they can (``regions``, ``parses``); the student
reads each candidate clause into one primitive or ``none`` under a grammar built for that
clause (the language's names; each number a parameter takes is one the clause states, or
one of the few values the parameter allows), run in llguidance (a Lark grammar, token masks
computed in Rust); each parse composes its clauses' programs and is scored by their
log-probabilities; parses are grouped by denotation, best first. Words the language cannot
express (``language.outside(text)``, e.g. a rule about the evader) are refused with the
reason before any model loads.

Programs are nested tuples, ``("And", ("column", 5), ("Not", ("row", 7)))``, written
``And(column(5), Not(row(7)))``; ``parse_program`` reads that text with Python's own
parser and accepts only names, calls and whole numbers (nothing is evaluated).

The package: ``grammar`` (programs as text, a clause's grammar), ``words`` (the words split by
frames and connectives) and ``reader`` (clauses read, parses composed, readings ranked).
"""
from __future__ import annotations

from ldengine.rulelang.grammar import (MAX_NEW_TOKENS, NUMBER, GrammarMask, Program, clause_grammar, numbers_in,
                                       parse_program, primitives_in, program_text)
from ldengine.rulelang.words import (HOLE, MAX_PARSES, NEGATION, Parse, framed, matches, parses, regions)
from ldengine.rulelang.reader import (BARE_PENALTY, MARGIN, NAMES_K, READER_PREFIX, UNUSED_PENALTY, Namer, Reading,
                                      clause_training, compose, own_clauses, rank, read, read_clauses,
                                      read_without_model, reader_prefix, reader_prompt, symbolic, template_key)

__all__ = [
    'MAX_NEW_TOKENS', 'NUMBER', 'GrammarMask', 'Program', 'clause_grammar', 'numbers_in', 'parse_program',
    'primitives_in', 'program_text', 'HOLE', 'MAX_PARSES', 'NEGATION', 'Parse', 'framed', 'matches', 'parses',
    'regions', 'BARE_PENALTY', 'MARGIN', 'NAMES_K', 'READER_PREFIX', 'UNUSED_PENALTY', 'Namer', 'Reading',
    'clause_training', 'compose', 'own_clauses', 'rank', 'read', 'read_clauses', 'read_without_model',
    'reader_prefix', 'reader_prompt', 'symbolic', 'template_key']
