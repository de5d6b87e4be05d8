"""The rule in force on a game: a registered kind with drawn parameters, or the rule a
stored function was written for; and where the rule's stage goes in the pipeline."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ldengine.contracts import EmergencyKind, TaskBase, emergency_params
from ldengine.emergency.store import stored_provenances
from ldengine.errors import LDEngineError, UnknownNameError
from ldengine.rulelang import parse_program

if TYPE_CHECKING:
    from ldengine.registry import Registry


@dataclass(frozen=True)
class Instance:
    """An emergency in force: its kind and its drawn parameters."""
    kind: EmergencyKind
    params: dict = field(default_factory=dict)

    @property
    def description(self) -> str:
        return self.kind.describe(self.params)

    def state(self) -> dict:
        """How the state shows it (plain data): name, rule text, parameters."""
        return {"name": self.kind.name, "rule": self.description, "params": dict(self.params)}

    def allows(self, piece: str, src: object, dst: object) -> bool:
        return self.kind.allows(self.params, piece, src, dst)


def under_emergency(registry: Registry, task: TaskBase, name: str | None, seed: int = 0) -> TaskBase:
    """``task`` with the emergency ``name`` in force, or ``task`` itself when ``name`` is
    empty. ``name`` is a registered kind (its parameters drawn with ``seed``) or a stored
    function (``ldengine emergencies stored``: the rule it was written for, a user's own
    included, with its stored parameters)."""
    if not name:
        return task
    if name in registry.emergencies:
        kind = registry.emergencies[name].obj
        instance = Instance(kind, emergency_params(kind, task, seed))
    else:
        instance = stored_instance(registry, task.name, name)
    if instance.kind.task != task.name or task.with_emergency is None:
        raise LDEngineError(f"emergency {name!r} is for the {instance.kind.task} task, not {task.name}")
    return task.with_emergency(instance)


def stored_instance(registry: Registry, task: str, name: str) -> Instance:
    """The rule and parameters of the stored function ``name`` (its file's stem, or its
    rule's name, e.g. ``custom-1a2b3c4d``), read from its provenance."""
    found = [(path, p) for path, p in stored_provenances(task) if name in (path.stem, p.get("kind"))]
    if not found:
        known = ", ".join(sorted(registry.emergencies)) or "none"
        stored = ", ".join(path.stem for path, _ in stored_provenances(task)) or "none"
        raise UnknownNameError(f"unknown emergency {name!r} (known: {known}; stored for {task}: {stored})")
    if len(found) > 1:
        raise LDEngineError(f"several stored functions are for {name!r}: "
                            f"{', '.join(path.stem for path, _ in found)}; name one")
    path, provenance = found[0]
    kind = stored_rule(registry, task, provenance)
    if kind is None:
        raise LDEngineError(f"{path.name}: its provenance records no rule a game can apply")
    return Instance(kind, dict(provenance.get("params") or {}))


def stored_rule(registry: Registry, task: str, provenance: dict) -> EmergencyKind | None:
    """The rule a stored function was written for: registered, or a user's own rebuilt from
    the provenance (its words, examples and the kind it is checked like); None if neither."""
    if provenance.get("kind") in registry.emergencies:
        return registry.emergencies[provenance["kind"]].obj
    if provenance.get("program") and task in registry.rule_languages:
        language = registry.rule_languages[task].obj    # a rule read into the task's language
        return language.kind(parse_program(provenance["program"]), provenance.get("rule", ""))
    rule, game = provenance.get("custom_rule"), registry.tasks.get(task)
    if not rule or game is None or not hasattr(game.obj, "custom_emergency"):
        return None
    like = registry.emergencies[rule["like"]].obj if rule.get("like") in registry.emergencies else None
    return game.obj.custom_emergency(rule["text"], provenance.get("params") or {}, rule.get("allowed", []),
                                     rule.get("forbidden", []), like=like)


def check_rule_text(text: str, task: TaskBase) -> str:
    """``text`` if it can be a rule in words: not empty, with at least one letter, and not
    refused by the task (its ``rule_refusal``, e.g. a rule about several pieces at once)."""
    if not re.search(r"[^\W\d_]", text or ""):
        raise LDEngineError(f"the rule {text!r} has no words: say the new rule in words, e.g. "
                            f"ldengine emergency \"...\" --task {task.name} (docs/emergencies.md)")
    why = task.rule_refusal(text) if task.rule_refusal is not None else None
    if why:
        raise LDEngineError(why)
    return text


def with_stage(pipeline: list[str], stage: str, after: str) -> list[str]:
    """``pipeline`` with ``stage`` inserted right after ``after``."""
    out = []
    for name in pipeline:
        out.append(name)
        if name == after:
            out.append(stage)
    if stage not in out:
        raise LDEngineError(f"the pipeline has no stage {after!r} to put {stage!r} after")
    return out


def kinds_of(registry: Registry, task: str, split: str) -> list[EmergencyKind]:
    return [r.obj for r in registry.emergencies.values() if r.obj.task == task and r.obj.split == split]


def reference_module(kind: EmergencyKind, params: dict) -> str:
    """The teacher's function for an instance, as a module the function base can take in."""
    return (f'"""The teacher\'s reference function for the emergency {kind.name} {json.dumps(params)}."""\n\n'
            f'VERSION = "1.0.0"\n\n\n{kind.reference(params)}')
