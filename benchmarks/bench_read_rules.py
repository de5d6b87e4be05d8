"""Rules in words read into the rule language: how often the reading is exact.

    .venv/bin/python benchmarks/bench_read_rules.py [--heldout 200] [--unseen 200] [--kind-seeds 10]
        [--seed 1] [--adapter DIR] [--readers student,lexical] [--rules FILE]... [--write]

Three sets, none of them in the reading adapter's training data:
- rules of held-out shapes (``rule_shapes.split_of``) in held-out wordings (frames,
  combinators and primitives worded as no training rule is), drawn with ``--seed``;
- rules of training shapes in training words that the training draw never made (by condition);
- the four evaluated kinds (restricted-area, no-stop-row, wall, short-reach) in their own
  words, on parameter seeds 1 to ``--kind-seeds``;
- with ``--rules FILE``, rules with their programs written by someone who saw neither the
  training words nor the held-out ones (``benchmarks/referee_rules.json``: 60 rules written by a
  separate session from the language's manual alone).

Per rule, ``ldengine rules read`` is run as a user runs it (the words split every way the
language's frames and connectives allow, a clause whose symbols denote primitives exactly read
as one of them (``language.notation``), each other candidate clause read into one primitive under
its grammar, parses composed, grouped by what they forbid, those within the margin kept).
Exact: the top reading forbids exactly the rule's moves (every move of the board); exact
program: it is the rule's program; within the readings: some reading shown is exact; stored:
what ``--yes`` stores (one reading left, every number of the text used); wrong stored:
stored, not exact.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, publish  # noqa: E402

KINDS = ("restricted-area", "no-stop-row", "wall", "short-reach")
# name -> (clause reader: None the student, symbols read by the notation, words read by the lexicon first, label)
READERS = {"student": (None, True, True, "student, words read by the lexicon first"),
           "student-alone": (None, True, False, "student alone, no lexicon"),
           "lexicon": ("lexicon", True, True, "lexicon and grammar, no model"),
           "student-encoder": ("encoder", True, False, "student, unknown words narrowed by the encoder"),
           "lexical": ("lexical", True, False, "lexical matcher, no model"),
           "student-symbols": (None, False, False, "student, symbols not read"),
           "lexical-symbols": ("lexical", False, False, "lexical matcher, symbols not read")}
TRAIN_DRAW = 1200           # the rules finetune --method read trains on (seed 0)


def kind_mask(kind, params, domain) -> int:
    """The moves a hand-written kind forbids a pursuer, over the language's move domain."""
    bits = "".join("0" if kind.allows(params, "pursuer", (px, py), (x, y)) else "1"
                   for x, y, px, py in domain.moves)
    return int(bits, 2)


def lexical_clauses(student, language, clauses, only=None) -> dict:
    """A reader without a model: each clause read as the primitive whose manual line shares the
    most words and symbols with it, its parameters the clause's numbers in order (``none``
    when no primitive's parameters fit the clause's numbers); a clause whose symbols denote
    primitives (``only``) is the first of them."""
    import math
    import re
    from ldengine.rulelang import numbers_in
    lines = dict(line.split(": ", 1) for line in language.manual().splitlines()
                 if re.match(r"\w+\([\w, ]*\): ", line))
    words = lambda text: set(re.findall(r"[a-z_]+|[<>=%+-]+", text.lower()))  # noqa: E731
    out = {}
    for clause in dict.fromkeys(clauses):
        if only and only.get(clause):
            out[clause] = (only[clause][0], 0.0)
            continue
        numbers, have = numbers_in(clause), words(clause)
        best = (None, float("-inf"))
        for signature, meaning in lines.items():
            name = signature.split("(")[0]
            params, rest, args = language.primitives[name], list(numbers), []
            for allowed in params:
                pick = next((n for n in rest if allowed is None or n in allowed), None)
                if pick is None and allowed is not None:
                    pick = min(allowed)
                elif pick is None:
                    break
                else:
                    rest.remove(pick)
                args.append(pick)
            if len(args) < len(params) or rest:
                continue
            want = words(signature + " " + meaning)
            overlap = len(have & want) / len(have | want)
            if overlap > 0 and math.log(overlap) > best[1]:
                best = ((name, *args), math.log(overlap))
        out[clause] = best
    return out


def lexicon_clauses(student, language, clauses, only=None) -> dict:
    """No model: a clause the lexicon (or its symbols) reads is its first reading; any other
    clause has none (its parses are dropped)."""
    return {c: ((only[c][0], 0.0) if only and only.get(c) else (None, float("-inf"))) for c in dict.fromkeys(clauses)}


CLAUSE_READERS = {"lexical": lexical_clauses, "lexicon": lexicon_clauses}


def score(student, language, items, clause_reader=None, notation=True, namer=None, lexical=True) -> dict:
    """``items``: (text, expected mask, expected program or None)."""
    from ldengine.emergency.read import compile_reading
    from ldengine.rulelang import read
    rows = {"rules": 0, "exact": 0, "exact_program": 0, "within": 0, "stored": 0, "wrong_stored": 0,
            "refused_all": 0, "seconds": [], "misses": []}
    for text, want, program in items:
        began = time.perf_counter()
        readings = read(student, language, text, clause_reader=clause_reader, notation=notation, namer=namer,
                        near=student.near if clause_reader is None else 0, lexical=lexical)
        rows["seconds"].append(time.perf_counter() - began)
        rows["rules"] += 1
        usable = [r for r in readings if r.refusal is None]
        masks = [language.denotation(r.program) for r in usable]
        top_ok = bool(usable) and masks[0] == want
        rows["exact"] += top_ok
        rows["exact_program"] += bool(usable) and program is not None and usable[0].program == program
        rows["within"] += want in masks
        rows["refused_all"] += not usable
        if compile_reading(language, readings, text, unanimous=True)[0] is not None:   # what --yes stores
            rows["stored"] += 1
            rows["wrong_stored"] += not top_ok
        if not top_ok and len(rows["misses"]) < 6:
            rows["misses"].append((text, usable[0].text if usable else "-"))
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heldout", type=int, default=200, help="rules of held-out shapes in held-out words")
    parser.add_argument("--unseen", type=int, default=200, help="unseen rules of training shapes")
    parser.add_argument("--kind-seeds", type=int, default=10, help="parameter seeds of each evaluated kind")
    parser.add_argument("--seed", type=int, default=1, help="the draw of the held-out rules")
    parser.add_argument("--adapter", help="reading adapter (default: the promoted one)")
    parser.add_argument("--rules", action="append", default=[],
                        help="a JSON list of {text, program} written independently of the training words (e.g. "
                             "benchmarks/referee_rules_4.json): read as one more set (may be given several times)")
    parser.add_argument("--readers", default="student,student-alone,lexicon,lexical",
                        help="comma-separated, of: " + ", ".join(READERS) + " (-symbols: conditions in symbols "
                             "read by the reader like any words, not by the language's notation)")
    parser.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    readers = [r.strip() for r in args.readers.split(",") if r.strip()]
    if not readers or set(readers) - set(READERS):
        parser.error(f"--readers: of {', '.join(READERS)}")
    from ldengine.adapters import find_adapter
    from ldengine.functionbase import FunctionBase
    from ldengine.models import load_student
    from ldengine.registry import Registry
    from ldengine_plugins.pursuit import rule_program as rp, rule_shapes as rs
    reg = Registry.load()
    language = reg.rule_languages["pursuit"].obj
    adapter = args.adapter or find_adapter("pursuit", FunctionBase.build("pursuit", reg.modules_for("pursuit")),
                                           method="read")
    student = load_student(adapter=adapter)
    domain = rs.move_domain()
    seen = {r.cond for r in rs.draw_rules(TRAIN_DRAW, 0, "train")}
    sets = {}
    held = rs.draw_rules(args.heldout, args.seed, "eval", "eval") if args.heldout else []
    sets["held-out shapes, held-out words"] = [(r.text, rs.region_mask(r.region, domain), rp.program_of(r.region))
                                               for r in held]
    unseen = [r for r in rs.draw_rules(args.unseen * 3, args.seed + 100, "train") if r.cond not in seen][:args.unseen]
    sets["unseen rules of training shapes"] = [(r.text, rs.region_mask(r.region, domain), rp.program_of(r.region))
                                               for r in unseen]
    from ldengine.errors import LDEngineError
    from ldengine.rulelang import parse_program
    outside: list[str] = []
    for path in args.rules:
        given = json.loads(Path(path).read_text())
        programs = [parse_program(r["program"]) for r in given]
        kept = []
        for r, p in zip(given, programs):
            try:
                kept.append((r["text"], rp.mask(p), p))
            except LDEngineError as exc:      # the referee wrote a program the language cannot say
                outside.append(f"- {Path(path).stem}: {r['text']!r} ({exc})")
        sets[f"{Path(path).stem} (independent words)"] = kept
    kinds = []
    for name in KINDS:
        kind = reg.get("emergencies", name).obj
        for p in range(1, args.kind_seeds + 1):
            params = kind.params(p, rs.SIZE)
            kinds.append((kind.describe(params), kind_mask(kind, params, domain), None))
    sets["evaluated kinds, seeds 1-%d" % args.kind_seeds] = kinds
    lines = [f"## Rules in words read into the rule language ({time.strftime('%Y-%m-%d')})", "",
             machine_line("bench_read_rules.py", argv), "",
             f"Reading adapter `{Path(adapter).name}`; each rule read as `ldengine rules read` reads it "
             "(split by the language's frames and connectives, a clause whose symbols denote primitives exactly "
             "read as one of them, each other clause read into one primitive under its grammar, parses composed "
             "and grouped by what they forbid).", "",
             "A reading is exact when it forbids exactly the rule's moves (every move of the board). Stored: what "
             "`--yes` stores (one reading left, every number of the text used, every word of the text read by the "
             "lexicon, its frames or its filler, or by the notation). Own program refused: rules whose own program "
             "the language refuses as a rule (it forbids more than 80% of the moves), which no reader can store.", "",
             "| rules | n | exact (top usable reading, every move) | exact program | exact within the readings | stored "
             "(what --yes stores) | wrong stored | all refused | own program refused | median s per rule |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    from ldengine.retriever import Encoder
    from ldengine.rulelang import Namer
    namer = Namer(lambda: Encoder().encode, language)        # one for every set (the encoder loads when first asked)
    misses = []
    for label, items in sets.items():
        if not items:
            continue
        for key in readers:
            reader, symbols, lexical, name = READERS[key]
            r = score(student, language, items, CLAUSE_READERS.get(reader), symbols,
                      namer if reader == "encoder" else None, lexical)
            n = r["rules"]
            program = f"{r['exact_program'] / n:.3f}" if items[0][2] is not None else "-"
            own = sum(p is not None and language.refusal(p) is not None for _, _, p in items) if items[0][2] else "-"
            lines.append(f"| {label}: {name} | {n} | {r['exact'] / n:.3f} | {program} | {r['within'] / n:.3f} | "
                         f"{r['stored']} | {r['wrong_stored']} | {r['refused_all']} | {own} | "
                         f"{statistics.median(r['seconds']):.1f} |")
            misses += [f"- {label} ({name}): {text!r} read as `{got}`" for text, got in r["misses"]]
            print(lines[-1], flush=True)
    lines += ["", "Rules left out: their program is not one the language can say (a parameter out of its range):",
              *outside] if outside else []
    lines += ["", "First misses:", *misses] if misses else []
    publish("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main()
