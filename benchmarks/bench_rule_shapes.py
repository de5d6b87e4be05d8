"""Rules of shapes the writer never trained on: how often it writes a correct function.

    .venv/bin/python benchmarks/bench_rule_shapes.py [--rules 12] [--attempts 8] [--seed 0]
        [--split eval] [--wording eval] [--adapter DIR] [--temperature T] [--write]

Draws ``--rules`` rules of the generated rule language (``ldengine_plugins.pursuit.rule_shapes``)
from the held-out shapes, worded with the held-out phrasings, and has the student write a
function for each exactly as ``ldengine emergency`` does (the committed writing adapter,
the greedy attempt then sampled ones, each verified in the isolated worker). A rule's
verification is exhaustive: the function meets every single move of the board and is
compared with the rule's own closure there, besides random states and the cases. One row
per rule: its shape, its words, the attempts it took, and the first failure otherwise.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_line, publish  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=12)
    parser.add_argument("--attempts", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="eval", choices=["eval", "train"])
    parser.add_argument("--wording", default="eval", choices=["eval", "train"])
    parser.add_argument("--adapter", help="writing adapter (default: the committed one)")
    parser.add_argument("--temperature", type=float, help="of the sampled attempts (default: the engine's)")
    parser.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    from ldengine.agents import AgentContext
    from ldengine.emergency.adopt import writing_adapter, writing_form
    from ldengine.emergency.rule import Instance
    from ldengine.emergency.verify import game_inputs
    from ldengine.emergency.write import TEMPERATURE, worked_examples, write_function
    from ldengine.functionbase import FunctionBase
    from ldengine.registry import Registry
    from ldengine_plugins.pursuit.rule_shapes import shape_rules
    reg = Registry.load()
    task = reg.get("tasks", "pursuit").obj
    base = FunctionBase.build("pursuit", reg.modules_for("pursuit"))
    context = AgentContext(task, base, {"writer_adapter": args.adapter}, reg)
    adapter = args.adapter or writing_adapter(context)
    writer, form = context.load_student(adapter=adapter), writing_form(adapter)
    examples = worked_examples(reg, "pursuit", form=form)
    rows, passed, start = [], 0, time.perf_counter()
    for i, kind in enumerate(shape_rules(args.rules, args.seed, args.split, args.wording), 1):
        game = game_inputs(task.with_emergency(Instance(kind, {})), base, kind)
        began = time.perf_counter()
        written = write_function(kind, {}, writer, examples, args.attempts, args.seed, game=game, form=form,
                                 **({"temperature": args.temperature} if args.temperature else {}))
        took = written.attempts_to_pass
        passed += took is not None
        last = written.attempts[-1].check if written.attempts else None
        reason = " ".join((last.reasons[0] if last and last.reasons else "no attempt").split())
        reason = re.sub(r"<emergency [^>]*>: refused: ", "", reason)
        verdict = (f"passed, {last.cases} inputs (every move of the board)" if took
                   else reason[:90].replace("|", "/"))
        rows.append(f"| {i} | `{kind.summary}` | {kind.describe({})[:110].replace('|', '/')} | "
                    f"{took or '-'} | {verdict} | {time.perf_counter() - began:.0f} s |")
        print(rows[-1], flush=True)
    name = Path(str(adapter)).name if adapter else "none"
    text = "\n".join([
        f"### Writing for held-out rule shapes ({time.strftime('%Y-%m-%d')})", "",
        machine_line("bench_rule_shapes.py", argv), "",
        f"{args.rules} rules drawn with seed {args.seed} from the {args.split} shapes in {args.wording} wordings; "
        f"writer adapter `{name}` ({form} form); sampled at {args.temperature or TEMPERATURE}; up to {args.attempts} attempts each; "
        f"**{passed}/{args.rules} passed** in {time.perf_counter() - start:.0f} s.", "",
        "| # | shape | rule in words | attempts to pass | exhaustive check | time |",
        "|---|---|---|---|---|---|", *rows])
    publish(text, args.write)


if __name__ == "__main__":
    main()
