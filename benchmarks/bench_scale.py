"""Retrieval and selection among 200+ functions: the real bases plus generated near-duplicates.

    .venv/bin/python benchmarks/bench_scale.py [--per-task 100] [--seed 0] [--heldout-games 10]
        [--max-selections 120] [--adapter DIR] [--retrieval-only] [--write]

The library: every registered task's real function base (whatever the plugins hold
now) and, per task, ``--per-task`` generated functions in extra modules that are
compiled by ``FunctionBase.build`` like any base but never registered. Each generated
function is a near-duplicate of a real one: its name with a word swapped for a
synonym and/or a suffix (``filter_legal_cells`` -> ``keep_legal_cells_fast``), its
summary, reads, returns and rules the real ones' with small changes, its stage the
real one, a near-real one (``pursuer.filters``), another role's (``evader.filter``) or
another task's (``player.hit``); a fifth carry a When: text. Bodies are trivial
(``obs`` plus a tag) and every docstring Example is run in the sandbox and checked.
Everything is drawn from ``random.Random(seed)``: the same base and seed give the same
library.

Measured on the stage queries of expert games on the held-out seeds (20000...), with
``base.oracle(stage, state)`` as the right function: recall@1 and @5 per task in the
big library and in the real bases alone (both tasks in one index, as the agents
search), the time to build each index (encode + hnswlib add, and ``Retriever.for_bases``
in all, in a fresh cache folder) and the median time of one query, and the student's
selection accuracy with the big library's top-5 in retrieval order on at most
``--max-selections`` distinct prompts (split evenly between the tasks).
"""
from __future__ import annotations

import argparse
import datetime
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, machine_line  # noqa: E402

SECTION = "## Scale: a 200+ function library"
PLUGIN = "bench-scale"

# Words of the real names and manuals, each with near neighbours.
SYNONYMS = {
    "filter": ["keep", "select", "prune", "screen"], "keep": ["filter", "retain", "select"],
    "legal": ["valid", "allowed", "permitted", "legit"], "cells": ["moves", "squares", "positions", "targets"],
    "cell": ["move", "square", "position"], "candidate": ["possible", "option", "reachable"],
    "evader": ["runner", "prey", "target"], "pursuer": ["chaser", "hunter"], "pursuers": ["chasers", "hunters"],
    "value": ["score", "worth", "return"], "hit": ["draw", "take"], "stand": ["stay", "hold"],
    "dealer": ["house", "bank"], "choose": ["pick", "select"], "count": ["tally", "number"],
    "observe": ["read", "watch", "scan"], "positions": ["places", "cells", "coords"], "hand": ["cards"],
    "total": ["sum", "points"], "chance": ["odds", "probability"], "final": ["last", "end"],
    "totals": ["sums", "outcomes"], "draws": ["takes", "pulls"], "nearest": ["closest"],
    "possible": ["feasible", "likely"], "routes": ["paths", "exits"], "escape": ["flee", "exit"],
    "predict": ["guess", "forecast"], "reply": ["answer", "response"], "chase": ["follow", "hunt"],
    "encircle": ["surround", "enclose", "trap"], "expected": ["mean", "average"], "return": ["payoff", "value"],
    "list": ["enumerate", "collect"], "add": ["attach", "put"], "every": ["each", "all"],
    "only": ["just", "solely"], "legally": ["validly", "safely"], "move": ["step", "go"],
    "step": ["move"], "probability": ["chance", "likelihood"], "higher": ["larger", "better"],
}
SUFFIXES = ["v2", "v3", "strict", "fast", "lite", "safe", "old", "batch", "cached", "simple", "exact",
            "approx", "legacy", "new", "alt", "greedy", "full", "quick"]
PREFIXES = ["fast", "safe", "naive", "quick", "better", "keep", "new", "old"]
QUALIFIERS = [", without the reach limit", ", for a 5x5 board", ", kept for comparison", " (older version)",
              ", ignoring the forbidden cells", ", a faster approximation", ", counting twice", " quickly",
              ", from the previous turn", ", in a different order", ", rounded to two places",
              ", for the first step only", ", as the old engine did", " (draft)"]
WHENS = ["the board has forbidden cells", "the evader sits in a corner", "two pursuers share a cell",
         "the hand holds an ace", "the dealer shows a ten", "the total is below 12",
         "the evader is next to a wall", "the game is in its first steps"]
STAGE_ENDINGS = ["s", "ing", "2", "_all", "_step"]
STAGE_PREFIXES = ["pre", "re", "sub"]


# ---------------------------------------------------------------- the generated library

def _swap_words(text: str, rng: random.Random, count: int) -> str:
    """``count`` words of ``text`` that have a near neighbour swapped for it."""
    words = text.split(" ")
    spots = [i for i, w in enumerate(words) if re.sub(r"\W", "", w).lower() in SYNONYMS]
    for i in rng.sample(spots, min(count, len(spots))):
        core = re.sub(r"\W", "", words[i])
        new = rng.choice(SYNONYMS[core.lower()])
        words[i] = words[i].replace(core, new.capitalize() if core[:1].isupper() else new)
    return " ".join(words)


def _near_name(name: str, rng: random.Random, taken: set[str]) -> str:
    """``name`` with a word swapped and/or a suffix or prefix; unique and never a real name."""
    for _ in range(50):
        parts = name.split("_")
        for i, part in enumerate(parts):
            if part in SYNONYMS and rng.random() < 0.4:
                parts[i] = rng.choice(SYNONYMS[part])
        if rng.random() < 0.6 or parts == name.split("_"):
            parts.append(rng.choice(SUFFIXES))
        if rng.random() < 0.2:
            parts.insert(0, rng.choice(PREFIXES))
        out = re.sub(r"[^a-z0-9_]", "", "_".join(parts).lower())
        if out.isidentifier() and out not in taken and not out.startswith("when_"):
            taken.add(out)
            return out
    raise RuntimeError(f"no fresh near-duplicate of {name!r}")


def _near_stage(stage: str, rng: random.Random, own: list[str], foreign: list[str], roles: list[str]) -> str:
    """The real stage, a near-real one, another role's, another of the task's or another task's."""
    role, _, verb = stage.partition(".")
    roll = rng.random()
    if roll < 0.35 or not verb:
        return stage
    if roll < 0.55:
        return f"{role}.{verb}{rng.choice(STAGE_ENDINGS)}" if rng.random() < 0.7 \
            else f"{role}.{rng.choice(STAGE_PREFIXES)}{verb}"
    if roll < 0.75:
        return f"{rng.choice([r for r in roles if r != role] or [role])}.{verb}"
    if roll < 0.9:
        return rng.choice(own)
    return rng.choice(foreign or own)


def _one_line(text: str) -> str:
    return " ".join(str(text).replace("\\", "/").replace('"""', "'''").split())


def generated_modules(task: str, base, foreign_stages: list[str], roles: list[str], count: int,
                      seed: int, per_module: int = 25):
    """``count`` near-duplicates of ``base``'s functions, as ModuleSource text (never registered)."""
    from ldengine.registry import ModuleSource
    rng = random.Random(f"{seed}:{task}")
    real = [base.entries[n] for n in sorted(base.entries)]
    own_stages = sorted({e.stage for e in real})
    taken = set(base.entries) | {e.def_name for e in real}
    whens = sorted({e.when for e in real if e.when}) + WHENS
    defs = []
    for i in range(count):
        e = real[i % len(real)]
        name = _near_name(e.def_name, rng, taken)
        stage = _near_stage(e.stage, rng, own_stages, foreign_stages, roles)
        summary = _swap_words(e.summary.rstrip("."), rng, rng.randint(0, 2))
        if rng.random() < 0.5:
            summary += rng.choice(QUALIFIERS)
        fields = {"Stage": stage}
        if rng.random() < 0.2:
            fields["When"] = rng.choice(whens)
        fields["Reads"] = _swap_words(e.reads, rng, 1)
        fields["Returns"] = _swap_words(e.returns, rng, 1)
        rules = e.rules if rng.random() < 0.5 else e.rules.split(";")[0].split(". ")[0]
        fields["Rules"] = _swap_words(rules, rng, rng.randint(0, 2))
        tag = rng.randint(0, 999)
        lines = [_one_line(summary + "."), ""] + [f"{k}: {_one_line(v)}" for k, v in fields.items()]
        doc = "\n    ".join(lines + ["Example:", f"    >>> {name}({{\"n\": {i}}})",
                                     f"    {{'n': {i}, 'tag': {tag}}}"])
        defs.append(f'def {name}(obs):\n    """{doc}\n    """\n    out = dict(obs)\n'
                    f'    out["tag"] = {tag}\n    return out\n')
    modules = []
    for j in range(0, len(defs), per_module):
        head = f'"""Near-duplicates of the {task} base for benchmarks/bench_scale.py (seed {seed})."""\n\n' \
               'VERSION = "0.0.1"\n\n\n'
        modules.append(ModuleSource(task, head + "\n\n".join(defs[j:j + per_module]),
                                    f"{task}/bench_scale_{j // per_module:02d}.py", PLUGIN))
    return modules


def check_generated(big) -> int:
    """Runs every generated function's Example in the sandbox; raises on any mismatch."""
    count = 0
    for entry in big.entries.values():
        if entry.plugin != PLUGIN:
            continue
        for ex in entry.examples:
            result = big.call(entry.name, *ex.args)
            if not result.ok or result.value != ex.expected:
                raise RuntimeError(f"{entry.name}: >>> {ex.text} gave {result.value!r} ({result.error})")
            count += 1
    return count


# ---------------------------------------------------------------- measurement

def build_timed(bases, encoder) -> tuple:
    """``Retriever.for_bases`` in a fresh cache folder, and the encode and hnswlib add alone."""
    import hnswlib
    import numpy as np

    from ldengine.retriever import HNSW_EF_CONSTRUCTION, HNSW_M, Retriever, documents
    _, passages = documents(bases)
    texts = [p for group in passages for p in group]
    t0 = time.perf_counter()
    vectors = encoder.encode(texts)
    t1 = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=encoder.dim)
    index.init_index(max_elements=len(texts), ef_construction=HNSW_EF_CONSTRUCTION, M=HNSW_M, random_seed=0)
    index.add_items(vectors, np.arange(len(texts)), num_threads=1)
    t2 = time.perf_counter()
    folder = tempfile.TemporaryDirectory(prefix="bench-scale-")
    t3 = time.perf_counter()
    retriever = Retriever.for_bases(bases, encoder, cache_dir=folder.name)
    t4 = time.perf_counter()
    assert not retriever.loaded
    return retriever, folder, {"passages": len(texts), "encode_s": t1 - t0, "add_s": t2 - t1,
                               "for_bases_s": t4 - t3}


def retrieval_figures(task, base, retriever, pairs, repeats: int = 3) -> dict:
    """recall@1/@5 over every stage query; median time of one search (``repeats`` times each distinct query)."""
    from ldengine.ld import RetrieverProvider
    from ldengine.retriever import rank_of, recall_at_k
    provider = RetrieverProvider(task, base, retriever, 5)
    examples = [(provider.query(stage, state), base.oracle(stage, state).name) for stage, state in pairs]
    distinct = list(dict.fromkeys(q for q, _ in examples))
    memo, retriever.memo_size, times = retriever.memo_size, 0, []
    retriever.search(distinct[0], 5)        # warm-up
    for _ in range(repeats):                # the memo off: every search encodes and ranks
        for query in distinct:
            t0 = time.perf_counter()
            retriever.search(query, 5)
            times.append(time.perf_counter() - t0)
    retriever.memo_size = memo
    recall = recall_at_k(retriever, examples, ks=(1, 5))
    hits = retriever.search_batch([q for q, _ in examples], 5)
    generated = sum(retriever.entry(n).plugin == PLUGIN for row in hits for n, _ in row)
    per_stage: dict[str, list[int]] = {}
    for (stage, _), (q, right), row in zip(pairs, examples, hits):
        r = rank_of(right, row)
        per_stage.setdefault(stage, []).append(r if r is not None else 99)
    return {"queries": len(examples), "distinct": len(distinct), "r1": recall[1], "r5": recall[5],
            "query_ms": 1000 * statistics.median(times), "generated_share": generated / max(1, 5 * len(hits)),
            "per_stage": per_stage}


def pick_adapter(task: str, base, given: str | None) -> tuple[Path, str]:
    """``--adapter``, else the newest committed selection adapter for this base, else (the base
    changed since training) the newest committed selection adapter that names the task."""
    import json

    from ldengine.adapters import adapter_method, adapter_roots, find_adapter
    from ldengine.errors import LDEngineError
    if given:
        return Path(given), "given"
    try:
        return Path(find_adapter(task, base)), "trained on this base"
    except LDEngineError:
        pass
    found = []
    for root in adapter_roots(task):
        for manifest in sorted(root.glob("*/manifest.json")) if root.is_dir() else []:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            tasks = data.get("tasks") or [data.get("task")]
            if task in tasks and adapter_method(data) == "ld":
                found.append((data.get("created", ""), manifest.parent))
    if not found:
        raise LDEngineError(f"no selection adapter names {task}; pass --adapter DIR")
    return max(found)[1], "base changed since training"


def selection_figures(task, base, retriever, pairs, student, cap: int, seed: int) -> dict:
    """The student on the big library's top-5 in retrieval order, ``cap`` distinct prompts at most."""
    from ldengine.finetune import accuracy
    from ldengine.ld import RetrieverProvider, selection_examples
    held = list(dict.fromkeys(selection_examples(task, base, RetrieverProvider(task, base, retriever, 5), pairs)))
    if len(held) > cap:
        held = [held[i] for i in sorted(random.Random(seed).sample(range(len(held)), cap))]
    t0 = time.perf_counter()
    acc = accuracy(student, held)
    seconds = time.perf_counter() - t0
    inside = [e for e in held if e.answer >= 0]
    return {"n": len(held), "acc": acc, "in_top5": len(inside) / max(1, len(held)),
            "acc_in_top5": accuracy(student, inside) if inside else 0.0,
            "first": sum(e.answer == 0 for e in held) / max(1, len(held)), "seconds": seconds}


# ---------------------------------------------------------------- report

def write_section(text: str) -> None:
    """Replaces the section (up to the next heading) in RESULTS.md, or appends it."""
    lines = RESULTS.read_text(encoding="utf-8").splitlines() if RESULTS.exists() else []
    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION), None)
    if start is None:
        out = lines + ([""] if lines and lines[-1].strip() else []) + text.splitlines()
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
        tail = lines[end:]
        out = lines[:start] + text.splitlines() + ([""] + tail if tail else [])
    RESULTS.write_text("\n".join(out).rstrip("\n") + "\n", encoding="utf-8")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-task", type=int, default=100, help="generated functions per task")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated library")
    parser.add_argument("--heldout-games", type=int, default=10)
    parser.add_argument("--max-selections", type=int, default=120,
                        help="distinct prompts the student scores, split evenly between the tasks")
    parser.add_argument("--adapter", help="selection adapter directory (default: the newest committed one)")
    parser.add_argument("--retrieval-only", action="store_true")
    parser.add_argument("--write", action="store_true", help=f"replace '{SECTION}' in benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    from ldengine.functionbase import FunctionBase
    from ldengine.ld import stage_inputs
    from ldengine.registry import Registry
    from ldengine.retriever import Encoder, Retriever
    reg, encoder = Registry.load(), Encoder()
    encoder.encode(["warm up"])
    names = sorted(t for t in reg.tasks if reg.modules_for(t))
    tasks = {t: reg.get("tasks", t).obj for t in names}
    real = {t: FunctionBase.build(t, reg.modules_for(t)) for t in names}
    stages = {t: sorted({e.stage for e in real[t].entries.values()} | set(tasks[t].stages)) for t in names}
    roles = sorted({s.split(".")[0] for t in names for s in stages[t]})
    big, checked = {}, 0
    for t in names:
        foreign = sorted({s for o in names if o != t for s in stages[o]})
        modules = generated_modules(t, real[t], foreign, roles, args.per_task, args.seed)
        big[t] = FunctionBase.build(t, reg.modules_for(t) + modules)
        assert all(big[t].entries[n] == e for n, e in real[t].entries.items()), "a real name was shadowed"
        checked += check_generated(big[t])
    sizes = {"real": sum(len(real[t]) for t in names), "big": sum(len(big[t]) for t in names)}
    print(f"library: {sizes['big']} functions ({sizes['real']} real), {checked} generated examples pass",
          file=sys.stderr)

    order = lambda home, bases: [bases[home], *(bases[t] for t in names if t != home)]  # noqa: E731
    built, folders, retrievers = {}, [], {}
    for label, bases in (("real bases", real), ("200+ library", big)):
        retriever, folder, built[label] = build_timed(order(names[0], bases), encoder)
        folders.append(folder)
        retrievers[(label, names[0])] = retriever
        for t in names[1:]:         # the same index, loaded, with another home task
            retrievers[(label, t)] = Retriever.for_bases(order(t, bases), encoder, cache_dir=folder.name)
    rows, stage_rows, selection, students = [], [], [], {}
    for t in names:
        pairs = stage_inputs(tasks[t], real[t], reg.get("evaders", "greedy").obj,
                             list(range(20_000, 20_000 + args.heldout_games)))
        for label, bases in (("real bases", real), ("200+ library", big)):
            f = retrieval_figures(tasks[t], real[t], retrievers[(label, t)], pairs)
            rows.append(f"| {t} | {label} | {sum(len(b) for b in bases.values())} | {f['queries']} "
                        f"({f['distinct']}) | {f['r1']:.3f} | {f['r5']:.3f} | "
                        f"{100 * f['generated_share']:.1f}% | {f['query_ms']:.1f} |")
            if label == "200+ library":
                for stage, ranks in sorted(f["per_stage"].items()):
                    stage_rows.append(f"| {t} | {stage} | {len(ranks)} | {sum(r < 1 for r in ranks) / len(ranks):.3f} "
                                      f"| {sum(r < 5 for r in ranks) / len(ranks):.3f} | "
                                      f"{max(ranks) + 1 if max(ranks) < 99 else '>5'} |")
        print(rows[-2], rows[-1], sep="\n", file=sys.stderr)
        if not args.retrieval_only:
            from ldengine.models import load_student
            adapter, why = pick_adapter(t, real[t], args.adapter)
            if adapter not in students:
                students.clear()
                students[adapter] = load_student(adapter=adapter)
            for label in ("200+ library", "real bases"):
                s = selection_figures(tasks[t], real[t], retrievers[(label, t)], pairs, students[adapter],
                                      max(1, args.max_selections // len(names)), args.seed)
                selection.append(f"| {t} | {label} | {adapter.name} ({why}) | {s['n']} | {s['in_top5']:.3f} | "
                                 f"{s['first']:.3f} | **{s['acc']:.3f}** | {s['acc_in_top5']:.3f} | "
                                 f"{s['seconds']:.0f} |")
                print(selection[-1], file=sys.stderr)
    for folder in folders:
        folder.cleanup()

    build_rows = [f"| {label} | {sizes['real' if label == 'real bases' else 'big']} | {b['passages']} | "
                  f"{b['encode_s']:.2f} | {b['add_s'] * 1000:.0f} ms | {b['encode_s'] + b['add_s']:.2f} | "
                  f"{b['for_bases_s']:.2f} |" for label, b in built.items()]
    text = "\n".join([
        SECTION, "",
        f"Date: {datetime.date.today().isoformat()}. " + machine_line("bench_scale.py", argv), "",
        f"The real bases of {', '.join(names)} plus {args.per_task} generated near-duplicates per task "
        f"(seed {args.seed}): {sizes['big']} functions in one index. Stage queries of the expert on "
        f"held-out seeds 20000-{20_000 + args.heldout_games - 1}; the right function is "
        "`base.oracle(stage, state)` of the real base. Build times: encode and hnswlib add timed alone, "
        "and `Retriever.for_bases` (encode, add, BM25, store) in a fresh cache folder. Median query: "
        "3 searches of each distinct query with the memo off. \"top-5 generated\": share of the top-5 "
        "that are generated functions.", "",
        "| index | functions | passages | encode (s) | hnswlib add | encode + add (s) | Retriever.for_bases (s) |",
        "|---|---|---|---|---|---|---|", *build_rows, "",
        "| task | index | functions | stage queries (distinct) | recall@1 | recall@5 | top-5 generated "
        "| median query (ms) |",
        "|---|---|---|---|---|---|---|---|", *rows, "",
        "Per stage in the 200+ library (worst rank of the right function over the queries):", "",
        "| task | stage | queries | recall@1 | recall@5 | worst rank |", "|---|---|---|---|---|---|", *stage_rows,
        *([] if args.retrieval_only else [
            "", "Student selection on the top-5 in retrieval order, distinct prompts, at most "
            f"{max(1, args.max_selections // len(names))} per task (a right function outside the top-5 counts "
            "wrong; \"first\" is always picking option 1); the real bases' index for comparison:", "",
            "| task | index | adapter | prompts | right one in top-5 | first | accuracy | accuracy when in top-5 "
            "| seconds |", "|---|---|---|---|---|---|---|---|---|", *selection])])
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main(sys.argv[1:])
