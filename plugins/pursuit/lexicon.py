"""Pursuit's words for its rule language: what ``ldengine.lexicon`` tags and composes.

Each entry says what some words mean in the notation over a move from (px, py) to (x, y):
terms ("x coordinate", "column", "the sum of its coordinates"), comparisons ("greater than",
"east of", "at least"), ranges ("3 through 7"), relations ("even", "a multiple of 3"),
whole conditions ("the square at (4, 13)", "moves east", "stays put") and markers that
rewrite a clause ("the border of ...", "a pursuer standing in ...", "a wall ... between
columns 13 and 14 ..."). Words are written once here, for the language; none of them was
taken from a referee's rules.
"""
from __future__ import annotations

import re

from ldengine.lexicon import Entry, Lexicon
from ldengine_plugins.pursuit import rule_shapes as rs

N = r"(?P<{}>-?\d+)"
A, B, C, D = (N.format(k) for k in "abcd")
NUM = N.format("n")
PAIR = r"\(\s*{}\s*,\s*{}\s*\)"
CELL = r"(?:(?:the )?(?:cell|square|tile|point|position|spot|location|space|coordinates?|grid cell) )?(?:at |located at |of )?"
# Cells: a move lands on (x, y) from (px, py).
X_WORDS = (r"x(?:[- ]?(?:coordinates?|values?|positions?|index|co-ordinates?))?|columns?(?: numbers?| index)?"
           r"|vertical (?:lines?|strips?)|(?:east-west|horizontal) (?:coordinate|position)")
Y_WORDS = (r"y(?:[- ]?(?:coordinates?|values?|positions?|index|co-ordinates?))?|rows?(?: numbers?| index)?"
           r"|horizontal (?:lines?|strips?)|(?:north-south|vertical) (?:coordinate|position)")
MOVE = (r"(?:moves?|moving|moved|steps?|stepping|goes|go|going|heads?|heading|travel(?:s|s?ing|led|ed)?|"
        r"walks?|walking|runs?|running|shifts?|shifting|jumps?|jumping)")
LENGTH = "abs(x - px) + abs(y - py)"
EDGE = rs.SIZE - 1              # the board's last column and row
UNIT = r"(?:steps?|cells?|squares?|spaces?|tiles?|moves?|units?)"
ASIDE = r"(?: ?\([a-z ]+\)|, [a-z ]+,)?"          # "3 steps (Manhattan distance) away", "5 steps, counted as ..., of"


# After a direction said alone: not a place ("north of row 5", "the north-west corner", "the east edge").
PLACE_AFTER = (r"(?![-\w]| (?:of|than|corners?|edges?|sides?|half|halves|parts?|ends?|borders?|quarters?|regions?|areas?"
               r"|zones?|cells?|squares?|rows?|columns?)\b)")


def _direction(cardinal: str, relative: str) -> str:
    """A move toward a compass point (``cardinal``: "east") or a side (``relative``: "right"):
    "to the east" (after a verb of moving or not), the compass point's word alone ("east",
    "eastward") where no place follows it ("east of column 5" is a place), the side's word only
    after a verb of moving ("moves up"; "ends up in row 16" is no move up)."""
    amount = r"(?:(?:one |a |any )?(?:steps? |cells? |squares? )?)?"
    return (rf"(?:{MOVE} )?{amount}(?:to|toward|towards|into) the (?:{cardinal}|{relative})"
            rf"|(?:{MOVE} )?{amount}(?:{cardinal})(?:wards?)?{PLACE_AFTER}"
            rf"|{MOVE} {amount}(?:{relative})(?:wards?)?{PLACE_AFTER}")


ENTRIES = (
    # terms
    Entry("TERM", X_WORDS, "x"),
    Entry("TERM", Y_WORDS, "y"),
    Entry("TERM", r"x ?\+ ?y|x plus y|y plus x|y ?\+ ?x|(?:the )?sum of (?:its |the |their |the (?:cell|destination|target|square)'?s? )?(?:two )?"
                  r"(?:coordinates|x and y|x- and y-coordinates|column and row(?: numbers)?)"
                  r"|(?:the )?(?:two )?coordinates,? (?:when )?(?:added together|summed)?(?:add up|sum|total)(?: to)?"
                  r"|x and y (?:together )?(?:add up|sum|total)(?: to)?|coordinate sum|column plus row|row plus column"
                  r"|(?:the )?column and row(?: numbers| coordinates| indices)? (?:add up|sum|total)(?: to)?", "x + y"),
    Entry("TERM", r"x ?- ?y|x minus (?:its |the )?y|(?:the )?difference (?:between|of) x and y|x - y|column minus row", "x - y"),
    Entry("TERM", r"y ?- ?x|y minus (?:its |the )?x|row minus column", "y - x"),
    Entry("TERM", r"px|(?:the )?(?:pursuer'?s? )?(?:starting|start|current|original|own) (?:column|x(?:[- ]coordinate)?)",
          "px"),
    Entry("TERM", r"py|(?:the )?(?:pursuer'?s? )?(?:starting|start|current|original|own) (?:row|y(?:[- ]coordinate)?)",
          "py"),
    Entry("TERM", rf"(?:the )?(?:manhattan |taxicab |city-block |grid |step )?distance (?:from|to|between) (?:the )?"
                  rf"{CELL}{PAIR.format(A, B)}(?: and (?:the )?(?:cell|square|destination|target))?",
          "abs(x - {a}) + abs(y - {b})"),
    Entry("TERM", r"(?:the |a |any )?(?:move'?s? |step'?s? |moves? of |steps? of )?(?:manhattan |taxicab )?(?:length|size)"
                  r"(?: of (?:the |a |its )?(?:move|step|jump))?|(?:the )?distance of (?:the |a |its )?(?:move|step|jump)"
                  r"|(?:the )?(?:number of|how many) (?:steps|cells|squares)(?: (?:moved|taken|travell?ed))?"
                  r"|(?:the )?distance (?:moved|travell?ed|covered)", LENGTH),
    # comparisons, before a number (or a term and its number: "east of column 5")
    Entry("CMP", r"(?:is |are )?(?:strictly )?(?:greater|more|larger|bigger|higher|further east|further north) than"
                 r"|exceeds?|exceeding|above|beyond|past|(?:to the )?(?:east|right) of|(?:to the )?north of"
                 r"|>|strictly east of|strictly north of", ">"),
    Entry("CMP", r"(?:is |are )?(?:at least|(?:greater|more|larger|bigger|higher) than or equal to|no (?:less|lower|smaller) than"
                 r"|not (?:less|lower|smaller) than|not below)|>=|≥", ">="),
    Entry("CMP", r"(?:is |are )?(?:strictly )?(?:less|smaller|lower|fewer|further west|further south) than|below|under"
                 r"|(?:to the )?(?:west|left) of|(?:to the )?south of|<|strictly west of|strictly south of", "<"),
    Entry("CMP", r"(?:is |are )?(?:at most|no (?:more|greater|larger|higher|bigger|farther|further) than|(?:less|smaller|lower) than or equal to"
                 r"|not (?:more|greater|larger|higher) than|not above|up to(?: and including)?"
                 r"|within(?! (?:the |a |an )?(?:box|square|block|area|region|zone|rectangle|band|strip|columns?|rows?)\b))"
                 r"|<=|≤", "<="),
    Entry("CMP", r"(?:is |are )?(?:equal to|equals?|exactly|=|==|of|at|is|are|numbered|number|set to|of exactly|"
                 r"is exactly|are exactly|equal)(?=\s*-?\d)", "=="),
    Entry("CMP", r"(?:is not|isn't|are not|aren't|does not equal|doesn't equal|not equal to|other than|different from|"
                 r"differs from|!=|≠)(?=\s*-?\d)", "!="),
    Entry("CMP", r"(?:is |are )?(?:equal to|equals?|the same as|matches)(?= (?:its |the |their )?[xy]\b)", "=="),
    # bounds after a number: "column 11 or more"
    Entry("POST", r"or (?:more|higher|greater|larger|above|beyond|further (?:east|north|up|right))"
                  r"|and (?:above|beyond|up|higher|greater|over|upward|onward|more)|onwards?|or over|and after", ">="),
    Entry("POST", r"or (?:less|lower|fewer|smaller|below|further (?:west|south|down|left))|and (?:below|under|down|lower|less)"
                  r"|or under|or before|and before", "<="),
    # ranges of a term
    Entry("RANGE", rf"(?:is |are )?(?:in the range |ranging )?(?:from )?{A} ?(?:to|through|thru|until|till|-|–|\.\.|up to"
                   rf"|up to and including) ?{B}(?: inclusive(?:ly)?| included| both included)?", "{a} <= {t} <= {b}"),
    Entry("RANGE", rf"(?:is |are )?between {A} and {B}(?: inclusive(?:ly)?| included)?", "{a} <= {t} <= {b}"),
    # relations of a term
    Entry("REL", r"(?:is |are )?(?:an? )?even(?:[- ]numbered)?(?: numbers?| values?| totals?| sums?)?"
                 r"|(?:is |are )?divisible by 2|(?:is |are )?(?:a )?multiples? of 2", "{t} % 2 == 0"),
    Entry("REL", r"(?:is |are )?(?:an? )?odd(?:[- ]numbered)?(?: numbers?| values?| totals?| sums?)?"
                 r"|(?:is |are )?not divisible by 2", "{t} % 2 == 1"),
    Entry("REL", r"(?:is |are )?(?:(?:a )?multiples? of|(?:evenly |exactly )?divisible by) " + N.format("k"),
          "{t} % {k} == 0"),
    Entry("REL", r"(?:leaves|leaving|has|having|with|gives|giving) (?:a )?remainder (?:of )?" + N.format("r")
          + r",? (?:when|after|on being|upon being|if) (?:it is |they are )?(?:divided|dividing(?: it)?) by " + N.format("k"),
          "{t} % {k} == {r}"),
    Entry("REL", r"(?:leaves|leaving|has|having|with|gives|giving) (?:a )?remainder (?:of )?" + N.format("r")
          + r",? (?:after|on|upon|under|in) division by " + N.format("k"), "{t} % {k} == {r}"),
    Entry("REL", r",? (?:when|after|if) (?:it is |they are )?divided by " + N.format("k")
          + r",? (?:leaves|gives|has|leaving) (?:a )?remainder (?:of )?" + N.format("r"), "{t} % {k} == {r}"),
    Entry("REL", r"(?:is |are )?(?:congruent to |equal to |≡ ?)?" + N.format("r") + r" (?:mod|modulo) " + N.format("k"),
          "{t} % {k} == {r}"),
    Entry("REL", r"(?:is |are )?" + N.format("r") + r" (?:more|greater|larger) than (?:a )?multiples? of " + N.format("k"),
          "{t} % {k} == {r}"),
    Entry("REL", r"(?:mod|modulo) " + N.format("k") + r" ?(?:is |equals |gives |leaves |== ?|= ?)?" + N.format("r"),
          "{t} % {k} == {r}"),
    # two terms: "x is 11 more than y", "x exceeds y by 4"
    Entry("DIFF", NUM + r" (?:more|greater|larger|higher|bigger) than", "{t} - {u} == {n}"),
    Entry("DIFF", NUM + r" (?:less|smaller|lower|fewer) than", "{u} - {t} == {n}"),
    *(Entry("DIFF", rf"{word} (?:more|greater|larger|higher|bigger) than", "{t} - {u} == {n}", (("n", str(n)),))
      for n, word in enumerate(("zero", "one", "two", "three", "four", "five"))),
    *(Entry("DIFF", rf"{word} (?:less|smaller|lower|fewer) than", "{u} - {t} == {n}", (("n", str(n)),))
      for n, word in enumerate(("zero", "one", "two", "three", "four", "five"))),
    Entry("BY", r"by"),
    Entry("AND", r",? ?(?:and|as well as|while|whilst|&)(?: also| at the same time)?|,? but only(?: in| on| when| where| if)?"),
    Entry("OR", r"or|nor"),
    # numbers of steps: of the move, or from a cell
    Entry("STEPS", NUM + rf"[- ]{UNIT}(?: long| in length| in one move| at once| away)?(?: or fewer)?"
                         rf"(?= (?!from|of|away)|$|[,.;])", LENGTH),
    Entry("STEPS", NUM + rf"[- ]{UNIT}?{ASIDE} ?(?:away )?(?:from|of|to) (?:the )?(?:[a-z]+ ){{0,3}}{PAIR.format(A, B)}",
          "abs(x - {a}) + abs(y - {b})"),
    Entry("STEPS", rf"(?:a |the )?(?:manhattan |taxicab |grid |city-block )?distance (?:of )?(?:at most |no more than |up to )?"
                   rf"{NUM}{ASIDE} ?(?:away )?(?:of|from|to) (?:the )?(?:[a-z]+ ){{0,3}}{PAIR.format(A, B)}",
          "abs(x - {a}) + abs(y - {b})"),
    # whole conditions
    *(Entry("COND", pattern.format(w=words, A=A, B=B), f"{{a}} <= {t} <= {{b}}")
      for words, t in ((r"columns?|x", "x"), (r"rows?|y", "y"))
      for pattern in (r"between (?:{w}) ?(?:= ?)?{A} and (?:(?:{w}) ?(?:= ?)?)?{B}",
                      r"from (?:{w}) ?(?:= ?)?{A} (?:to|through|until|up to) (?:(?:{w}) ?(?:= ?)?)?{B}",
                      r"(?:{w}) ?(?:= ?)?{A} (?:to|through|until|-|–) (?:{w}) ?(?:= ?)?{B}")),
    Entry("COND", CELL + PAIR.format(A, B), "x == {a} and y == {b}"),
    Entry("COND", rf"(?:the )?(?:box|rectangle|block|area|region|zone|square)?(?: with corners| spanning| running)?"
                  rf" ?(?:from|between) (?:the )?(?:cells? |corners? |squares? |points? )?{PAIR.format(A, B)} "
                  rf"(?:to|and|through|up to) (?:the )?(?:cells? |corners? |squares? |points? )?{PAIR.format(C, D)}"
                  r"(?: inclusive(?:ly)?| included)?",
          "{a} <= x <= {c} and {b} <= y <= {d}"),
    Entry("COND", rf"(?:the )?(?:box|rectangle|block|area|region|zone)? ?(?:with|whose) (?:opposite )?corners (?:are |at )?"
                  rf"{PAIR.format(A, B)} and {PAIR.format(C, D)}",
          "{a} <= x <= {c} and {b} <= y <= {d}"),
    *(Entry("COND", rf"(?:{MOVE} )?straight (?:{words})(?:wards?)?", condition)
      for words, condition in (("east|right", "x > px and y == py"), ("west|left", "x < px and y == py"),
                               ("north|up", "y > py and x == px"), ("south|down", "y < py and x == px"))),
    *(Entry("COND", rf"(?:(?:further|farther|more) )?(?:{words})(?:wards?)? (?:than|of) "
                    r"(?:(?:where )?(?:it|they|the pursuer) (?:started|began|starts?|begins?|stood|stands?|was|were|is|are)"
                    r"|(?:its|their|the) (?:own )?(?:start(?:ing)?|original|current|previous|old) (?:cell|square|position|point|spot|place))",
            condition)
      for words, condition in (("east|right", "x > px"), ("west|left", "x < px"), ("north|up", "y > py"),
                               ("south|down", "y < py"))),
    *(Entry("COND", rf"(?:in |on |into )?the (?:same |very )?{line} (?:it|they|the pursuer) (?:began|started|starts?|begins?|stood|"
                    rf"stands?|was|were|is|are)(?: (?:it|the move|its move|their move))?(?: in| on| from)?", condition)
      for line, condition in (("column", "x == px"), ("row", "y == py"))),
    Entry("COND", _direction("east", "right"), "x > px"),
    Entry("COND", _direction("west", "left"), "x < px"),
    Entry("COND", _direction("north", "up|upper side"), "y > py"),
    Entry("COND", _direction("south", "down|lower side"), "y < py"),
    *(Entry("COND", rf"(?:{up}) (?:its |their |the |a )?(?:pursuer'?s? |chaser'?s? )?{v}(?:[- ]coordinate)?"
                    rf"|{v}(?:[- ]coordinate)? (?:{ups})|(?:a )?(?:{bigger}) {v}(?:[- ]coordinate)? than (?:the one|where|what) (?:it|they)"
                    r" (?:started|began|start|had|stood)(?: from| with| at| in)?", condition)
      for v, up, ups, bigger, condition in (
          ("x", r"increas\w*|rais\w*|grow\w*", "increases|grows|goes up|rises", "larger|greater|bigger|higher", "x > px"),
          ("x", r"decreas\w*|lower\w*|reduc\w*", "decreases|shrinks|goes down|drops|falls", "smaller|lower|less", "x < px"),
          ("y", r"increas\w*|rais\w*|grow\w*", "increases|grows|goes up|rises", "larger|greater|bigger|higher", "y > py"),
          ("y", r"decreas\w*|lower\w*|reduc\w*", "decreases|shrinks|goes down|drops|falls", "smaller|lower|less", "y < py"))),
    *(Entry("COND", rf"(?:{words})(?:[- ]coordinate)? (?:does not|doesn't|never|did not|didn't) change|(?:does not|doesn't|never) chang\w* "
                    rf"(?:its |their |the )?(?:pursuer'?s? )?(?:{words})(?:[- ]coordinate)?", condition)
      for words, condition in (("x|column", "x == px"), ("y|row", "y == py"))),
    Entry("COND", rf"{MOVE} (?:straight )?(?:vertically|(?:up or down|north or south)(?: only)?)|vertical (?:moves?|steps?)"
                  r"|(?:keeps?|keeping|stays? in|staying in|remains? in|remaining in|within|stays? on|stays? within) "
                  r"(?:its|the same|their|one) (?:own |current )?column|(?:the )?same column"
                  r"|(?:does not|doesn't|without|never) chang\w* (?:its |their |the )?(?:column|x(?:[- ]coordinate)?)",
          "x == px"),
    Entry("COND", rf"{MOVE} (?:straight )?(?:horizontally|sideways|(?:left or right|east or west)(?: only)?)|horizontal (?:moves?|steps?)"
                  r"|(?:keeps?|keeping|stays? in|staying in|remains? in|remaining in|within|stays? on|stays? within) "
                  r"(?:its|the same|their|one) (?:own |current )?row|(?:the )?same row"
                  r"|(?:does not|doesn't|without|never) chang\w* (?:its |their |the )?(?:row|y(?:[- ]coordinate)?)",
          "y == py"),
    # both coordinates at once: "cells with both coordinates even"
    *(Entry("COND", rf"both (?:of )?(?:its |their |the )?(?:coordinates|x and y)(?: are| being)? {parity}"
                    rf"|(?:its |their |the )?(?:coordinates|x and y) (?:are )?both {parity}", condition)
      for parity, condition in (("even", "x % 2 == 0 and y % 2 == 0"), ("odd", "x % 2 == 1 and y % 2 == 1"))),
    Entry("COND", r"stay(?:s|ing)? (?:put|still|in place|where (?:it|they) (?:is|are)|on (?:its|the same) (?:cell|square))"
                  r"|stand(?:s|ing)? still|(?:does not|doesn't|do not|don't|not|never) mov(?:e|es|ing)"
                  r"|remain(?:s|ing)? (?:in place|still|where (?:it|they) (?:is|are)|on (?:its|the same) (?:cell|square))"
                  r"|wait(?:s|ing)?(?: in place)?|pass(?:es|ing)? (?:its|the|a|their) turn|(?:a |the )?(?:null|zero(?:-length)?|empty) moves?"
                  r"|hold(?:s|ing)? (?:its |their )?(?:position|ground)|skip(?:s|ping)? (?:its |their |a )?(?:move|turn)"
                  r"|(?:ends?|ending) (?:its move )?(?:on|in|at) (?:the same|its own|its starting|its current) (?:cell|square)",
          "x == px and y == py"),
    *(Entry("STEPS", rf"(?:a |any )?{n}[- ]step(?: moves?| long)?|(?:a |any )?{n}[- ](?:cell|square|space) moves?"
                     rf"|(?:a |any )?moves? of {n} (?:steps?|cells?|squares?|spaces?)"
                     rf"|(?:covers?|covering|spans?|spanning|travels?|travell?ing|crosses|crossing) (?:exactly )?{n} "
                     rf"(?:steps?|cells?|squares?|spaces?)", LENGTH, (("n", str(value)),))
      for n, value in (("(?:single|one)", 1), ("(?:double|two)", 2), ("(?:zero|no)", 0))),
    # the board's own places: its corners, its edge lines and its outer ring ("the north-east corner")
    *(Entry("COND", rf"(?:the )?(?:{ns}[- ]?{ew}|{vert}[- ]{side})(?:ern)?(?:most)? corner(?: cell| square| tile)?"
                    r"(?: of the (?:board|grid))?", f"x == {x} and y == {y}")
      for ns, ew, vert, side, x, y in (("north", "east", "top", "right", EDGE, EDGE), ("north", "west", "top", "left", 0, EDGE),
                                        ("south", "east", "bottom", "right", EDGE, 0), ("south", "west", "bottom", "left", 0, 0))),
    *(Entry("COND", rf"(?:the )?(?:{line} )?(?:along|on|at) the (?:{side})(?:ern)? edge(?: of the (?:board|grid))?"
                    rf"|(?:the )?(?:{side})(?:ern)?most {line}(?: of the (?:board|grid))?"
                    rf"|(?:the )?(?:{side})(?:ern)? edge {line}", condition)
      for side, line, condition in (("east|right", "column", f"x == {EDGE}"), ("west|left", "column", "x == 0"),
                                    ("north|top", "row", f"y == {EDGE}"), ("south|bottom", "row", "y == 0"))),
    Entry("COND", r"(?:the )?(?:board'?s|grid'?s) (?:outer )?(?:edges?|border|rim|perimeter|outer ring)"
                  r"|(?:the )?(?:outer )?(?:edges?|border|rim|perimeter|outer ring|outermost (?:ring|cells|squares)) of the (?:board|grid)"
                  r"|(?:one of )?the four edges(?: of the (?:board|grid))?",
          f"x == 0 or x == {EDGE} or y == 0 or y == {EDGE}"),
    # markers
    Entry("NEG", r"outside(?: of)?|not (?:in|inside|within|on|into)|beyond the (?:box|rectangle|area|region|block)"
                 r"|(?:that|which) (?:is|are|lies|lie) not (?:in|on|inside|within)"),
    Entry("BORDER", r"(?:the )?(?:borders?|edges?|perimeters?|rims?|boundary|boundaries|outlines?|outer (?:ring|cells|squares|edge)"
                    r"|frames?|rings?|outermost (?:cells|squares|ring))(?: cells| squares)?"
                    r"(?!,? (?:included|inclusive|counted|too|as well))"),     # "the box, edges included": the whole box
    Entry("START", r"(?:starts?|starting|begins?|beginning|stands?|standing|is currently|currently|located|positioned)"
                   r"(?: (?:its|their) (?:move|turn|step))? (?:in|on|at|inside|within|from)"
                   r"|(?:starts?|starting|begins?|beginning|stands?|standing|located|positioned)"
                   r"(?= (?:(?:to the |further |farther )?(?:west|east|north|south|left|right)|above|below)\b)"
                   r"|(?:whose|with (?:its|their)) (?:starting|current|start|origin) (?:cell|square|position|point)"
                   r"|(?:moves?|steps?) (?:that )?(?:start|begin|originate)s?(?: (?:in|on|at|inside|within|from))?"
                   # the pieces named with where they are: "pursuers in columns 15 to 20 may only move west"
                   r"|(?:pursuers?|chasers?|hunters?|pieces?)(?: (?:that|which|who) (?:is|are))? (?:in|on|inside|within)"
                   r"(?= (?:the |any |columns?|rows?|cells?|squares?|\())"),
    Entry("DEST", r"(?:the )?(?:destination|target (?:cell|square))|(?:the move|it|they) (?:ends?|lands?)|lands? (?:on|in)"),
    Entry("WALL", r"walls?|barriers?|fences?|partitions?|dividers?|(?:pass\w*|cross\w*|go\w*|mov\w*) from one side of"
                  r"|cross\w* (?:the |a )?(?:line|boundary|border|seam|gap)s?(?= between\b)"),
    *(Entry("COND", rf"(?:separat\w*|divid\w*) (?:{words}) ?{A} (?:from|and) (?:(?:{words}) ?)?{B}", f"{{a}} <= {t} <= {{b}}")
      for words, t in ((r"columns?|x ?=?", "x"), (r"rows?|y ?=?", "y"))),
    Entry("SKIP", r"count(?:ing|ed)? (?:the )?(?:steps? |distance )?(?:horizontally and vertically|along the grid|in grid steps"
                  r"|as (?:a )?(?:rook|king) (?:moves|would))|even (?:partly|partially|slightly|a little|once)"),
    Entry("SKIP", r"neither|either"),
    # a prohibition's own words, where the language's frames did not take them off the region
    Entry("SKIP", r"(?:may|must|can|shall|should|will) (?:not|never|no longer)|cannot|can't|won't|mustn't"
                  r"|(?:is|are) (?:not|no longer|never) (?:allowed|permitted) to|(?:is|are) (?:now )?(?:forbidden|prohibited|banned|barred|"
                  r"illegal|disallowed|not allowed|not permitted|off limits|closed|out of bounds)(?: to| for| from)?"),
    # words that join clauses: a clause holding them is not one primitive's (the splitter's parses read their parts)
    Entry("SPLIT", r"it is (?:false|not the case|not true) that|(?:at least )?one of the following|at the same time|unless"
                   r"|except (?:when|if|where)|but not (?:if|when|where)"),
    Entry("STOP", r"except|unless|but|apart from|besides|save for|only|must(?! not| never| no longer)|however|instead"
                  r"|otherwise|whether|any other|other than|anywhere but|not|gaps?|holes?|openings?"
                  # what stays allowed: an exception, not the forbidden region ("row 10 itself is still allowed")
                  r"|(?:is|are|stays?|remains?) (?:still |also )?(?:allowed|permitted|fine|ok|okay|open|free)(?! to\b)"),
)

BOUND = re.compile(r"(?P<a>-?\d+) <= (?P<t>[^<]+?) <= (?P<b>-?\d+)")


def mark(kind: str, condition: str, markers: tuple[str, ...] = ()) -> str | None:
    """A clause's condition under a marker (``markers``: every marker of the clause): the border
    of the box it states; the same condition on where the pursuer starts (not in a clause that
    also names the destination: two subjects); a wall across the line between the two columns
    (or rows) one range states, spanning the other range (the whole board where none is
    stated); the destination named: unchanged."""
    if kind == "DEST":
        return condition
    if kind == "BORDER":
        inner = BOUND.sub(lambda m: f"{m['a']} < {m['t']} < {m['b']}", condition)
        if inner == condition:
            return None
        return f"({condition}) and not ({inner})"
    if kind == "START":
        if "DEST" in markers or "px" in condition or "py" in condition:
            return None
        return re.sub(r"\b([xy])\b", r"p\1", condition)
    if kind == "WALL":
        ranges = [(m["t"], m["a"], m["b"]) for m in BOUND.finditer(condition)]
        if len(ranges) == 1 and int(ranges[0][2]) == int(ranges[0][1]) + 1:     # no span said: the whole line
            ranges.append(("y" if ranges[0][0] == "x" else "x", "0", str(EDGE)))
        if len(ranges) != 2:
            return None
        for (across, lo, hi), (along, lo2, hi2) in (ranges, ranges[::-1]):
            if {across, along} == {"x", "y"} and int(hi) == int(lo) + 1:
                return (f"min(p{across}, {across}) <= {lo} < max(p{across}, {across}) and "
                        f"({lo2} <= p{along} <= {hi2} or {lo2} <= {along} <= {hi2})")
        return None
    return None


# Always true on the board: joined to a lexical reading so that the board's edges are numbers a
# primitive may take ("columns 3 to 7" is rectangle(3, 7, 0, 20); a wall across the board, 0 to 20).
EDGES = f"0 <= x <= {rs.SIZE - 1} and 0 <= y <= {rs.SIZE - 1}"
# Words that say nothing about which moves are forbidden: who moves, articles and pronouns, the
# verbs and nouns of any rule ("is", "cells"), words of forbidding and allowing. Prepositions of
# place ("from", "between", "near") are not filler: a reading that skips them may have lost a place.
FILLER = ("(?:pursuers?|chasers?|hunters?|pieces?|players?|agents?|catchers?|seekers?|tokens?|units?|robots?|they|them|it|its"
          "|their|theirs|itself|themselves|one|ones|the|a|an|any|every|each|all|this|that|these|those|which|who|whom|whose"
          "|what|is|are|be|been|being|was|were|am|do|does|did|has|have|had|will|would|shall|should|may|might|can|could|must"
          "|of|to|in|on|at|into|onto|for|with|as|so|then|there|here|now|also|ever|still|just|please|new|rule|rules"
          "|note|notes|moves?|moving|cells?|squares?|tiles?|positions?|spots?|places?|locations?|points?|destinations?"
          "|targets?|board|grid|game|turn|turns|forbidden|prohibited|banned|barred|illegal|disallowed|allowed|permitted"
          "|legal|off[- ]limits|limits|off|out|bounds|closed|open|no|go|anywhere|anything|everywhere|whatsoever"
          "|from now on|henceforth|starting now|effective immediately|lies?|lying|sits?|sitting|located|situated|exactly|currently|presently|lands?|landing"
          # nouns of a place the words around them state ("the block of columns 3 to 7 and rows 2 to 5")
          "|areas?|zones?|regions?|blocks?|box|boxes|rectangles?|territory|territories|parts?|lines?|numbers?|inside|within"
          "|anymore|any longer|nobody|no one|everything|foot)")
LEXICON = Lexicon(ENTRIES, mark, EDGES, frozenset({"x", "y", "px", "py"}), FILLER)
