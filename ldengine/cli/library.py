"""``ldengine plugins``, ``functions`` and ``retrieve``: what is registered and the function base."""

from __future__ import annotations

import json

import click

from ldengine import generated as gen
from ldengine.agents import AgentContext
from ldengine.cli.app import _Group, _JSON, _aligned, _base, _task_option, cli, registry
from ldengine.conditions import PROPOSERS, Readings
from ldengine.distill.store import version_lines
from ldengine.errors import LDEngineError
from ldengine.functionbase import base_for, versions_dir
from ldengine.retriever import Retriever


@cli.command(name="plugins")
@_JSON
def plugins_cmd(as_json):
    """List loaded plugins, where they came from, and what they registered."""
    reg = registry()
    plugins = [{"name": i.name, "origin": i.origin, "error": i.error, "hooks": i.hooks} for i in reg.plugins]
    items, warnings = _registered(reg), [f"{task}: {line}" for task in reg.tasks for line in _unplayed(reg, task)]
    if as_json:
        click.echo(json.dumps({"plugins": plugins, "registered": items, "warnings": warnings}, indent=2))
        return
    for line in _aligned([(p["name"], p["origin"], f"BROKEN: {p['error']}" if p["error"] else ", ".join(p["hooks"]))
                          for p in plugins]):
        click.echo(line)
    for line in _aligned([(i["kind"], i["name"], f"from {i['plugin']}", i["description"]) for i in items]):
        click.echo("  " + line)
    for line in warnings:
        click.echo(f"  warning {line}")


def _registered(reg) -> list[dict]:
    """Everything the plugins registered, one dict each (kind, name, plugin, description)."""
    rows = [{"kind": kind[:-1], "name": item.name, "plugin": item.plugin, "description": item.description}
            for kind in ("tasks", "evaders", "agents", "students") for item in getattr(reg, kind).values()]
    rows += [{"kind": "emergency", "name": item.name, "plugin": item.plugin,
              "description": f"({item.obj.split}) {item.description}"} for item in reg.emergencies.values()]
    return rows + [{"kind": "module", "name": mod.filename, "plugin": mod.plugin, "description": f"task {mod.task}"}
                   for mod in reg.modules]


def _unplayed(reg, task: str, base=None) -> list[str]:
    """Functions no agent will ever play (a stage outside the task's pipeline from another
    plugin, or a stage with two defaults); the task's own distractors are not reported."""
    try:
        base = base or _base(task)
    except LDEngineError as exc:
        return [f"its function base does not build: {exc}"]
    item = reg.tasks[task]
    return base.problems(list(item.obj.pipeline), own={item.plugin})


@cli.group(cls=_Group)
def functions():
    """Read the function base's manual."""


@functions.command(name="list")
@_task_option()
@click.option("--version", "version", metavar="VERSION", help="A stored version (ldengine functions versions) "
              "instead of the plugins' modules.")
@_JSON
def functions_list(task, version, as_json):
    """One line per function: name, stage, version (module version + content hash), summary; then one
    per fact a stage's query states (its sentence, answered yes or no)."""
    base = _base(task, version)
    warnings = _unplayed(registry(), task, base)
    if as_json:
        functions = [{"name": e.name, "stage": e.stage, "version": e.version, "summary": e.summary, "when": e.when,
                      "module": e.module, "plugin": e.plugin, "sha256": e.source_hash} for e in base.entries.values()]
        facts = [{"name": f.name, "stage": f.stage, "sentence": f.sentence, "module": f.module, "plugin": f.plugin}
                 for f in base.facts.values()]
        click.echo(json.dumps({"task": task, "version": version or "plugins", "base_hash": base.hash,
                               "functions": functions, "facts": facts, "warnings": warnings}, indent=2))
        return
    for e in base.entries.values():
        click.echo(f"{e.name:<28} {e.stage:<18} {e.version:<16} {e.summary}"
                   + (f" [when: {e.when}]" if e.when else ""))
    for f in base.facts.values():
        click.echo(f"fact {f.name:<23} {f.stage:<18} {'':<16} \"{f.sentence}: yes/no\" ({f.plugin})")
    click.echo(f"{len(base)} functions, {len(base.facts)} facts, base hash {base.hash[:12]}")
    for line in warnings:
        click.echo(f"warning: {line}")


@functions.command(name="read")
@_task_option()
@click.option("--version", "version", metavar="VERSION", help="A stored version (ldengine functions versions) "
              "instead of the plugins' modules.")
@click.option("--proposer", type=click.Choice(sorted(PROPOSERS)), default="encoder", show_default=True,
              help="What ranks the conditions a When: text may say before the check: the retriever's sentence "
                   "encoder, or word overlap (no model).")
@_JSON
def functions_read(task, version, proposer, as_json):
    """Each alternative's When: field read into a condition over its stage's facts, checked against its
    when_ predicate on the expert's games (open board and every registered rule change).

    The ld agent offers, at a stage with alternatives, only the one whose condition the state calls
    for (the first that holds, else the default); an alternative whose words and code disagree stays
    unread and is always offered. Readings are cached (ldengine cache info); the first costs ~20 s.
    """
    reg = registry()
    task_obj = reg.task(task)
    base = base_for(reg, task, version)
    readings = Readings(AgentContext(task_obj, base, {}, reg), PROPOSERS[proposer](),
                        log=lambda line: click.echo(line, err=True))
    stages = [stage for stage in task_obj.pipeline if len(base.for_stage(stage)) > 1]
    found = {stage: readings.stage(stage) for stage in stages}
    if as_json:
        click.echo(json.dumps({"task": task, "base_hash": base.hash, "proposer": proposer,
                               "readings": [vars(r) for stage in found.values() for r in stage.values()]}, indent=2))
        return
    unread = 0
    for stage, read in found.items():
        facts = {f.name: f for f in base.facts_for(stage)}
        click.echo(f"{stage}: facts {', '.join(facts) or 'none'}")
        for e in base.for_stage(stage):
            r = read.get(e.name)
            if r is None:
                click.echo(f"  {e.name:<26} default: played when no alternative's condition holds")
            elif r.read:
                click.echo(f"  {e.name:<26} {r.condition}  (checked on {r.states} states; the words ranked it "
                           f"{r.rank + 1 if r.rank is not None else '-'}, their first guess: {r.first})")
            else:
                unread += 1
                why = (f"no condition over the facts agrees with {e.predicate} (best: {r.example.get('condition')}, "
                       f"{r.agree}/{r.states} states; e.g. facts {r.example.get('facts')} but the code says "
                       f"{r.example.get('code_says')})" if r.status == "disagrees" else r.status)
                click.echo(f"  {e.name:<26} UNREAD: {why}; it is always offered. Declare the fact its When: "
                           "depends on (docs/plugins.md: Add a function as a plugin)")
    if not stages:
        click.echo(f"{task} has no stage with alternatives: nothing to read")
    total = sum(len(r) for r in found.values())
    click.echo(f"{total} When: fields, {total - unread} read, {unread} unread (proposer {proposer})")


@functions.command(name="versions")
@_task_option()
def functions_versions(task):
    """The stored function base versions of TASK (from ldengine distill), with their provenance."""
    registry().get("tasks", task)
    lines = version_lines(task)
    for line in lines:
        click.echo(line)
    click.echo(f"{len(lines)} stored version(s) in {versions_dir(task)}")


@functions.command(name="show")
@click.argument("name")
@_task_option()
def functions_show(name, task):
    """The full manual entry of NAME, with its version and source hash: a function of the
    base, or a stored generated one (ldengine emergencies stored)."""
    base = _base(task)
    stored = None if name in base.entries else gen.find_function(registry(), name, task)
    if stored is None:
        e = base.entry(name)
        click.echo(f"{e.name}  (version {e.version}, sha256 {e.source_hash}, {e.module}, plugin {e.plugin})\n")
    else:
        item, e = stored
        click.echo(f"{e.name}  (stored {item.what} function {item.name}, version {e.version}, sha256 "
                   f"{e.source_hash}: {item.summary()})\n")
        if item.provenance.get("program"):
            click.echo(f"read as: {item.provenance['program']}\n  in words: {item.provenance.get('english', '')}\n")
    click.echo(e.docstring)


@cli.command()
@click.argument("query")
@_task_option()
@click.option("-k", "k", type=click.IntRange(1, 50), default=5, show_default=True,
              help="How many manual entries to show, best first.")
@click.option("--only-task", is_flag=True, help="Search TASK's functions alone, not the index shared by every task.")
def retrieve(query, task, k, only_task):
    """Show the top-K manual entries the dense retriever returns for QUERY.

    The agents search one index over every task's functions; another task's
    function shows as task:name."""
    if not query.strip():
        raise click.BadParameter("an empty query matches nothing in particular: give the words to search for",
                                 param_hint="QUERY")
    base = _base(task)
    found = Retriever.for_base(base) if only_task else Retriever.for_library(base, registry())
    for rank, (name, score) in enumerate(found.search(query, k), 1):
        e = found.entry(name)
        click.echo(f"{rank}. {score:.3f}  {name:<28} {e.stage:<18} {e.summary}")
