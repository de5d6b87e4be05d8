"""Pursuit's four pursuer.decide strategies: each forced alone, the oracle's mix, and per state class.

    .venv/bin/python benchmarks/bench_strategies.py [--games 200] [--states 40] [--emergency-games 50] [--write]

Whole games (greedy evader, seeds 0...): the expert's pipeline with pursuer.decide
forced to one strategy, and with the oracle choosing by the state (the expert).
Under an emergency (restricted-area, wall: parameter seed 0) the teacher's reference
function fills the new stage, as in ``emergency_selection_examples``. Per state class:
states of the oracle mix's games (the blocked ones from its games under wall), classed
by the facts the task's state summary shows, in the oracle's order (capture ready; else
a pursuer blocked; else evader near an edge; else open), at most ``--states`` per
class, evenly spread; from each, the strategy plays the first step, then the oracle mix
plays on; steps to capture, successes and the time of that first call through the
sandbox.
"""
from __future__ import annotations

import argparse
import datetime
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, machine_line, publish  # noqa: E402

STAGE = "pursuer.decide"
STRATEGIES = ("capture_adjacent", "route_around_block", "pin_against_edge", "encircle_evader")
CLASSES = ("capture ready", "blocked", "near edge", "open")
EMERGENCIES = ("restricted-area", "wall")
SECTION = "## Pursuit decide strategies"


class DecideSelector:
    """The oracle at every stage, except pursuer.decide: ``name`` there (for the first
    ``steps`` decisions only when ``steps`` is given, then the oracle)."""

    def __init__(self, base, name: str | None, steps: int | None = None):
        self.base, self.name, self.steps = base, name, steps
        self.first_call = None      # seconds of the forced function's first call

    def select(self, stage, state, candidates) -> int:
        want = self.base.oracle(stage, state).name
        if stage == STAGE and self.name and (self.steps is None or self.steps > 0):
            want = self.name
            if self.steps is not None:
                self.steps -= 1
            if self.first_call is None:
                started = time.perf_counter()
                self.base.call(self.name, state)
                self.first_call = time.perf_counter() - started
        return next(i for i, e in enumerate(candidates) if e.task == self.base.task and e.name == want)


def agent_for(task, base, name, steps=None, extra_stage=None):
    from ldengine.agents import AgentContext, LoopAgent
    from ldengine.emergency.rule import with_stage
    from ldengine.loop import WholeBase
    selector = DecideSelector(base, name, steps)
    agent = LoopAgent(AgentContext(task, base), WholeBase(base), selector)
    if extra_stage:
        agent.pipeline = with_stage(agent.pipeline, *extra_stage)
    return agent, selector


def play_games(task, base, name, seeds, evader, extra_stage=None) -> dict:
    return play_setups([(task, base, extra_stage)], name, seeds, evader)


def play_setups(setups, name, seeds, evader) -> dict:
    """The games of ``seeds`` under each (task, base, extra stage) of ``setups``, summed."""
    started, results = time.perf_counter(), []
    for task, base, extra_stage in setups:
        agent, _ = agent_for(task, base, name, extra_stage=extra_stage)
        results += [task.play(agent, i, seed, evader, lambda r: None) for i, seed in enumerate(seeds)]
    summary = setups[0][0].summarize(results)
    summary["ms_per_step"] = 1000 * (time.perf_counter() - started) / max(1, sum(r.steps for r in results))
    return summary


def game_row(label: str, s: dict) -> str:
    steps = f"{s['avg_steps_success']:.2f}" if s["avg_steps_success"] is not None else "-"
    return (f"| {label} | {s['games']} | {s['success']:.3f} | {steps} | {s['violations']} | "
            f"{s['ms_per_step']:.1f} |")


def state_class(state: dict) -> str:
    """The class of a pursuer.decide input, in the oracle's order of the When: fields."""
    from ldengine_plugins.pursuit.task import capture_ready, near_edge, pursuer_blocked
    if capture_ready(state):
        return CLASSES[0]
    if pursuer_blocked(state):
        return CLASSES[1]
    return CLASSES[2] if near_edge(state) else CLASSES[3]


def sample_states(task, base, seeds, evader, per_class: int, extra_stage=None) -> dict:
    """States (pursuers, evader) of the oracle mix's games, by class (of the input
    pursuer.decide reads), evenly spread."""
    agent, _ = agent_for(task, base, None, extra_stage=extra_stage)
    found: dict = {c: [] for c in CLASSES}

    def seen(decision) -> None:
        state = next(s.state for s in decision.stages if s.stage == STAGE)
        found[state_class(state)].append({"pursuers": state["pursuers"], "evader": state["evader"]})

    agent.observers.append(seen)
    for i, seed in enumerate(seeds):
        task.play(agent, i, seed, evader, lambda r: None)
    return {c: states[::max(1, len(states) // per_class)][:per_class] for c, states in found.items()}


def from_state(task, base, name, start, evader, extra_stage=None) -> tuple[bool, int, float]:
    """``name`` plays the first step from ``start``, the oracle mix the rest."""
    agent, selector = agent_for(task, base, name, steps=1, extra_stage=extra_stage)
    result = task.play(agent, 0, 0, evader, lambda r: None, start=start)
    return result.outcome == "success", result.steps, selector.first_call or 0.0


def class_rows(task, base, states: dict, evader, setups: dict) -> list[str]:
    """``setups``: per class, the (task, base, extra stage) its states were met under
    (default: the open game's)."""
    rows = []
    for cls in CLASSES:
        cells = []
        in_task, in_base, stage = setups.get(cls, (task, base, None))
        for name in STRATEGIES:
            runs = [from_state(in_task, in_base, name, s, evader, stage) for s in states[cls]]
            wins = [steps for ok, steps, _ in runs if ok]
            mean = sum(wins) / len(wins) if wins else None
            ms = 1000 * sum(t for *_, t in runs) / max(1, len(runs))
            cells.append(f"{'-' if mean is None else f'{mean:.2f}'} ({len(wins)}/{len(runs)}, {ms:.2f} ms)")
        rows.append(f"| {cls} | {len(states[cls])} | " + " | ".join(cells) + " |")
    return rows


def in_force(reg, task, name: str, param_seed: int = 0):
    """The emergency ``name`` (drawn with ``param_seed``) in force, a base with its
    reference function, and that function's stage."""
    from ldengine.emergency.rule import Instance
    from ldengine.emergency.store import params_key
    from ldengine.emergency.rule import reference_module
    from ldengine.functionbase import FunctionBase
    kind = reg.get("emergencies", name).obj
    params = kind.params(param_seed, task.size)
    base = FunctionBase.build(task.name, reg.modules_for(task.name))
    base.add_generated(reference_module(kind, params),
                       f"{task.name}/emergencies/reference-{kind.name}-{params_key(params)}.py")
    return task.with_emergency(Instance(kind, params)), base, (kind.stage, kind.after)


def write_section(text: str) -> None:
    """Replace the section in RESULTS.md (or append it)."""
    old = RESULTS.read_text(encoding="utf-8")
    pattern = re.compile(rf"^{re.escape(SECTION)}.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda m: text.rstrip() + "\n\n", old) if pattern.search(old) else old.rstrip() + "\n\n" + text
    RESULTS.write_text(new.rstrip() + "\n", encoding="utf-8")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--games", type=int, default=200, help="games (seeds 0...) per configuration")
    parser.add_argument("--states", type=int, default=40, help="states per class")
    parser.add_argument("--emergency-games", type=int, default=50,
                        help="games under each emergency instance (0: none, and no blocked states)")
    parser.add_argument("--emergency-params", type=int, default=4,
                        help="instances of each emergency (parameter seeds 0...)")
    parser.add_argument("--write", action="store_true", help="put the section into benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    from ldengine.functionbase import FunctionBase
    from ldengine.registry import Registry
    reg = Registry.load()
    task, evader = reg.get("tasks", "pursuit").obj, reg.get("evaders", "greedy").obj
    base = FunctionBase.build("pursuit", reg.modules_for("pursuit"))
    seeds = list(range(args.games))
    games = [game_row("oracle mix (expert)", play_games(task, base, None, seeds, evader))]
    games += [game_row(f"{name} alone", play_games(task, base, name, seeds, evader)) for name in STRATEGIES]
    states = sample_states(task, base, seeds, evader, args.states)
    setups, opened = {}, []
    try:
        for emergency in EMERGENCIES if args.emergency_games else ():
            instances = [in_force(reg, task, emergency, p) for p in range(args.emergency_params)]
            opened += [e_base for _, e_base, _ in instances]
            e_seeds = list(range(args.emergency_games))
            for name in (None,) + STRATEGIES:
                label = f"{name} alone, {emergency}" if name else f"oracle mix, {emergency}"
                games.append(game_row(label, play_setups(instances, name, e_seeds, evader)))
            if emergency == "wall":
                # blocked states come from the first instance, so they are replayed under it
                states[CLASSES[1]] = sample_states(*instances[0][:2], e_seeds, evader, args.states,
                                                   instances[0][2])[CLASSES[1]]
                setups[CLASSES[1]] = instances[0]
        rows = class_rows(task, base, states, evader, setups)
    finally:
        for e_base in opened:
            if e_base.isolated is not None:
                e_base.isolated.close()
    text = "\n".join([
        f"{SECTION} ({datetime.date.today().isoformat()})", "",
        machine_line("bench_strategies.py", argv), "",
        "Whole games, greedy evader, seeds from 0; pursuer.decide forced to one strategy or chosen by the "
        f"oracle (under an emergency: parameter seeds 0-{args.emergency_params - 1}, {args.emergency_games} games "
        "each, the teacher's reference function in the new stage):", "",
        "| pursuer.decide | games | success | avg steps of success | violations | ms per step |",
        "|---|---|---|---|---|---|", *games, "",
        "From states of the oracle mix's games (blocked: its games under wall), by class (the state summary's "
        "facts, in the oracle's order): the strategy plays the first step, then the oracle mix; mean steps to "
        "capture (captures/states, ms of the first call, in the sandbox):", "",
        "| state class | states | " + " | ".join(STRATEGIES) + " |",
        "|---|---|" + "---|" * len(STRATEGIES), *rows, ""])
    publish(text, False)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main(sys.argv[1:])
