"""``ldengine rules``: a rule in words read into the task's rule language."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from ldengine.adapters import find_adapter
from ldengine.cli.app import _Group, _task_option, cli, registry
from ldengine.emergency.rule import check_rule_text
from ldengine.functionbase import FunctionBase
from ldengine.models import load_student
from ldengine.retriever import Encoder
from ldengine.rulelang import MARGIN, Namer, program_text, read, read_without_model

if TYPE_CHECKING:
    from ldengine.contracts import RuleLanguage


@cli.group(cls=_Group)
def rules():
    """Rules in words read into the task's rule language (programs, not Python)."""


@rules.command(name="read")
@click.argument("text")
@_task_option(help="The task whose rule language reads TEXT.")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False),
              help="The reading adapter (default: the newest promoted `finetune --method read` adapter of the task).")
@click.option("--margin", default=MARGIN, show_default=True, type=click.FloatRange(0, 50),
              help="Show the readings whose log-probability is within this of the best one.")
@click.option("--json", "as_json", is_flag=True, help="Print the readings as JSON.")
def rules_read(text, task, adapter, margin, as_json):
    """Read TEXT, a rule in words, into a program of the task's rule language: the language's
    frames and connectives split the words every way they can, the student reads each clause
    into one primitive, the parses are composed and grouped by the moves they forbid, best
    first, each in canonical English with its board map."""
    reg = registry()
    check_rule_text(text, reg.task(task or reg.default_task()))
    language = _rule_language(reg, task, text)
    adapter, _, readings = _read_rule(reg, language, text, None, adapter, margin)
    if as_json:
        click.echo(json.dumps({"text": text, "adapter": str(adapter) if adapter else None,
                               "reader": "student" if adapter else "lexicon", "readings": [
            {"program": r.text, "english": r.english, "score": round(r.score, 4), "parses": r.votes,
             "refusal": r.refusal,
             "uses_every_number": r.uses_every_number, "unread": list(r.unread), "guessed": list(r.guessed),
             "programs": [program_text(p) for p in r.programs]}
            for r in readings]}, indent=2))
        return
    if not readings:
        click.echo("no reading: no way of splitting the words gave clauses the student reads as primitives")
        sys.exit(1)
    _echo_readings(readings, language, picture=True, scored=adapter is not None)
    if len(readings) > 1:
        click.echo(f"the answers disagree on what is forbidden ({len(readings)} readings)")


def _rule_language(reg, task: str, text: str) -> RuleLanguage:
    """TASK's rule language, once TEXT is known to be sayable in it (before any model loads)."""
    reg.get("tasks", task)
    if task not in reg.rule_languages:
        raise click.UsageError(f"task {task!r} has no rule language to read rules into "
                               f"(known: {', '.join(reg.rule_languages) or 'none'})")
    language = reg.rule_languages[task].obj
    why = language.outside(text)
    if why:
        raise click.ClickException(f"cannot be read into the rule language: {why}; the language covers "
                                   f"{language.covers}")
    return language


def _read_rule(reg, language, text: str, student, adapter, margin: float) -> tuple:
    """(adapter, reader, readings): TEXT read by the reading adapter (default: the task's promoted one).
    With neither a student nor an adapter named, a text whose every clause the lexicon or its
    symbols read one way only, all parses agreeing, is read without loading the model
    (``read_without_model``: the student would read it the same); then adapter and reader are None."""
    if student is None and adapter is None:
        readings = read_without_model(language, text)
        if readings is not None:
            click.echo("read by the lexicon and the symbols alone (every clause one way, every parse agreeing): "
                       "the student is not loaded", err=True)
            return None, None, readings
    if adapter is None:
        task = language.task
        adapter = find_adapter(reg.task(task), FunctionBase.build(task, reg.modules_for(task)), method="read")
    reader = load_student(student, adapter=adapter)
    namer = Namer(lambda: Encoder().encode, language)       # loaded only for words the reader does not know
    return adapter, reader, read(reader, language, text, margin=margin, namer=namer, near=getattr(reader, "near", 0))


def _echo_readings(readings: list, language, picture: bool, scored: bool = True) -> None:
    """Each reading: its program, its log-probability (``scored``: the student read it; else
    the lexicon alone did), its English, why it is refused; with ``picture``, the first usable
    one's board map."""
    for i, r in enumerate(readings):
        how = [f"log-probability {r.score:.2f}" if scored else "read by the lexicon"]
        how += [] if r.uses_every_number else ["leaves a number of the text unused"]
        click.echo(f"{'read as' if i == 0 else 'or'}: {r.text}  ({'; '.join(how)})")
        click.echo(f"  in words: {r.english}")
        if i == 0 and r.guessed:
            click.echo(f"  read by the student alone: {'; '.join(r.guessed)} (--yes stores no such reading)")
        if i == 0 and r.unread:
            click.echo(f"  words not read: {', '.join(r.unread)} (--yes stores no reading that left words unread)")
        if r.refusal:
            click.echo(f"  refused: {r.refusal}")
        if picture and i == 0 and not r.refusal:
            click.echo(language.picture(r.program))
