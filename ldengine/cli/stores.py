"""``ldengine generated``, ``adapters``, ``logs`` and ``cache``: what runs leave in the data and cache folders."""

from __future__ import annotations

import json

import click

from ldengine import adapters, generated as gen, runlog
from ldengine.cache import cache_parts, cache_root, clean_cache
from ldengine.cli.app import (_Group, _JSON, _aligned, _base, _generated_task, _megabytes, _need_answer, _task_option,
                              cli, registry)


@cli.group(cls=_Group)
def generated():
    """Stored generated code: the student's emergency functions and the distilled versions.

    Each was stored with its provenance, which records the sha256 of every file;
    a file that no longer matches is refused wherever it would load."""


_GENERATED_TASK = click.option("--task", help="Only this task's stored code (default: every task's).")
_GENERATED_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")


@generated.command(name="list")
@_GENERATED_TASK
@_GENERATED_JSON
def generated_list(task, as_json):
    """One line per stored function or version: what, name, task, whether its files still
    have their recorded sha256 (ok / CHANGED), and what it is."""
    items = gen.stored(registry(), _generated_task(task))
    if as_json:
        click.echo(json.dumps([item.record() for item in items], indent=2))
        return
    for item in items:
        status = "ok" if item.problem is None else "CHANGED"
        click.echo(f"{item.what:<9} {item.name:<28} {item.task:<10} {status:<8} {item.summary()}")
    click.echo(f"{len(items)} stored (ldengine generated verify: check the hashes and verify them again)")


@generated.command(name="show")
@click.argument("name")
@_GENERATED_TASK
@_GENERATED_JSON
def generated_show(name, task, as_json):
    """NAME's files with their sha256, whether they still match the provenance, and its code."""
    item = gen.find(registry(), name, _generated_task(task))
    record = item.record()
    if as_json:
        click.echo(json.dumps({**record, "provenance": item.provenance}, indent=2))
        return
    click.echo(f"{item.what} {item.name} ({item.task}): {item.summary()}")
    vouched = ("it ships with the package" if gen.shipped(item.path)
               else "its provenance is signed with this machine's key")
    click.echo(f"status: ok, every file has the sha256 its provenance records and {vouched}" if item.problem is None
               else f"status: CHANGED: {item.problem}")
    for entry in record["files"]:
        click.echo(f"  {entry['file']:<24} sha256 {entry['sha256']}")
    if item.provenance.get("program"):
        click.echo(f"read as: {item.provenance['program']}\n  in words: {item.provenance.get('english', '')}")
    if item.what == gen.EMERGENCY and item.path.is_file():
        click.echo("\n" + item.path.read_text(encoding="utf-8", errors="replace"))
    else:
        for function in item.provenance.get("functions", []):
            click.echo(f"  {function.get('name', '?'):<28} {function.get('stage', '?'):<18} {function.get('version', '')}")


@generated.command(name="verify")
@click.argument("name", required=False)
@_GENERATED_TASK
@click.option("--games", type=click.IntRange(1, 1000),
              help="Versions: the expert's check games (default: as many as when it was distilled).")
@_GENERATED_JSON
def generated_verify(name, task, games, as_json):
    """Check the sha256 of every stored file (or NAME's) against its provenance, then verify
    the code again: an emergency function against its rule on every move of the board and
    fresh random states; a distilled version through the distill checks. Exit code 1 if any fails."""
    reg = registry()
    task = _generated_task(task)
    items = [gen.find(reg, name, task)] if name else gen.stored(reg, task)
    verdicts = [gen.verify(reg, item, games) for item in items]
    if as_json:
        click.echo(json.dumps([{"name": v.item.name, "what": v.item.what, "task": v.item.task, "passed": v.passed,
                                "lines": v.lines} for v in verdicts], indent=2))
    else:
        for v in verdicts:
            click.echo(f"{v.item.what} {v.item.name}: {'ok' if v.passed else 'FAILED'}: "
                       + "\n    ".join(v.lines))
    failed = [v.item.name for v in verdicts if not v.passed]
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(verdicts)} failed: {', '.join(failed)}")
    if not as_json:
        click.echo(f"{len(verdicts)} verified")


@generated.command(name="remove")
@click.argument("name")
@_GENERATED_TASK
@click.option("--yes", is_flag=True, help="Remove without asking.")
def generated_remove(name, task, yes):
    """Delete NAME's stored files: a function and its provenance, or a version's folder."""
    item = gen.find(registry(), name, _generated_task(task))
    if not yes:
        _need_answer("pass --yes to remove without asking")
        click.confirm(f"remove the {item.what} {item.name} ({item.path})?", abort=True)
    removed = gen.remove(item)
    click.echo(f"removed {item.what} {item.name}: " + ", ".join(str(path) for path in removed))


@cli.group(name="adapters", cls=_Group)
def adapters_group():
    """The LoRA adapters a task's agents can use: the package's and those finetune saved in the data folder."""


@adapters_group.command(name="list")
@_task_option()
@_JSON
def adapters_list(task, as_json):
    """Each adapter: its method (ld: selection, kd: moves, write: functions for new rules, read: rules
    in words), where it lives, its steps, when it was made, and the default of each method."""
    items = adapters.listed(registry().task(task), _base(task))
    if as_json:
        click.echo(json.dumps([{"name": i.name, "path": str(i.path), "method": i.method, "shipped": i.shipped,
                                "origin": i.origin, "signed": i.signed, "promoted": i.promoted, "default": i.default,
                                "steps": i.steps, "created": i.manifest.get("created")}
                               for i in items], indent=2))
        return
    for item in items:
        click.echo(item.line())
    click.echo(f"{len(items)} adapters for {task} (use one: --adapter DIR; ldengine adapters show NAME)")


@adapters_group.command(name="show")
@click.argument("name")
@_task_option()
def adapters_show(name, task):
    """NAME's folder and its manifest (what it was trained on, with which settings, its figures)."""
    item = adapters.find_listed(registry().task(task), _base(task), name)
    click.echo(item.line())
    click.echo(f"path: {item.path}")
    click.echo(json.dumps(item.manifest, indent=2))


@adapters_group.command(name="remove")
@click.argument("name")
@_task_option()
@click.option("--yes", is_flag=True, help="Remove without asking.")
def adapters_remove(name, task, yes):
    """Delete NAME's folder from the data folder (adapters that ship with the package stay)."""
    item = adapters.find_listed(registry().task(task), _base(task), name)
    adapters.check_removable(item)          # before asking
    if not yes:
        _need_answer("pass --yes to remove without asking")
        click.confirm(f"remove the adapter {item.name} ({item.path})?", abort=True)
    click.echo(f"removed {adapters.remove_adapter(item)}")


@cli.command(name="logs")
@click.option("-n", "count", default=10, show_default=True, type=click.IntRange(0),
              help="How many of the latest runs to show (0: all).")
@_JSON
def logs_cmd(count, as_json):
    """The latest run and eval commands, each with its full command line, version and key figures
    (the log is <data folder>/logs.jsonl)."""
    found = runlog.records(count or None)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for record in found:
        click.echo(runlog.line(record))
    click.echo(f"{len(found)} run(s) shown from {runlog.log_path()}" if found
               else f"no run logged yet in {runlog.log_path()}")


@cli.group(name="cache", cls=_Group)
def cache_group():
    """The on-disk cache: converted students and retriever indexes (LDENGINE_CACHE moves it)."""


@cache_group.command(name="info")
@_JSON
def cache_info(as_json):
    """Where the cache is, what each part holds and its size on disk."""
    parts = cache_parts()
    if as_json:
        click.echo(json.dumps({"root": str(cache_root()), "parts": [
            {"name": p.name, "path": str(p.path), "bytes": p.size, "items": p.items, "what": p.what,
             "removed_by_clean": p.cleaned} for p in parts]}, indent=2))
        return
    click.echo(f"cache: {cache_root()} (LDENGINE_CACHE moves it)")
    for line in _aligned([(p.name, _megabytes(p.size), f"{p.items} item(s)",
                           p.what + ("" if p.cleaned else "; kept by cache clean")) for p in parts]):
        click.echo("  " + line)
    cleaned = sum(p.size for p in parts if p.cleaned)
    click.echo(f"ldengine cache clean frees {_megabytes(cleaned)} (the engine rebuilds those parts when needed)")


@cache_group.command(name="clean")
@click.option("--yes", is_flag=True, help="Remove without asking.")
def cache_clean(yes):
    """Remove the converted students, retriever indexes and remembered hashes; the engine
    rebuilds them when next needed (a student conversion takes about 40 s). The adapters
    of finetune --quick are kept."""
    parts = [p for p in cache_parts() if p.cleaned and p.path.exists()]
    if not parts:
        click.echo(f"nothing to remove in {cache_root()}")
        return
    size = _megabytes(sum(p.size for p in parts))
    if not yes:
        _need_answer("pass --yes to remove without asking")
        click.confirm(f"remove {', '.join(p.name for p in parts)} ({size}) from {cache_root()}?", abort=True)
    removed = clean_cache()
    click.echo(f"removed {', '.join(str(p.path) for p in removed)} ({size})")
