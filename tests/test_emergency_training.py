"""Teaching the student to write functions: trained on the training kinds only, measured
on the held-out (evaluated) kinds; and Table 2's eval with an emergency in force."""
import json

import pytest

from ldengine.adapters import find_adapter
from ldengine.emergency.rule import kinds_of
from ldengine.emergency.teach import writing_data
from ldengine.errors import LDEngineError
from ldengine.evaluate import EvalConfig, evaluate
from ldengine.finetune import FinetuneConfig, finetune_write


def test_writing_data_holds_out_every_evaluated_kind(registry):
    data = writing_data(registry, "pursuit", [1, 2])
    held = kinds_of(registry, "pursuit", "eval")
    prefix = data[0][0]
    for _, header, body in data:
        assert not any(f"def {k.function_name()}(" in header for k in held)
        assert body.startswith("    out = dict(obs)") and body.rstrip().endswith("return out")
    assert not any(f"def {k.function_name()}(" in prefix for k in held)


@pytest.mark.slow
def test_a_short_writing_fine_tune_records_what_it_held_out(registry, tmp_path):
    """Two LoRA steps, one held-out seed per evaluated kind: the manifest names the training
    and held-out kinds (disjoint) and the measured pass rates."""
    cfg = FinetuneConfig("pursuit", steps=2, batch_size=2, lr=3e-3, top_layers=2, train_seeds=[1],
                         heldout_seeds=[100], out=str(tmp_path / "w"))
    manifest = finetune_write(registry, cfg, attempts=1, progress=False, log=lambda s: None)
    saved = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert saved["method"] == "write" and saved["train_examples"] > 0
    assert set(saved["held_out_kinds"]) == {k.name for k in kinds_of(registry, "pursuit", "eval")}
    assert not set(saved["held_out_kinds"]) & set(saved["train_kinds"])
    assert set(saved["heldout_pass_rates"]) == set(saved["held_out_kinds"])
    assert manifest["losses"][0] > 0


def test_the_committed_writing_adapter_was_trained_on_this_base(registry, pursuit_base):
    manifest = json.loads((find_adapter("pursuit", pursuit_base, method="write") / "manifest.json").read_text())
    assert manifest["method"] == "write" and "restricted-area" in manifest["held_out_kinds"]
    assert manifest["heldout_pass_rates"]["restricted-area"]["pass_rate"] >= 0.9


def test_eval_under_an_emergency_records_it_and_refuses_to_mix_runs(registry, tmp_path):
    """The manifest and table name the emergency and its parameters; resuming with another
    emergency seed is refused."""
    out = tmp_path / "t2"
    cfg = EvalConfig("pursuit", ["expert"], 3, 0, "greedy", str(out), figures=False, progress=False,
                     emergency="restricted-area", emergency_seed=0)
    results = evaluate(registry, cfg, log=lambda s: None)
    assert results["manifest"]["emergency"]["name"] == "restricted-area"
    assert results["manifest"]["config"]["emergency_seed"] == 0
    assert "Emergency restricted-area" in (out / "table.md").read_text()
    again = EvalConfig("pursuit", ["expert"], 3, 0, "greedy", str(out), resume=True, figures=False,
                       progress=False, emergency="restricted-area", emergency_seed=1)
    with pytest.raises(LDEngineError, match="--resume"):
        evaluate(registry, again, log=lambda s: None)


@pytest.mark.slow
def test_a_writing_fine_tune_continues_a_writing_adapter_of_its_form(registry, pursuit_base, tmp_path):
    """--from-adapter with --method write: one more step on the committed condition writer; the
    manifest says what it continued and counts the examples of both runs. An adapter of another
    method or form is refused before any model loads."""
    from pathlib import Path
    start = Path(__file__).resolve().parent.parent / "results" / "writer-cond"
    first = json.loads((start / "manifest.json").read_text())
    cfg = FinetuneConfig("pursuit", steps=1, batch_size=1, lr=1e-4, train_seeds=[1], heldout_seeds=[100],
                         form="condition", start_adapter=str(start), out=str(tmp_path / "w2"))
    finetune_write(registry, cfg, attempts=1, progress=False, log=lambda s: None)
    manifest = json.loads((tmp_path / "w2" / "manifest.json").read_text())
    assert manifest["continuation"]["from"] == "writer-cond"
    assert manifest["continuation"]["adapter_hash"] == first["adapter_hash"]
    assert manifest["examples_seen"] == first["examples_seen"] + 1
    assert manifest["adapter_hash"] != first["adapter_hash"]          # the step changed its weights
    with pytest.raises(LDEngineError, match="writes in the condition form: continue it with --form condition"):
        finetune_write(registry, FinetuneConfig("pursuit", steps=1, train_seeds=[1], heldout_seeds=[100],
                                                start_adapter=str(start), out=str(tmp_path / "w3")),
                       attempts=1, progress=False, log=lambda s: None)
    selection = find_adapter("pursuit", pursuit_base)
    with pytest.raises(LDEngineError, match="is not a writing adapter"):
        finetune_write(registry, FinetuneConfig("pursuit", steps=1, train_seeds=[1], heldout_seeds=[100],
                                                start_adapter=str(selection), out=str(tmp_path / "w4")),
                       attempts=1, progress=False, log=lambda s: None)
    assert not (tmp_path / "w3").exists() and not (tmp_path / "w4").exists()


@pytest.mark.slow
def test_a_new_adapter_adapts_the_projections_and_rank_asked_for(registry, tmp_path):
    """--rank and --lora-modules shape a new adapter (its manifest and peft's config say so);
    an unknown projection is a usage error before anything loads."""
    from click.testing import CliRunner

    from ldengine.cli import cli
    cfg = FinetuneConfig("pursuit", steps=1, batch_size=1, lr=1e-4, rank=4, top_layers=1, train_seeds=[1],
                         heldout_seeds=[100], form="condition", lora_modules=("q_proj", "gate_proj", "down_proj"),
                         out=str(tmp_path / "w"))
    finetune_write(registry, cfg, attempts=1, progress=False, log=lambda s: None)
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["rank"] == 4 and manifest["target_modules"] == ["down_proj", "gate_proj", "q_proj"]
    assert manifest["config"]["lora_modules"] == ["q_proj", "gate_proj", "down_proj"]
    result = CliRunner().invoke(cli, ["finetune", "--method", "write", "--lora-modules", "q_proj,mlp"])
    assert result.exit_code == 2 and "--lora-modules: mlp: choose among q_proj" in result.output
    assert "Traceback" not in result.output
