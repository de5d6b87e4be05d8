"""Adopting a function when the rule appears in a game: the stored verified one, or one
the student writes now (or, with the ``read`` option, reads into the rule language and the
engine compiles); an accepted one joins the function base as untrusted code."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ldengine.adapters import find_adapter
from ldengine.cache import read_json
from ldengine.emergency.read import Reader, read_function
from ldengine.emergency.store import load_stored, module_source, save
from ldengine.emergency.verify import game_inputs
from ldengine.emergency.write import DEFAULT_ATTEMPTS, FORMS, Written, worked_examples, write_function
from ldengine.errors import LDEngineError

if TYPE_CHECKING:
    from ldengine.agents import AgentContext


def adopt(context: AgentContext, log: Callable[[str], None] = lambda s: None) -> Written | None:
    """The emergency in force on ``context.task``: its stored verified function, or one the
    student writes now (stored when it passes); an accepted one joins ``context.base``
    as untrusted code. Returns None when no emergency is in force."""
    instance = getattr(context.task, "emergency", None)
    if instance is None:
        return None
    kind, params = instance.kind, instance.params
    game = game_inputs(context.task, context.base, kind)        # verify on what this game will feed it
    stored = load_stored(kind, params, log=log, game=game)
    if stored is not None and context.options.get("read") and not stored.provenance.get("read"):
        log(f"{kind.name}: the stored {stored.path.name if stored.path else 'function'} was written, not read; "
            "--read reads the rule")
        stored = None
    path: Path | None
    if stored is not None and stored.path and stored.check:
        written, path = stored, stored.path
        log(f"{kind.name}: using the verified function {path.name} (verified again: {stored.check.line()}, "
            f"fresh seed {stored.check.seed}, {stored.check.seconds:.2f} s)")
    elif context.options.get("read"):
        log(f"{kind.name}: the student reads the rule into the rule language: {kind.describe(params)}")
        written = read_function(kind, params, Reader.load(context),
                                int(context.options.get("attempts") or DEFAULT_ATTEMPTS), game=game)
        for attempt, tried in zip(written.attempts, written.provenance["attempts"]):
            log(f"  reading {attempt.number}: {tried['program']}: {attempt.check.line()}")
        path = save(written) if written.passed else None
    else:
        if context.registry is None:
            raise LDEngineError(f"{kind.name}: writing a function needs the registry's worked examples")
        adapter = writing_adapter(context)
        writer, form = context.load_student(adapter=adapter), writing_form(adapter)
        attempts = int(context.options.get("attempts") or DEFAULT_ATTEMPTS)
        log(f"{kind.name}: the student writes a function ({attempts} attempts at most)")
        written = write_function(kind, params, writer, worked_examples(context.registry, kind.task, form=form),
                                 attempts, report=lambda a: log(f"  attempt {a.number}: {a.check.line()}"), game=game,
                                 form=form)
        path = save(written) if written.passed else None
    if path is not None:
        context.base.add_generated(module_source(written), f"{kind.task}/emergencies/{path.name}")
    else:
        log(f"{kind.name}: no function passed verification in {len(written.attempts)} "
            f"{'readings' if context.options.get('read') else 'attempts'}; "
            "playing on without one")
    return written


def writing_adapter(context: AgentContext) -> Path | None:
    """The committed LoRA adapter for writing emergency functions, if there is one."""
    if context.options.get("writer_adapter"):
        return Path(context.options["writer_adapter"])
    try:
        return find_adapter(context.task, context.base, method="write")
    except LDEngineError:
        return None


def writing_form(adapter: Path | str | None) -> str:
    """What a write adapter learnt to write (its manifest's ``form``, ``FORMS``): "body" for an
    adapter saved before forms existed, and for the untuned student."""
    manifest = Path(adapter) / "manifest.json" if adapter else None
    form = (read_json(manifest) or {}).get("form", "body") if manifest else "body"
    if form not in FORMS:
        raise LDEngineError(f"{manifest}: unknown writing form {form!r} (known: {', '.join(FORMS)})")
    return form
