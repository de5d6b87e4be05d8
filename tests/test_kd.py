"""Knowledge distillation: expert-move data, LoRA on text answers, the kd agent,
and batched generation with a cached prefix (what the text agents run on)."""
import json

import pytest
from click.testing import CliRunner

from ldengine.adapters import find_adapter
from ldengine.cli import cli
from ldengine.errors import LDEngineError
from ldengine_plugins.pursuit import kd
from ldengine_plugins.pursuit.baseline import has_cells, legal_cells, parse_answer, prompt, rules_prefix, step_question


@pytest.fixture(scope="module")
def student():
    from ldengine.models import load_student
    return load_student()


@pytest.fixture(scope="module")
def moves(registry, pursuit_task, pursuit_base):
    return kd.move_examples(pursuit_task, pursuit_base, registry.get("evaders", "greedy").obj, [10_000])


def test_kd_examples_are_the_experts_moves_one_per_pursuer_and_step(registry, pursuit_task, pursuit_base, moves):
    """Each step of an expert game gives three examples; each answer is one of that pursuer's
    legal cells, which the question lists."""
    result = pursuit_task.play(_expert(pursuit_task, pursuit_base), 0, 10_000,
                               registry.get("evaders", "greedy").obj, lambda r: None)
    assert len(moves) == 3 * result.steps
    for e in moves:
        cell = tuple(parse_answer(e.answer * 3)[0])
        assert cell in e.legal and e.answer in e.question


def _expert(task, base):
    from ldengine.agents import AgentContext, expert_agent
    return expert_agent(AgentContext(task, base))


@pytest.mark.slow
def test_batched_generation_with_a_cached_prefix_writes_what_generate_writes(student, pursuit_task):
    """Greedy answers are the same token for token: one prompt at a time through transformers'
    generate, or several at once, right-padded, after the rules' cached keys and values."""
    states = [pursuit_task.new_game(seed)[0].state() for seed in (0, 1, 2)]
    one_by_one = [student.generate(prompt(pursuit_task.rules, s), max_new_tokens=20)[0] for s in states]
    together = student.generate_batch([step_question(s) for s in states], prefix=rules_prefix(pursuit_task.rules),
                                      max_new_tokens=20)
    assert together == one_by_one
    stopped = student.generate_batch([step_question(states[0])], prefix=rules_prefix(pursuit_task.rules),
                                     max_new_tokens=20, stop=has_cells(1))
    assert one_by_one[0].startswith(stopped[0]) and len(stopped[0]) < len(one_by_one[0])


def test_text_lora_lowers_the_loss_on_its_answers(student, moves, pursuit_task):
    """Four steps on four examples: the answer tokens' loss goes down; the adapter changes answers' scores."""
    from ldengine.models import load_student
    fresh = load_student()
    rows = [(rules_prefix(pursuit_task.rules), e.question, e.answer) for e in moves[:4]]
    metrics = fresh.train_lora_text(rows, steps=4, batch_size=4, lr=5e-3, progress=False, top_layers=2)
    assert metrics["final_loss"] < metrics["first_loss"]
    assert fresh.adapter_hash
    with pytest.raises(LDEngineError, match="non-empty answer"):
        fresh.train_lora_text([(rows[0][0], rows[0][1], "")], steps=1)


@pytest.mark.slow
def test_training_in_pieces_gives_the_adapter_of_one_run(moves, pursuit_task, tmp_path):
    """Steps 0-2 saved (adapter and optimizer), then steps 2-4 in a fresh student, end on the
    tensors of one 4-step run: what lets a learning curve continue after an interruption."""
    import torch

    from ldengine.models import load_student
    rows = [(rules_prefix(pursuit_task.rules), e.question, e.answer) for e in moves[:6]]
    train = dict(batch_size=2, lr=5e-3, progress=False, top_layers=2)
    whole = load_student()
    whole.train_lora_text(rows, steps=4, **train)
    first = load_student()
    state = first.train_lora_text(rows, steps=2, **train)["optimizer_state"]
    first.save_adapter(tmp_path / "half", {"method": "kd"})
    torch.save(state, tmp_path / "optimizer.pt")
    second = load_student()
    second.load_adapter(tmp_path / "half")
    second.train_lora_text(rows, steps=4, start_step=2,
                           optimizer_state=torch.load(tmp_path / "optimizer.pt", weights_only=True), **train)
    assert second.adapter_hash == whole.adapter_hash
    with pytest.raises(LDEngineError, match="no training"):
        second.train_lora_text(rows, steps=4, start_step=4, **train)


@pytest.mark.slow
def test_the_kd_learning_curve_continues_where_it_stopped(tmp_path):
    """`--eval-every` writes a point (curve.json, .md, .png, a checkpoint) every N steps; the
    same command with more --steps continues from the last point; other settings in the same
    folder are refused with the settings that differ."""
    out = tmp_path / "curve"
    args = ["finetune", "--task", "pursuit", "--method", "kd", "--batch-size", "2", "--train-games", "1",
            "--heldout-games", "1", "--eval-every", "1", "--out", str(out)]
    first = CliRunner().invoke(cli, args + ["--steps", "1"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(cli, args + ["--steps", "2"], catch_exceptions=False)
    assert second.exit_code == 0, second.output
    assert "continuing the learning curve" in second.output and "from step 1" in second.output
    curve = json.loads((out / "curve.json").read_text())
    assert [p["step"] for p in curve["points"]] == [0, 1, 2]
    assert (out / "curve.png").stat().st_size > 0 and "| 2 | 4 |" in (out / "curve.md").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [p["step"] for p in manifest["learning_curve"]] == [0, 1, 2] and manifest["examples_seen"] == 4
    trained = curve["points"][1:]
    best = max(trained, key=lambda p: (p["move_accuracy"], -p["step"]))
    if best["move_accuracy"] > curve["points"][0]["move_accuracy"]:     # the best trained point's adapter
        assert manifest["adapter_step"] == best["step"] and (out / "best").is_dir()
        kept = json.loads((out / "best" / "manifest.json").read_text())
        assert kept["adapter_hash"] == manifest["adapter_hash"] and kept["checkpoint_step"] == best["step"]
    else:                                                               # never better than untrained: the last
        assert manifest["adapter_step"] == 2
    other = CliRunner().invoke(cli, args + ["--steps", "3", "--lr", "1e-3"])
    assert other.exit_code == 1 and "other settings (lr differ)" in other.output


def test_the_learning_curve_keeps_the_adapter_of_its_best_point(student, moves, pursuit_task, tmp_path):
    """Each point that beats every earlier one saves its adapter in best/; a later, worse point
    moves the checkpoint on but not best/, and the curve keeps the best point's adapter (the
    untrained point 0 is never kept: there is no adapter to keep)."""
    from ldengine.finetune import FinetuneConfig, KDCurve
    from ldengine.models import load_student
    rows = [(rules_prefix(pursuit_task.rules), e.question, e.answer) for e in moves[:4]]
    fresh = load_student()
    curve = KDCurve(tmp_path, FinetuneConfig("pursuit"), "0" * 64)
    curve.add(0, {"move_accuracy": 0.1, "legal_answer_rate": 0.5, "moves": 10}, None)
    assert curve.kept["step"] == 0 and not (tmp_path / "best").exists()
    hashes = []
    for step, accuracy in ((1, 0.3), (2, 0.2)):
        metrics = fresh.train_lora_text(rows, steps=step, start_step=step - 1, batch_size=2, lr=5e-3,
                                        progress=False, top_layers=1)
        curve.add(step, {"move_accuracy": accuracy, "legal_answer_rate": 0.9, "moves": 10}, metrics, fresh)
        hashes.append(fresh.adapter_hash)
    assert curve.best["step"] == curve.kept["step"] == 1 and hashes[0] != hashes[1]
    assert json.loads((tmp_path / "best" / "manifest.json").read_text())["adapter_hash"] == hashes[0]
    assert json.loads((tmp_path / "checkpoint" / "manifest.json").read_text())["adapter_hash"] == hashes[1]


@pytest.mark.slow
def test_finetune_kd_writes_an_adapter_with_its_manifest(tmp_path):
    """`ldengine finetune --method kd` trains, saves adapter and manifest where --out says,
    and (not promoted) says how to use it rather than making it the default."""
    out = tmp_path / "kd"
    result = CliRunner().invoke(cli, ["finetune", "--task", "pursuit", "--method", "kd", "--steps", "2",
                                      "--batch-size", "4", "--lr", "2e-3", "--train-games", "1",
                                      "--heldout-games", "1", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["method"] == "kd" and saved["train_games"] == 1 and saved["train_examples"] > 0
    assert saved["examples_seen"] == 8
    assert len(saved["data_sha256"]) == 64 and len(saved["adapter_hash"]) == 64
    assert f"held-out move accuracy {saved['heldout_move_accuracy']:.3f}" in result.output
    assert saved["promoted"] is False and result.stdout.splitlines()[-1] == (
        f"not the default adapter (train with --promote for that); use it with --adapter {out}")


def test_the_committed_kd_adapter_learned_the_experts_moves(pursuit_base):
    """The shipped KD adapter is found for this base (a KD adapter learnt the expert's moves,
    not the manual, so any pursuit base serves it), and its held-out move accuracy and
    legal-answer rate are above the untuned student's."""
    manifest = json.loads((find_adapter("pursuit", pursuit_base, method="kd") / "manifest.json").read_text())
    assert manifest["method"] == "kd" and manifest["task"] == "pursuit" and len(manifest["function_base_hash"]) == 64
    assert manifest["heldout_move_accuracy"] > manifest["heldout_move_accuracy_before"]
    assert manifest["heldout_legal_answer_rate"] > manifest["heldout_legal_answer_rate_before"]


def test_the_kd_agent_answers_one_cell_per_pursuer(registry, pursuit_task, moves):
    """With the committed adapter, on four positions of an expert game: three cells per state,
    each answer counted; most are legal."""
    from ldengine.runner import build_agent
    agent, _ = build_agent(registry, pursuit_task, "kd", {})
    states = [pursuit_task.new_game(seed)[0].state() for seed in (30, 31, 32, 33)]
    actions = agent.act_batch(states)
    assert len(actions) == 4 and all(len(a) == 3 for a in actions)
    stats = agent.stats()
    assert stats["moves_answered"] == 12
    legal = sum(cell in cells for state, action in zip(states, actions)
                for cell, cells in zip(action, legal_cells(state)))
    assert legal >= 6
    assert agent.identity()["adapter_hash"]
    calls = agent.usage()["model_calls"]
    assert agent.act_batch(states[:2]) == actions[:2]       # seen questions: answered from the memo
    assert agent.usage()["model_calls"] == calls and agent.stats()["memo_hits"] == 6
