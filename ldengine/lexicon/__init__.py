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

The package: ``tagging`` (entries, tags, the grammar, readings as conditions) and ``programs``
(readings as a rule language's programs, and the words no entry reads).
"""
from __future__ import annotations

from ldengine.lexicon.tagging import (Entry, GRAMMAR, KINDS, Lexicon, MAX_TOKENS, MAX_TREES, NAMED, NUMBER, Node, Tag,
                                      WORD, WORD_END, WORD_START, read, tag, text_of)
from ldengine.lexicon.programs import (NEUTRAL, POSSESSIVE, STATING, WORDS, program, readings, states, stops, unread,
                                       unreadable)

__all__ = [
    'Entry', 'GRAMMAR', 'KINDS', 'Lexicon', 'MAX_TOKENS', 'MAX_TREES', 'NAMED', 'NUMBER', 'Node', 'Tag', 'WORD',
    'WORD_END', 'WORD_START', 'read', 'tag', 'text_of', 'NEUTRAL', 'POSSESSIVE', 'STATING', 'WORDS', 'program',
    'readings', 'states', 'stops', 'unread', 'unreadable']
