"""Training data for the student: functions to write for the training kinds, pass rates of
its writing, and selections with the new stage's function in the base."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from ldengine.agents import AgentContext, expert_agent
from ldengine.contracts import EmergencyKind, TaskBase, emergency_params
from ldengine.emergency.read import Reader, read_function
from ldengine.emergency.rule import Instance, kinds_of, reference_module, with_stage
from ldengine.emergency.store import params_key
from ldengine.emergency.verify import game_inputs
from ldengine.emergency.write import (DEFAULT_ATTEMPTS, PREAMBLE, examples_prefix, preamble_of, training_pair,
                                      worked_examples, write_function)
from ldengine.errors import LDEngineError
from ldengine.functionbase import FunctionBase
from ldengine.ld import RetrieverProvider, SelectionExample, selection_examples
from ldengine.retriever import Encoder, Retriever

if TYPE_CHECKING:
    from ldengine.contracts import Evader, Student
    from ldengine.registry import Registry


def writing_data(registry: Registry, task: str, seeds: list[int], generated: int = 0,
                 form: str = "body") -> list[tuple[str, str, str]]:
    """(prefix, header, body) for the training kinds only: the evaluated kinds are held out.
    Kinds without parameters give one example each. ``generated``: as many rules of the
    task's generated rule language (``rule_languages``), of its training shapes and wordings.
    ``form`` "condition": the header ends inside the scaffold and the body is the condition."""
    kinds = kinds_of(registry, task, "train")
    prefix = examples_prefix(worked_examples(registry, task, form=form), preamble_of(kinds[0]) if kinds else PREAMBLE)
    rows = {}
    for kind in kinds:
        for seed in seeds:
            params = kind.params(seed)
            rows[(kind.name, json.dumps(params, sort_keys=True))] = (prefix, *training_pair(kind, params, form))
    for kind in rule_languages(registry, task, generated, split="train") if generated else []:
        rows[(kind.name, "{}")] = (prefix, *training_pair(kind, {}, form))
    return list(rows.values())


def rule_languages(registry: Registry, task: str, n: int, split: str, seed: int = 0, wording: str | None = None) -> list:
    """``n`` rules of the task's generated rule language (the task's ``rule_language`` hook),
    as emergency kinds; an error for a task without one."""
    language = registry.task(task).rule_language
    if language is None:
        raise LDEngineError(f"task {task!r} has no generated rule language (a rule_language method on its task)")
    return language(n, seed=seed, split=split, wording=wording)


def pass_rates(registry: Registry, task: str, student: Student, kinds: list[EmergencyKind], seeds: list[int],
               attempts: int = DEFAULT_ATTEMPTS, progress: bool = True, form: str = "body",
               reader: Reader | None = None) -> dict:
    """For each kind: over ``seeds`` (each draws the rule's parameters and the verification
    cases), the share whose function passed within ``attempts``, and the attempts it took.
    With ``reader``, the rule's words are read into the rule language instead (each reading,
    best first, is one attempt: ``read_function``)."""
    examples = worked_examples(registry, task, form=form)
    game_task, base = registry.task(task), FunctionBase.build(task, registry.modules_for(task))
    out = {}
    bar = tqdm(total=len(kinds) * len(seeds), desc="reading" if reader else "writing", unit="rule",
               disable=not progress)
    for kind in kinds:
        took = []
        for seed in seeds:
            params = kind.params(seed)
            game = game_inputs(game_task.with_emergency(Instance(kind, params)), base, kind) \
                if game_task.with_emergency is not None else None
            written = read_function(kind, params, reader, attempts, seed, game=game) if reader else \
                write_function(kind, params, student, examples, attempts, seed, game=game, form=form)
            took.append(written.attempts_to_pass)
            bar.update(1)
        passed = [t for t in took if t is not None]
        out[kind.name] = {"seeds": len(seeds), "passed": len(passed), "pass_rate": round(len(passed) / len(seeds), 4),
                          "attempts_to_pass": took,
                          "mean_attempts_to_pass": round(sum(passed) / len(passed), 2) if passed else None}
    bar.close()
    return out


def emergency_selection_examples(registry: Registry, task: TaskBase, kinds: list[EmergencyKind],
                                 seeds: list[int], evader: Evader | None, k: int, steps: int = 4,
                                 shuffle_seed: int | None = None, encoder: Encoder | None = None,
                                 desc: str = "") -> list[SelectionExample]:
    """Selection examples with an emergency in force: for each kind and parameter seed, the
    kind's reference function joins the base (untrusted, exactly as a written one would),
    the expert plays one seeded game with the new stage in its pipeline, and every stage
    of its first ``steps`` steps gives an example, and so does every later stage with
    alternatives (the capture-ready states come at the end). The prompt then carries the new rule
    and the new stage, so the student learns to pick the function of the stage it is
    asked for, also when the state summary looks like the one before ``decide``.
    ``desc``: a progress bar over the games."""
    derive = task.with_emergency
    if derive is None:
        raise LDEngineError(f"task {task.name!r} takes no new rules (it has no with_emergency)")
    encoder = encoder or Encoder()
    examples: list[SelectionExample] = []
    games = [(kind, seed) for kind in kinds for seed in seeds]
    for kind, seed in tqdm(games, desc=desc, unit="game", disable=not desc, leave=False):
        params = emergency_params(kind, task, seed)
        in_force = derive(Instance(kind, params))
        base = FunctionBase.build(task.name, registry.modules_for(task.name))
        base.add_generated(reference_module(kind, params),
                           f"{task.name}/emergencies/reference-{kind.name}-{params_key(params)}.py")
        agent = expert_agent(AgentContext(in_force, base))
        agent.pipeline = with_stage(agent.pipeline, kind.stage, kind.after)
        pairs: list = []
        agent.observers.append(lambda d: pairs.append([(s.stage, s.state) for s in d.stages]))
        try:
            in_force.play(agent, 0, seed, evader, lambda r: None)
            provider = RetrieverProvider(in_force, base, Retriever.for_library(base, registry, encoder), k)
            # every stage of the first steps, and later the stages whose functions the state decides
            # among (capture comes at a game's end: without them no capture-ready state under a new
            # rule was ever seen, and ld chose route_around_block there)
            flat = [pair for step in pairs[:steps] for pair in step] + [
                pair for step in pairs[steps:] for pair in step if len(base.for_stage(pair[0])) > 1]
            examples += selection_examples(in_force, base, provider, flat,
                                           None if shuffle_seed is None else shuffle_seed + len(examples))
        finally:
            if base.isolated is not None:
                base.isolated.close()
    return examples
