"""Made-up pursuit facts for training the student to read When: fields (``ldengine.reading``).

None of them is a fact of the function base: they exist so that the student learns to
match a When: text to the fact it paraphrases, in the game's own words. Families with
``split="eval"`` are held out of training whole (with the last phrasing of every family
and a naming style), so the zero-shot figures measure reading.
"""
from ldengine.reading import family

PIECES = ("the first pursuer", "the second pursuer", "the third pursuer", "the nearest pursuer",
          "the farthest pursuer")
SIDES = ("left", "right", "top", "bottom")


FAMILIES = (
    family("half", "the evader is in the {s} half of the board",
       ("the evader stands on the {s} half", "the evader's cell lies in the {s} half of the board",
        "the {s} half of the board holds the evader"),
       ("the evader is outside the {s} half", "the evader is not on the {s} half of the board",
        "the {s} half of the board does not hold the evader"),
       (("s", SIDES),)),
    family("row", "{p} is on the evader's row",
       ("{p} shares a row with the evader", "{p} and the evader have the same y",
        "the evader and {p} stand in one row"),
       ("{p} is on another row than the evader", "{p} and the evader have different y",
        "{p} is not in the evader's row"),
       (("p", PIECES),)),
    family("cells", "{p} has {n} or more legal cells",
       ("at least {n} legal cells are open to {p}", "{p} can move to {n} legal cells or more",
        "{p} has no fewer than {n} legal cells"),
       ("{p} has fewer than {n} legal cells", "less than {n} legal cells are open to {p}",
        "{p} can reach under {n} legal cells"),
       (("p", PIECES), ("n", ("3", "5", "7", "9")))),
    family("within", "{p} is within {n} cells of the evader",
       ("{p} stands no more than {n} cells from the evader", "the evader is at most {n} cells from {p}",
        "{p} is {n} cells or nearer to the evader"),
       ("{p} is more than {n} cells from the evader", "the evader is over {n} cells away from {p}",
        "{p} is farther than {n} cells from the evader"),
       (("p", PIECES), ("n", ("2", "3", "4", "8")))),
    family("stayed", "the evader did not move last step",
       ("the evader stayed on its cell last step", "last step the evader kept its cell",
        "the evader stood still on the previous step"),
       ("the evader moved last step", "last step the evader changed cell",
        "the evader left its cell on the previous step"), (), "eval"),
    family("touch", "a forbidden cell touches {p}",
       ("{p} stands next to a forbidden cell", "{p} has a forbidden neighbour",
        "there is a forbidden cell beside {p}"),
       ("no forbidden cell touches {p}", "{p} has no forbidden neighbour",
        "nothing beside {p} is forbidden"),
       (("p", PIECES),), "eval"),
    family("corner", "the evader is within {n} cells of a corner",
       ("a corner of the board is at most {n} cells from the evader", "the evader is near a corner, {n} cells or fewer",
        "the evader is no more than {n} cells away from a corner"),
       ("the evader is more than {n} cells from every corner", "no corner is within {n} cells of the evader",
        "every corner is over {n} cells away from the evader"),
       (("n", ("2", "3", "4")),), "eval"),
)
