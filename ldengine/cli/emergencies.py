"""``ldengine emergency`` and ``emergencies``: a new rule, written or read into a stored function."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from ldengine import generated as gen
from ldengine.agents import AgentContext
from ldengine.cli.app import (_Group, _JSON, _check_outputs, _confirm_map, _generated_task, _need_answer,
                              _read_option, _task_option, cli, registry)
from ldengine.cli.rules import _echo_readings, _read_rule, _rule_language
from ldengine.emergency.adopt import writing_adapter, writing_form
from ldengine.emergency.board import BoardJudge
from ldengine.emergency.measure import measure, measure_table
from ldengine.emergency.read import compile_reading, refusal_line
from ldengine.emergency.rule import check_rule_text
from ldengine.emergency.store import save
from ldengine.emergency.write import confirm, worked_examples, write_function
from ldengine.functionbase import FunctionBase
from ldengine.rulelang import MARGIN


@cli.command()
@click.argument("text")
@_task_option()
@click.option("--param", "params", multiple=True, metavar="K=V",
              help="A parameter of the rule (repeatable); {K} in TEXT is replaced by its value.")
@click.option("--kind", help="A registered emergency kind whose rule the text describes: examples are derived "
              "from it and PARAMS (default: the kind whose parameter names match PARAMS, if exactly one).")
@click.option("--allow", multiple=True, metavar="X,Y|PX,PY>X,Y", help="A move the rule allows (repeatable).")
@click.option("--forbid", multiple=True, metavar="X,Y|PX,PY>X,Y", help="A move the rule forbids (repeatable).")
@click.option("--attempts", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Functions the student may write for the rule before giving up.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Sampling and case seed.")
@click.option("--student", type=click.Path(exists=True), help="Student model (default: SmolLM2-135M-Instruct GGUF).")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False),
              help="LoRA adapter for writing (default: the committed writing adapter, if any).")
@click.option("--no-store", is_flag=True, help="Verify and show the functions only; store nothing (no confirmation asked).")
@click.option("--yes", "-y", is_flag=True,
              help="Store the first function that passes without asking (for scripts); its board map is still shown.")
@click.option("--png", type=click.Path(dir_okay=False),
              help="Also draw each shown board map as a PNG: FILE for the first, FILE-attemptN.png beside it "
                   "for each later one.")
@click.option("--read", "by_reading", is_flag=True,
              help="Read the words into the task's rule language (the reading adapter, `finetune --method read`) "
              "and compile the program, instead of having the student write Python.")
def emergency(text, task, params, kind, allow, forbid, attempts, seed, student, adapter, no_store, yes, png,
              by_reading):
    """A new rule in words: the student writes a function for it, the isolated sandbox
    verifies it, its board map shows what it forbids, and one you confirm is stored (with
    provenance) in the function base.

    \b
    ldengine emergency "No piece may enter column 10"
    ldengine emergency "No piece may enter column 10" --forbid 10,5 --allow 9,5
    ldengine emergency "Lava: no piece may enter a cell (x, y) with {x0} <= x <= {x1} \\
        and {y0} <= y <= {y1}." --param x0=4 --param y0=10 --param x1=8 --param y1=14

    With the words alone, each function that runs correctly on every move of the board is
    shown as a map for you to judge; examples (--allow/--forbid) or a known kind's rule
    (--param, --kind) check it first. The moves of the map you confirm become the rule's
    examples: the referee judges them in games.
    """
    reg = registry()
    task_obj = reg.task(task)
    check_rule_text(text, task_obj)     # before any model loads (the task refuses what it cannot judge)
    _check_examples(allow, forbid)
    if by_reading and (params or kind):
        raise click.UsageError("--read takes the rule from its words (and --allow/--forbid examples); "
                               "--param and --kind are for writing")
    values = _params(params)
    if not by_reading:
        _check_placeholders(text, values, kind)
    if not (yes or no_store):
        _need_answer("pass --yes to store without asking (with --allow/--forbid examples that check it), or "
                     "--no-store to only see the functions")
    if by_reading:
        _emergency_by_reading(reg, task, text, allow, forbid, seed, student, adapter, no_store, yes)
        return
    rule = _rule(reg, task_obj, text, values, kind, allow, forbid)
    cases = rule.cases(values, seed)
    if not cases:
        raise click.ClickException("no example can be checked: give --allow/--forbid moves that are legal "
                                   "under the old rules, or --kind/--param to derive examples")
    click.echo(f"rule: {rule.describe(values)}")
    words_only = getattr(rule, "examples_given", True) is False
    click.echo("no examples: each function is checked on every move of the board for its form, then its map is "
               f"yours to judge; up to {attempts} attempts" if words_only
               else f"checking against {len(cases)} examples; up to {attempts} attempts")
    context = AgentContext(task_obj, FunctionBase.build(task, reg.modules_for(task)),
                           {"student": student, "writer_adapter": adapter}, reg)
    writer_adapter = writing_adapter(context)
    writer, form = context.load_student(adapter=writer_adapter), writing_form(writer_adapter)
    click.echo(f"writing with {writer.name} (the first attempt greedy, then 4 at a time sampled"
               + ("; it writes the allowed-move condition, the engine the rest)" if form == "condition" else ")"))

    def show(attempt):
        click.echo(f"attempt {attempt.number} (temperature {attempt.temperature}, {attempt.seconds:.1f} s): "
                   f"{attempt.check.line()}")
        click.echo("".join("    | " + line + "\n" for line in attempt.source.splitlines()[-6:]))
    ask = None if (yes or no_store) else _confirm_map
    judge = BoardJudge(rule.function_name(), cases[0][0], click.echo, rule.move_map, ask, png,
                       (getattr(rule, "allowed", ()), getattr(rule, "forbidden", ())), rule.describe(values))
    written = write_function(rule, values, writer, worked_examples(reg, task, form=form), attempts, seed, cases,
                             report=show, accept=judge, form=form)
    if not written.passed:
        refused = sum(a.refused is not None for a in written.attempts)
        raise click.ClickException(f"no function passed verification in {attempts} attempts"
                                   + (f" ({refused} passed it but were refused on their board map)" if refused else ""))
    if hasattr(rule, "confirmed") and judge.board is not None and getattr(rule, "like", None) is None:
        check = confirm(written, rule, values, judge.board, seed,
                        "the user, on the function's board map" if ask else "--yes: stored without asking")
        if not check.passed:
            raise click.ClickException(f"the function fails against the moves of its own map: {check.line()}")
        click.echo(f"the rule now has the map's {len(judge.board.forbidden_moves):,} forbidden moves as examples "
                   f"(checked again: {check.line()})")
    if no_store:
        click.echo(f"passed at attempt {written.attempts_to_pass} (not stored)")
        return
    path = save(written)
    click.echo(f"passed at attempt {written.attempts_to_pass}; stored {path} (+ .json provenance)")


def _emergency_by_reading(reg, task, text, allow, forbid, seed, student, adapter, no_store, yes) -> None:
    """``ldengine emergency TEXT --read``: the readings of TEXT, the one the examples agree with
    (and, with --yes, the only one), compiled, verified in the worker, stored with its program."""
    language = _rule_language(reg, task, text)
    allowed, forbidden = _moves(allow, "--allow"), _moves(forbid, "--forbid")
    game = reg.task(task)
    if (allowed or forbidden) and game.custom_emergency is not None:
        # the task says what a bare cell means as a move (e.g. entering it from a neighbour)
        examples = game.custom_emergency(text, {}, allowed, forbidden)
        allowed, forbidden = list(examples.allowed), list(examples.forbidden)
    if yes and not (allowed and forbidden):
        # measured (benchmarks/RESULTS.md): readings all answers agreed on were still wrong for 2 of
        # 10 unseen rules, so nothing read is stored unseen without examples that check it
        raise click.UsageError("--read --yes needs at least one --allow and one --forbid example to check the "
                               "reading against; without them, leave out --yes and judge the map")
    _, reader, readings = _read_rule(reg, language, text, student, adapter, MARGIN)
    _echo_readings(readings, language, picture=False, scored=reader is not None)
    chosen, why = compile_reading(language, readings, text, allowed, forbidden, unanimous=yes, student=reader)
    if chosen is None:
        raise click.ClickException(refusal_line(why, language))
    click.echo(f"the rule: {chosen.reading.english}")
    click.echo(language.picture(chosen.reading.program))
    if not (yes or no_store) and not _confirm_map():
        raise click.ClickException("not stored")
    written = chosen.verified(seed)
    if not written.passed:
        raise click.ClickException(f"the compiled function fails verification: {written.attempts[-1].check.line()}")
    click.echo(f"compiled and verified in the isolated worker: {written.attempts[-1].check.line()}")
    if no_store:
        click.echo("not stored (--no-store)")
        return
    path = save(written)
    click.echo(f"stored {path} (+ .json provenance with the program); play it: ldengine run {task} "
               f"--emergency {path.stem}")


@cli.group(cls=_Group)
def emergencies():
    """The emergency kinds (new rules) and how well the student writes functions for them."""


@emergencies.command(name="list")
@_task_option()
@_JSON
def emergencies_list(task, as_json):
    """Each kind: whether it is evaluated (held out of the writing fine-tune) or for training, and its rule."""
    registry().get("tasks", task)
    kinds = [item for item in registry().emergencies.values() if item.obj.task == task]
    if as_json:
        click.echo(json.dumps([{"name": i.name, "task": task, "split": i.obj.split, "plugin": i.plugin,
                                "params": sorted(i.obj.params(0)), "rule": i.obj.describe(i.obj.params(0))}
                               for i in kinds], indent=2))
        return
    for item in kinds:
        kind = item.obj
        names = ", ".join(sorted(kind.params(0))) or "-"
        click.echo(f"{kind.name:<18} {kind.split:<6} params {names:<17} {kind.describe(kind.params(0))}")
    if kinds:
        click.echo("(the rule as seed 0 draws its params; --emergency-seed draws others, and "
                   "ldengine emergency TEXT --param K=V fills your own)")
    else:
        click.echo(f"task {task} has no emergency kinds")


@emergencies.command(name="stored")
@click.option("--task", help="Only this task's stored functions (default: every task's).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def emergencies_stored(task, as_json):
    """The stored functions written for emergencies (ldengine generated list, functions only):
    each plays with ldengine run TASK --emergency NAME, its rule and parameters in force."""
    items = [i for i in gen.stored(registry(), _generated_task(task)) if i.what == gen.EMERGENCY]
    if as_json:
        click.echo(json.dumps([item.record() for item in items], indent=2))
        return
    for item in items:
        rule = item.provenance.get("custom_rule") or {}
        judged = " (the referee knows only its examples)" if rule and not rule.get("like") else ""
        status = "ok" if item.problem is None else "CHANGED"
        click.echo(f"{item.name:<28} {item.task:<10} {status:<8} {item.summary()}{judged}")
    shipped = sum(gen.shipped(item.path) for item in items)
    click.echo(f"{len(items)} stored" + (f" ({shipped} ship with the package)" if shipped else "")
               + " (play one: ldengine run TASK --emergency NAME)")


@emergencies.command(name="measure")
@_task_option()
@click.option("--kinds", default="eval", show_default=True,
              help="Comma-separated kind names, or 'eval' (the held-out kinds) or 'all'.")
@click.option("--seeds", default=10, show_default=True, type=click.IntRange(1, 10_000),
              help="Parameter seeds per kind for the writing pass rate.")
@click.option("--attempts", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Functions the student may write for the rule before giving up.")
@click.option("--games", default=50, show_default=True, type=click.IntRange(1, 100_000),
              help="Games per agent (ld, expert) with each kind in force.")
@click.option("--out", default="results/emergencies", show_default=True, type=click.Path(file_okay=False),
              help="Folder for each kind's games, results.json and the table (table.md).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Game i uses seed SEED+i.")
@click.option("--emergency-seed", default=0, show_default=True, type=click.IntRange(0),
              help="Draws each kind's parameters for the games (the pass rate uses seeds 100 and up).")
@click.option("--student", type=click.Path(exists=True), help="Student model (default: SmolLM2-135M-Instruct GGUF).")
@_read_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
def emergencies_measure(task, kinds, seeds, attempts, games, out, seed, emergency_seed, student, by_reading, quiet):
    """Per kind: pass rate of the student's functions (attempts to first pass) and LD's success
    with the kind in force, against the expert that nobody adapted. Writes OUT/table.md.
    With --read the rule's words are read into the rule language and compiled instead."""
    reg = registry()
    reg.get("tasks", task)
    if kinds in ("eval", "all"):
        chosen = [r.obj for r in reg.emergencies.values() if r.obj.task == task
                  and (kinds == "all" or r.obj.split == "eval")]
    else:
        chosen = [reg.get("emergencies", name.strip()).obj for name in kinds.split(",") if name.strip()]
    _check_outputs({}, folders={"--out": out})
    options = {"student": student, "log": click.echo, "attempts": attempts, "read": by_reading}
    report = measure(reg, task, chosen, list(range(100, 100 + seeds)), attempts, games, Path(out), options,
                     click.echo, not quiet, seed=seed, emergency_seed=emergency_seed)
    click.echo(measure_table(report))


def _params(pairs) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise click.BadParameter(f"{pair!r} is not K=V", param_hint="--param")
        try:
            out[key] = int(value)
        except ValueError:
            out[key] = value
    return out


PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _check_placeholders(text: str, values: dict, kind: str | None) -> None:
    """Every {K} of the rule's words has a whole-number --param, and (unless --kind names the
    rule the parameters are for) every --param fills a {K}."""
    holes = list(dict.fromkeys(PLACEHOLDER.findall(text)))
    missing = [h for h in holes if h not in values]
    if missing:
        raise click.BadParameter(f"the rule's words have {', '.join('{' + h + '}' for h in missing)} and no "
                                 f"value for it: add --param {missing[0]}=N", param_hint="--param")
    wordy = [f"{h}={values[h]}" for h in holes if not isinstance(values[h], int)]
    if wordy:
        raise click.BadParameter(f"{', '.join(wordy)}: a rule's parameter is a whole number (a column, a row, a "
                                 "distance)", param_hint="--param")
    unused = [k for k in values if k not in holes]
    if holes and unused and not kind:
        raise click.BadParameter(f"{', '.join(unused)} is not a placeholder of the rule's words (they have "
                                 f"{', '.join('{' + h + '}' for h in holes)})", param_hint="--param")


def _check_examples(allow, forbid) -> None:
    """A move given both as allowed and as forbidden is refused before anything runs."""
    both = sorted(set(_moves(allow, "--allow")) & set(_moves(forbid, "--forbid")))
    if both:
        shown = ", ".join(">".join(",".join(map(str, side)) for side in (m if isinstance(m[0], tuple) else (m,)))
                          for m in both)
        raise click.UsageError(f"{shown} is given both with --allow and with --forbid: a move is one or the other")


def _moves(items, hint: str) -> list:
    out = []
    for item in items:
        try:
            parts = [tuple(int(v) for v in side.split(",")) for side in item.split(">")]
            if len(parts) > 2 or any(len(p) != 2 for p in parts):
                raise ValueError
        except ValueError:
            raise click.BadParameter(f"{item!r} is not X,Y or PX,PY>X,Y", param_hint=hint) from None
        out.append(parts[0] if len(parts) == 1 else tuple(parts))
    return out


def _rule(reg, task, text: str, values: dict, kind: str | None, allow, forbid):
    """The rule to check against: a registered kind (named, or matched by parameter names),
    else the user's own examples, else the words alone (the user judges each function's map)."""
    if task.custom_emergency is None:
        raise click.ClickException(f"task {task.name!r} takes no emergencies")
    allowed, forbidden = _moves(allow, "--allow"), _moves(forbid, "--forbid")
    if not kind and values and not (allowed or forbidden):
        matches = [r.name for r in reg.emergencies.values()
                   if r.obj.task == task.name and hasattr(r.obj, "draw")
                   and set(r.obj.params(0)) == set(values)]
        # several kinds may share parameter names: the one whose rule reads most like TEXT
        matches.sort(key=lambda name: -_word_overlap(text, reg.get("emergencies", name).obj.describe(values)))
        kind = matches[0] if matches else None
        if kind and _word_overlap(text, reg.get("emergencies", kind).obj.describe(values)) < MIN_WORD_OVERLAP:
            raise click.ClickException(
                f"the rule's words share almost nothing with the known rules that take "
                f"{', '.join(sorted(values))} (closest: {kind}, \"{reg.get('emergencies', kind).obj.describe(values)}\"); "
                f"to check the function against that rule anyway, name it with --kind {kind}; or give "
                "--allow/--forbid examples of your rule")
        if kind:
            click.echo(f"examples derived from the rule of {kind} (--kind to choose another)")
    if kind:
        base = reg.get("emergencies", kind).obj
        missing = set(base.params(0)) - set(values)
        if missing:
            raise click.BadParameter(f"{kind} needs --param for {', '.join(sorted(missing))}", param_hint="--param")
        return task.custom_emergency(text, values, like=base)
    return task.custom_emergency(text, values, allowed=allowed, forbidden=forbidden)


# Below this share of common words, a rule given with a known kind's --param names is not
# taken for that kind ("bananas are yellow" shares 0.0 with restricted-area's rule, the
# README's lava rule 0.43).
MIN_WORD_OVERLAP = 0.2


def _word_overlap(a: str, b: str) -> float:
    x, y = set(re.findall(r"\w+", a.lower())), set(re.findall(r"\w+", b.lower()))
    return len(x & y) / len(x | y) if x | y else 0.0
