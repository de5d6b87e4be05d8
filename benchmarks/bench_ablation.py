"""Does the learned part earn its place? Selection ablations on the same held-out states and games.

    .venv/bin/python benchmarks/bench_ablation.py [--task pursuit] [--heldout-games 10] [--games 20]
        [--adapter DIR] [--extra-module FILE] [--emergencies wall,restricted-area] [--reading 200]
        [--seed 0] [--emergency-seed 0] [--write]

Per stage, on the stage inputs of held-out expert games (seeds 20000..., never trained
on), with the shared index's top-5: how often each selector picks the oracle's
function (``FunctionBase.oracle(stage, state)``): the oracle itself, the retriever's
first hit (no model), a word matcher (no model: the alternative whose When: words best
match a fact stated yes, ``ldengine.lexical``), the untuned student, the tuned student in
retrieval order, and the tuned student with the candidates shuffled (8 orders per
distinct selection). ``--reading N`` adds a row of N synthetic selections of fact
families, phrasings and names held out of training (``ldengine.reading``): zero-shot reading.
Then each as an agent on the same seeded games (``ldengine run``'s agents expert,
top1, lexical, ld_untuned, ld, ld_shuffled): success, violations, average steps, distinct
selection prompts and model calls; ``--emergencies`` plays the game table again under
each rule change, where the alternatives matter most. ``--extra-module`` adds a function module (e.g.
the extras plugin's alternative) to the base, to measure zero-shot selection of an
alternative the adapter never saw.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, publish  # noqa: E402

SELECTORS = ("oracle", "retriever top-1", "lexical matcher", "lexical, negations", "encoder matcher",
             "untuned student", "tuned student", "tuned, shuffled", "top-1, read", "tuned, read")
# Columns measured on the candidate lists narrowed by the read When: conditions (ldengine.conditions).
READ = ("top-1, read", "tuned, read")


def encoder_choice(encoder, query: str, options: list[str]) -> int:
    """Like the lexical matcher, with the retriever's sentence encoder (all-MiniLM-L6-v2, trained on
    paraphrase pairs) as the judge of which stated fact a When: clause says: highest cosine."""
    import re

    from ldengine.lexical import lexical_choice, parse_selection
    stage, candidates, facts = parse_selection(query, options)
    if not facts:
        return lexical_choice(stage, candidates, facts)
    vectors = encoder.encode([f for f, _ in facts])
    linked = []
    for where, when in candidates:
        clauses = [c for c in re.split(r"\band\b", when) if c.strip()]
        # each clause replaced by its nearest fact's own words: the word matcher then links it exactly
        best = [facts[int((vectors @ encoder.encode([c])[0]).argmax())][0] for c in clauses]
        linked.append((where, " and ".join(best)))
    return lexical_choice(stage, linked, facts)


def picks(student, examples, batch: int = 16) -> list[int]:
    out = []
    for i in range(0, len(examples), batch):
        chunk = examples[i:i + batch]
        out += [p.index for p in student.select_batch([(e.prefix, e.query, list(e.options)) for e in chunk])]
    return out


def per_stage(examples, chosen) -> dict:
    """stage -> (right, total); also '(all)' and, per oracle function, ``"= NAME"``."""
    table = defaultdict(lambda: [0, 0])
    for e, c in zip(examples, chosen):
        right = "= " + e.options[e.answer].split(" ", 1)[0] if e.answer >= 0 else "= (missed)"
        for key in (e.stage, "(all)", right):
            table[key][0] += c == e.answer
            table[key][1] += 1
    return table


def stage_table(reg, task, base, adapter, pairs, reading: int = 0) -> list[str]:
    from ldengine.adapters import find_adapter
    from ldengine.ld import RetrieverProvider, selection_examples
    from ldengine.models import load_student
    from ldengine.reading import reading_examples
    from ldengine.retriever import Retriever
    provider = RetrieverProvider(task, base, Retriever.for_library(base, reg), 5)
    held = selection_examples(task, base, provider, pairs)
    adapter = adapter or find_adapter(task.name, base)
    # Selection is deterministic: the memo answers a repeated prompt with the same pick.
    untuned, tuned = load_student(), load_student(adapter=adapter)
    narrowed = read_examples(reg, task, base, pairs)
    rows = selector_rows(task, base, held, untuned, tuned, narrowed=narrowed)
    if reading:
        # Synthetic selections of fact families, phrasings and names held out of training (seed 7: not
        # the training run's 0 nor its held-out measurement's 1).
        synthetic = reading_examples(task, base, provider, pairs, reading, 7, "eval", heldout_phrasing=True,
                                     heldout_names=True)
        rows += selector_rows(task, base, synthetic, untuned, tuned, "held-out reading (synthetic)")
    return rows, Path(adapter).name, oracle_mix(base, held)


def read_examples(reg, task, base, pairs):
    """The held-out selections with each candidate list narrowed by the read conditions (as the
    ld agent offers them): a reading that withholds the oracle's function makes the selection wrong."""
    from ldengine.agents import AgentContext
    from ldengine.conditions import Readings
    from ldengine.ld import ConditionProvider, selection_examples
    from ldengine.retriever import Retriever
    readings = Readings(AgentContext(task, base, {}, reg), log=lambda line: print(line, file=sys.stderr))
    provider = ConditionProvider(task, base, Retriever.for_library(base, reg), 5, readings=readings)
    return selection_examples(task, base, provider, pairs)


def selector_rows(task, base, held, untuned, tuned, label: str = "", narrowed=None) -> list[str]:
    from ldengine.finetune import shuffled
    from ldengine.lexical import text_choice
    from ldengine.retriever import Encoder
    # synthetic selections are drawn in a random order already: one order each
    mixed, encoder = (held if label else shuffled(held, 8, 0)), Encoder()
    results = {"oracle": per_stage(held, [e.answer for e in held]),
               "retriever top-1": per_stage(held, [0] * len(held)),
               "lexical matcher": per_stage(held, [text_choice(e.query, list(e.options)) for e in held]),
               "lexical, negations": per_stage(held, [text_choice(e.query, list(e.options), True) for e in held]),
               "encoder matcher": per_stage(held, [encoder_choice(encoder, e.query, list(e.options)) for e in held]),
               "untuned student": per_stage(held, picks(untuned, held)),
               "tuned student": per_stage(held, picks(tuned, held)),
               "tuned, shuffled": per_stage(mixed, picks(tuned, mixed))}
    if narrowed is not None:
        results["top-1, read"] = per_stage(narrowed, [0] * len(narrowed))
        results["tuned, read"] = per_stage(narrowed, picks(tuned, narrowed))
    else:
        results.update({k: defaultdict(lambda: [0, 0]) for k in READ})
    if label:
        cells = [f"{results[k]['(all)'][0] / results[k]['(all)'][1]:.3f}" if results[k]["(all)"][1] else "-"
                 for k in SELECTORS]
        return [f"| {task.name} | {label} | - | {len(held)} | " + " | ".join(cells) + " |"]
    stages = [s for s in task.pipeline if results["oracle"][s][1]] + ["(all)"]
    # At stages with alternatives, also one row per right function ("= NAME").
    # "= (missed)": the oracle's function was not in the top-K (counted in the stage's row).
    stages += sorted(k for k in results["oracle"] if k.startswith("= ") and k != "= (missed)"
                     and len(base.for_stage(base.entry(k[2:]).stage)) > 1)
    rows = []
    for stage in stages:
        alts = len(base.for_stage(stage)) if not stage.startswith(("(", "=")) else "-"
        cells = [f"{results[k][stage][0] / results[k][stage][1]:.3f}" if results[k][stage][1] else "-"
                 for k in SELECTORS]
        rows.append(f"| {task.name} | {stage} | {alts} | {results['oracle'][stage][1]} | " + " | ".join(cells) + " |")
    return rows


def oracle_mix(base, held) -> str:
    """How often each alternative is the right one, at stages with several."""
    counts = defaultdict(int)
    for e in held:
        if len(base.for_stage(e.stage)) > 1 and e.answer >= 0:
            counts[e.options[e.answer].split(" ", 1)[0]] += 1
    return ", ".join(f"{n} {c}" for n, c in sorted(counts.items(), key=lambda x: -x[1])) or "-"


AGENTS = ("expert", "top1", "lexical", "top1_read", "ld_untuned", "ld_unread", "ld", "ld_shuffled")
# Under an emergency: the unadapted expert (no function for the rule), and those that adopt the
# stored function for it and differ only in how they choose a stage's function.
EMERGENCY_AGENTS = ("expert", "top1", "lexical", "top1_read", "ld_unread", "ld")
# Agents of the tables that are ld with an option: ld_unread offers every alternative (--no-conditions).
VARIANTS = {"ld_unread": ("ld", {"conditions": False})}


def game_rows(reg, task_name, games, adapter, extra, emergency=None, seed: int = 0, emergency_seed: int = 0,
              agents=None) -> list[str]:
    from ldengine.runner import RunConfig, run_games
    rows = []
    played = {}
    for agent in agents or (EMERGENCY_AGENTS if emergency else AGENTS):
        played_as, extra_options = VARIANTS.get(agent, (agent, {}))
        options = {"adapter": adapter, "k": 5, "log": lambda line: None, **extra_options}
        cfg = RunConfig(task_name, played_as, games, seed, "greedy", None, None, progress=False, options=options,
                        emergency=emergency, emergency_seed=emergency_seed)
        outcome = run_games(reg, cfg)
        s, played[agent] = outcome.summary, outcome.results
        calls, prompts = s.get("model_calls", "-"), s.get("distinct_prompts", "-")
        steps = "-" if s.get("avg_steps_success") is None else f"{s['avg_steps_success']:.2f}"
        success = f"{s['success']:.3f}" if "success" in s else f"{s.get('expected_return', 0):+.4f}"
        rows.append(f"| {task_name} | {agent} | {s['games']} | {success} | {s['violations']} | {steps} | "
                    f"{s.get('selection_accuracy') or 0:.3f} | {prompts} | {calls} | {s['wall_s']:.1f} |")
    return rows + ["", *against_ld(played)]


def against_ld(played: dict) -> list[str]:
    """Game by game against ``ld`` (same seeds): where another agent's outcome or length differs.
    Whole-game averages hide which choices change a game; this says where they do."""
    if "ld" not in played:
        return []
    lines = []
    for agent, results in played.items():
        if agent == "ld":
            continue
        pairs = list(zip(played["ld"], results))
        outcome = [(a.seed, a.outcome, b.outcome) for a, b in pairs if a.outcome != b.outcome]
        shorter = sum(a.outcome == b.outcome == "success" and a.steps < b.steps for a, b in pairs)
        longer = sum(a.outcome == b.outcome == "success" and a.steps > b.steps for a, b in pairs)
        shown = ", ".join(f"seed {seed}: ld {x}, {agent} {y}" for seed, x, y in outcome[:4])
        lines.append(f"- {agent} against ld: {len(outcome)} of {len(pairs)} games end otherwise"
                     + (f" ({shown}{', ...' if len(outcome) > 4 else ''})" if outcome else "")
                     + f"; of the games both win, ld is shorter in {shorter} and longer in {longer}")
    return lines + [""]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="pursuit")
    parser.add_argument("--heldout-games", type=int, default=10)
    parser.add_argument("--games", type=int, default=20, help="games per agent (0: skip the game table)")
    parser.add_argument("--adapter", help="selection adapter (default: the committed one for the base)")
    parser.add_argument("--extra-module", action="append", default=[],
                        help="a function module (file) added to the base, e.g. a plugin's (repeatable)")
    parser.add_argument("--emergencies", default="", help="comma-separated emergency kinds: the game table "
                        "again under each (parameter seed 0), for expert, top1 and ld")
    parser.add_argument("--reading", type=int, default=0, help="also this many synthetic selections of held-out "
                        "fact families, phrasings and names (zero-shot reading)")
    parser.add_argument("--seed", type=int, default=0, help="the first game seed of the game tables")
    parser.add_argument("--heldout-start", type=int, default=20_000, help="the first seed of the held-out games "
                        "whose stage inputs are scored (finetune measures on 20000...)")
    parser.add_argument("--agents", default="", help="comma-separated agents of the game tables (default: all)")
    parser.add_argument("--emergency-seed", type=int, default=0, help="the emergencies' parameter seed")
    parser.add_argument("--write", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    from ldengine.functionbase import FunctionBase
    from ldengine.ld import stage_inputs
    from ldengine.registry import ModuleSource, Registry
    reg = Registry.load()
    for extra in args.extra_module:
        text = Path(extra).read_text(encoding="utf-8")
        reg.modules.append(ModuleSource(args.task, text, f"extra/{Path(extra).name}", "extra"))
    task = reg.get("tasks", args.task).obj
    base = FunctionBase.build(args.task, reg.modules_for(args.task))
    pairs = stage_inputs(task, base, reg.get("evaders", "greedy").obj,
                         list(range(args.heldout_start, args.heldout_start + args.heldout_games)))
    rows, adapter_name, mix = stage_table(reg, task, base, args.adapter, pairs, args.reading)
    agents = tuple(filter(None, args.agents.split(","))) or None
    games = (game_rows(reg, args.task, args.games, args.adapter, args.extra_module, seed=args.seed, agents=agents)
             if args.games else [])
    under = {kind: game_rows(reg, args.task, args.games, args.adapter, args.extra_module, kind, args.seed,
                             args.emergency_seed, agents)
             for kind in filter(None, args.emergencies.split(",")) if args.games}
    title = f"### Selection ablations: {args.task}" + (
        f" with {', '.join(Path(m).name for m in args.extra_module)}" if args.extra_module else "")
    publish("\n".join([
        title, "", machine_line("bench_ablation.py", argv), "",
        f"Adapter `{adapter_name}`. Held-out stage inputs from {args.heldout_games} expert games "
        f"(seeds {args.heldout_start}...); "
        f"at stages with alternatives the oracle's function was: {mix}.", "",
        "Rows `= NAME`: the selections whose right function is NAME, at a stage with alternatives.", "",
        "| task | stage | functions at the stage | selections | " + " | ".join(SELECTORS) + " |",
        "|---|---|---|---|" + "---|" * len(SELECTORS), *rows, "",
        *([f"The same selectors as agents on {args.games} games (seeds {args.seed}...):", "",
           "| task | agent | games | success (return) | violations | avg steps | selection accuracy | "
           "distinct prompts | model calls | wall s |", "|---|---|---|---|---|---|---|---|---|---|", *games, ""]
          if games else []),
        *[line for kind, kind_rows in under.items() for line in (
            f"Under the `{kind}` emergency (parameter seed {args.emergency_seed}; top1, lexical and ld adopt the "
            f"stored verified function for it, the expert has none), {args.games} games (seeds {args.seed}...):", "",
            "| task | agent | games | success (return) | violations | avg steps | selection accuracy | "
            "distinct prompts | model calls | wall s |", "|---|---|---|---|---|---|---|---|---|---|", *kind_rows, "")]]),
        args.write)


if __name__ == "__main__":
    main(sys.argv[1:])
