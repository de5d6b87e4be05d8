"""Logic Distillation end to end with the real parts: retriever, default student,
the committed adapter, LoRA fine-tuning for a few steps, and the S-LLM baseline."""
import json

import pytest
from click.testing import CliRunner

import ldengine.cli as cli_module
from ldengine.adapters import find_adapter
from ldengine.errors import LDEngineError
from ldengine.finetune import FinetuneConfig, finetune, shuffled
from ldengine.ld import SelectionExample, option_text, prompt_prefix, stage_inputs, stage_query
from ldengine_plugins.pursuit.baseline import legal_cells, parse_answer, prompt


def run_cli(*args):
    return CliRunner().invoke(cli_module.cli, list(args), catch_exceptions=False)


def test_the_committed_adapters_record_their_figures(registry, pursuit_base):
    """Pursuit plays with its own adapter, trained on the facts its queries state, whose manifest pins
    model, base, facts and data with its held-out figures. The joint adapter of both tasks' manuals
    (trained on the facts' earlier words) stays; twentyone plays with it continued on twentyone alone
    (docs/twentyone.md: the joint one missed a soft-hand decide state), which its manifest records."""
    from ldengine.adapters import PACKAGED_SHARED_DIR
    from ldengine.functionbase import FunctionBase
    twentyone = FunctionBase.build("twentyone", registry.modules_for("twentyone"))
    adapter = find_adapter("pursuit", pursuit_base)
    manifest = json.loads((adapter / "manifest.json").read_text())
    assert manifest["function_base_hash"] == pursuit_base.hash
    assert set(manifest["trained_functions"]["pursuit"]) == set(pursuit_base.entries)
    assert set(manifest["trained_facts"]["pursuit"]) == set(pursuit_base.facts)
    assert len(manifest["base_model_sha256"]) == 64 and len(manifest["data_sha256"]) == 64
    assert manifest["heldout_accuracy"] == 1.0 and manifest["heldout_shuffled_accuracy"] == 1.0
    # the 16-step continuation after pin_against_edge changed: 0.982 under the held-out emergencies
    # (1.000 before those steps; docs/student.md), 1.000 at their new stage
    assert manifest["heldout_emergency_accuracy"] >= 0.98 and manifest["heldout_emergency_stage_accuracy"] == 1.0
    (joint,) = sorted(PACKAGED_SHARED_DIR.glob("*/manifest.json"))
    own_manifest = json.loads((find_adapter("twentyone", twentyone) / "manifest.json").read_text())
    assert own_manifest["continued_from"] == joint.parent.name
    assert own_manifest["heldout_accuracy"] == 1.0 and own_manifest["heldout_shuffled_accuracy"] == 1.0
    figures = json.loads(joint.read_text())["per_task"]["twentyone"]
    assert figures["heldout_accuracy"] > figures["heldout_accuracy_before"] + 0.4


@pytest.mark.slow
def test_under_a_held_out_emergency_the_student_picks_the_new_stages_function(registry, pursuit_task, pursuit_base):
    """With an evaluated emergency in force (never in its training data), the committed
    adapter picks the emergency function at the new stage, for every evaluated kind,
    also where the state summary reads as it does before ``decide`` (wall, short-reach)."""
    from ldengine.emergency.rule import kinds_of
    from ldengine.emergency.teach import emergency_selection_examples
    from ldengine.finetune import accuracy
    from ldengine.models import load_student
    kinds = kinds_of(registry, "pursuit", "eval")
    examples = emergency_selection_examples(registry, pursuit_task, kinds, [7], registry.get("evaders", "greedy").obj,
                                            5, steps=1)
    new_stage = [e for e in examples if e.stage == "pursuer.emergency"]
    assert len(new_stage) == len(kinds) and all(e.retrieved for e in new_stage)
    student = load_student(adapter=find_adapter("pursuit", pursuit_base))
    assert accuracy(student, new_stage) == 1.0


def test_the_ld_agent_plays_with_the_student_choosing_every_stage(tmp_path, pursuit_base):
    """It plays two games with retriever + fine-tuned student; the trace records, per stage,
    the candidates, the student's pick with its probabilities, and the oracle's. The header
    and the summary name the student, its weights' type, the adapter and the function base."""
    trace, summary = tmp_path / "t.jsonl", tmp_path / "r.json"
    result = run_cli("run", "pursuit", "--agent", "ld", "--games", "2", "--seed", "1", "--quiet",
                     "--trace", str(trace), "--json", str(summary))
    assert result.exit_code == 0, result.output
    data = json.loads(summary.read_text())
    assert data["agent"] == "ld" and data["success"] == 1.0 and data["failure_with_violation"] == 0
    assert data["selection_accuracy"] > 0.8 and data["retrieval_miss"] == data["function_errors"] == 0
    assert 0 < data["distinct_prompts"] <= data["selections"]
    adapter = find_adapter("pursuit", pursuit_base).name
    assert (data["adapter"], data["student"]) == (adapter, "SmolLM2-135M-Instruct.Q4_1")
    assert data["dtype"] in ("float32", "bfloat16") and (data["function_base_version"], data["emergency"]) == ("plugins", None)
    assert result.output.splitlines()[0].endswith(f"| student SmolLM2-135M-Instruct.Q4_1 ({data['dtype']}) "
                                                  f"| adapter {adapter} | base plugins")
    steps = [json.loads(line) for line in trace.read_text().splitlines()]
    chosen = [r["functions"] for r in steps if r["type"] == "pursuers"]
    decide = {"capture_adjacent", "route_around_block", "pin_against_edge", "encircle_evader"}
    assert chosen and all(f[:3] == ["observe_positions", "pursuer_candidate_cells", "filter_legal_cells"]
                          and f[3] in decide for f in chosen)
    selections = [s for r in steps if r["type"] == "pursuers" for s in r["selections"]]
    assert all(len(s["candidates"]) == len(s["probabilities"]) and s["chosen"] in s["candidates"]
               and abs(sum(s["probabilities"]) - 1) < 0.01 for s in selections)
    # the top-5, less the decide alternatives the state's read conditions do not call for: one stays
    offered = [len(decide & set(s["candidates"])) for s in selections if s["oracle"] in decide]
    assert offered and set(offered) == {1} and data["alternatives_withheld"] == 3 * len(offered)
    assert all(len(s["candidates"]) == 5 for s in selections if s["oracle"] not in decide)
    assert sum(s["chosen"] == s["oracle"] for s in selections) / len(selections) == data["selection_accuracy"]


def test_games_in_lockstep_play_exactly_as_one_by_one(tmp_path):
    """With --batch 3 the ld agent decides three games' stages together (one batched
    selection per stage); every game's trace records, selections included, equal those
    of the games played one by one."""
    traces = []
    for batch in ("1", "3"):
        trace = tmp_path / f"b{batch}.jsonl"
        result = run_cli("run", "pursuit", "--games", "3", "--seed", "5", "--batch", batch, "--dtype", "float32",
                         "--quiet", "--trace", str(trace))
        assert result.exit_code == 0, result.output
        records = [json.loads(line) for line in trace.read_text().splitlines()]
        traces.append(sorted(records, key=lambda r: r["game"]))
    assert traces[0] == traces[1]
    assert any(s["probabilities"] for r in traces[0] if r["type"] == "pursuers" for s in r["selections"])


def test_a_quick_finetune_is_a_smoke_run_saved_in_the_cache(tmp_path, monkeypatch):
    """--quick: 2 steps on 2 training and 2 held-out games, saved under the cache
    (never beside the committed adapters); only for --method ld."""
    from ldengine.finetune import quick
    monkeypatch.setenv("LDENGINE_CACHE", str(tmp_path))
    cfg = quick(FinetuneConfig())
    assert cfg.steps == 2 and len(cfg.train_seeds) == len(cfg.heldout_seeds) == 2
    assert cfg.out.startswith(str(tmp_path / "adapters" / "quick-pursuit-"))
    result = run_cli("finetune", "--task", "pursuit", "--method", "kd", "--quick")
    assert result.exit_code != 0 and "--quick is a smoke run of --method ld" in result.output


@pytest.mark.slow
def test_a_few_finetuning_steps_write_an_adapter_with_its_manifest(registry, tmp_path, pursuit_base):
    """It builds the data from expert games, trains three LoRA steps, evaluates on held-out
    seeds and saves the adapter with a manifest naming model, base, data and accuracy; not
    promoted, it is not taken as the default where the default is looked for."""
    cfg = FinetuneConfig(steps=3, batch_size=4, train_seeds=[10_000], heldout_seeds=[20_000],
                         shuffles=2, emergency_seeds=[0], emergency_steps=1, out=str(tmp_path / "adapter"))
    lines = []
    manifest = finetune(registry, cfg, progress=False, log=lines.append)
    saved = json.loads((tmp_path / "adapter" / "manifest.json").read_text())
    assert saved["training"]["steps"] == 3 and len(saved["losses"]) == 3
    assert saved["function_base_hash"] == manifest["function_base_hash"]
    after = next(line for line in lines if "held-out selection accuracy after 3 steps" in line)
    # the figures saved are the figures printed, each over the examples it names
    assert (f"{saved['heldout_shuffled_accuracy']:.3f} with shuffled candidates "
            f"({saved['heldout_shuffled_examples']})") in after and saved["train_examples"] > 0
    assert (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size < 4_000_000
    assert any("before training" in line for line in lines)
    # selections under emergencies: training kinds for training, the evaluated kinds held out
    assert not set(saved["emergency_train_kinds"]) & set(saved["emergency_held_out_kinds"])
    assert "restricted-area" in saved["emergency_held_out_kinds"] and saved["emergency_train_examples"] > 0
    assert f"at their new stage {saved['heldout_emergency_stage_accuracy']:.3f}" in after
    assert saved["heldout_emergency_examples"] > 0
    assert saved["promoted"] is False
    with pytest.raises(LDEngineError, match="no ld adapter in"):
        find_adapter("pursuit", pursuit_base, root=tmp_path)


def test_shuffled_held_out_examples_move_the_right_answer():
    """It puts each distinct example's candidates in several orders, the answer following."""
    e = SelectionExample("p", "q", ("a", "b", "c"), 0, "s", True)
    out = shuffled([e, e], times=6, seed=1)
    assert len(out) == 6 and all(x.options[x.answer] == "a" for x in out)
    assert len({x.answer for x in out}) > 1


def test_the_selection_texts_name_the_stage_and_the_candidates(pursuit_task, pursuit_base):
    """It puts the rules and stages in the fixed prefix and keeps the per-stage part short."""
    state = pursuit_task.new_game(0)[0].state()
    assert pursuit_task.rules in prompt_prefix(pursuit_task)
    query = stage_query(pursuit_task, "pursuer.observe", state)
    assert query.startswith("Stage: pursuer.observe\n") and "not measured" in query
    assert option_text(pursuit_base.entry("filter_legal_cells")) == (
        "filter_legal_cells (stage pursuer.filter): Keep only the candidate cells each pursuer may legally move to.")
    assert option_text(pursuit_base.entry("capture_adjacent")).endswith(
        "Use when: every pursuer can reach a cell next to the evader this step (capture ready)")


def test_a_missing_adapter_is_a_clear_error(pursuit_base, tmp_path):
    """It says how to make an adapter when none matches the base."""
    with pytest.raises(LDEngineError, match="ldengine finetune --task pursuit"):
        find_adapter("pursuit", pursuit_base, root=tmp_path)


def test_the_baseline_prompt_lists_each_pursuers_legal_cells(pursuit_task):
    """It gives the student the rules, the evader and every legal cell of each pursuer."""
    state = pursuit_task.new_game(0)[0].state()
    text = prompt(pursuit_task.rules, state)
    cells = legal_cells(state)
    assert pursuit_task.rules in text and len(cells) == 3
    assert all(f"({x}, {y})" in text for x, y in cells[0])


@pytest.mark.parametrize("answer, cells", [
    ("Pursuer 1: (3, 4)\nPursuer 2: (5, 6)\nPursuer 3: [7, 8]", [[3, 4], [5, 6], [7, 8]]),
    ("(1,1) (2,2) (3,3) (4,4)", [[1, 1], [2, 2], [3, 3]]),
    ("Pursuer 1 moves up.", None),
    ("(1, 2) and (3, 4)", None),
])
def test_the_baseline_answer_is_parsed_into_three_cells_or_nothing(answer, cells):
    """It reads the first three cells of the answer; fewer is no action (a violation)."""
    assert parse_answer(answer) == cells


def test_the_untuned_student_answers_a_step_in_text_which_is_parsed(pursuit_task, registry, pursuit_base):
    """It asks the real untuned student for one step and turns the answer into three cells
    or into no action, counting what happened (a whole game can take 100 slow steps)."""
    from ldengine.agents import AgentContext
    agent = registry.get("agents", "student").obj(AgentContext(pursuit_task, pursuit_base, {}, registry))
    state = pursuit_task.new_game(1)[0].state()
    action = agent.act(state)
    stats = agent.stats()
    assert agent.last_answer.strip() and stats["steps_answered"] == 1
    if action is None:
        assert stats["unparseable_answers"] == 1
    else:
        assert len(action) == 3 and all(len(c) == 2 for c in action)
        legal = legal_cells(state)
        assert stats["illegal_cells_proposed"] == sum(c not in l for c, l in zip(action, legal))


@pytest.mark.slow
def test_one_adapter_learns_several_tasks_manuals_and_serves_each(registry, tmp_path):
    """It trains one adapter on pursuit's and twentyone's selections (shared index), records
    each task's held-out accuracy and base hash, and each task finds it as its adapter."""
    from ldengine.functionbase import FunctionBase
    cfg = FinetuneConfig(task="pursuit,twentyone", steps=2, batch_size=4, train_seeds=[10_000],
                         heldout_seeds=[20_000], shuffles=1, emergency_seeds=[], out=str(tmp_path / "joint"),
                         promote=True)
    lines = []
    manifest = finetune(registry, cfg, progress=False, log=lines.append)
    saved = json.loads((tmp_path / "joint" / "manifest.json").read_text())
    assert saved["tasks"] == ["pursuit", "twentyone"] and saved["training"]["steps"] == 2
    assert set(saved["per_task"]) == set(saved["function_base_hashes"]) == {"pursuit", "twentyone"}
    for t in saved["tasks"]:       # each task's figure is the one its line printed
        assert any(line.startswith(f"{t}: held-out selection accuracy after 2 steps: "
                                   f"{saved['per_task'][t]['heldout_accuracy']:.3f} in retrieval order")
                   for line in lines), lines
    assert saved["heldout_examples"] == sum(saved["per_task"][t]["heldout_examples"] for t in saved["tasks"])
    assert any(line.startswith("twentyone: held-out selection accuracy after") for line in lines)
    for task in saved["tasks"]:
        base = FunctionBase.build(task, registry.modules_for(task))
        assert manifest["function_base_hashes"][task] == base.hash
        assert find_adapter(task, base, root=tmp_path) == tmp_path / "joint"


@pytest.mark.slow
def test_continuing_an_adapter_trains_where_the_plugins_new_function_competes(tmp_path, pursuit_base):
    """--from-adapter on a base a plugin grew: the committed adapter still fits; the continuation
    trains on the selections where the new alternative is a candidate (with as many others
    replayed), says so, and records it in the manifest; the new alternative widens the
    decide stage's top-K instead of pushing another function out."""
    from pathlib import Path
    from ldengine.ld import RetrieverProvider
    from ldengine.registry import ModuleSource, Registry
    from ldengine.retriever import Retriever
    rush = (Path(__file__).resolve().parent.parent / "plugins" / "ldengine-pursuit-extras" / "ldengine_pursuit_extras"
            / "functions" / "rush.py").read_text()
    grown = Registry.load()
    grown.modules.append(ModuleSource("pursuit", rush, "extras/rush.py", "pursuit_extras"))
    from ldengine.functionbase import FunctionBase
    base = FunctionBase.build("pursuit", grown.modules_for("pursuit"))
    start = find_adapter("pursuit", base)
    assert start == find_adapter("pursuit", pursuit_base)
    task = grown.get("tasks", "pursuit").obj
    provider = RetrieverProvider(task, base, Retriever.for_library(base, grown), 5)
    assert provider.k_for("pursuer.decide") == 6 and provider.k_for("pursuer.observe") == 5
    for stage, state in stage_inputs(task, base, grown.get("evaders", "greedy").obj, [20_000, 20_001]):
        offered = [e.name for e in provider.candidates(stage, state)]
        assert {e.name for e in base.for_stage(stage)} <= set(offered) and len(offered) == provider.k_for(stage)
    cfg = FinetuneConfig(steps=1, batch_size=4, train_seeds=[10_000], heldout_seeds=[20_000], shuffles=1,
                         emergency_seeds=[], start_adapter=str(start), out=str(tmp_path / "continued"))
    lines = []
    manifest = finetune(grown, cfg, progress=False, log=lines.append)
    continued = manifest["continuation"]
    assert continued["new_functions"] == {"pursuit": ["rush_from_three_sides"]}
    assert 0 < continued["replayed"] <= continued["new_examples"]
    assert manifest["train_examples"] == continued["new_examples"] + continued["replayed"]
    assert any("1 function it never learnt (rush_from_three_sides)" in line for line in lines)
    assert manifest["continued_from"] == start.name
    assert manifest["retrieval_recall_at_5"] == 1.0
