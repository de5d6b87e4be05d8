"""The dense retriever: real all-MiniLM-L6-v2 encoder, real hnswlib index on disk.

Each test that writes an index gets its own cache folder; the encoder is loaded
once per module (about 1 s).
"""
import json
import logging
from dataclasses import replace

import pytest

from ldengine.errors import LDEngineError
from ldengine.functionbase import FunctionBase
from ldengine.ld import RetrieverProvider, stage_inputs
from ldengine.registry import ModuleSource
from ldengine.retriever import Encoder, Retriever, build_query, rank_of, recall_at_k


@pytest.fixture(scope="module")
def encoder():
    return Encoder()


@pytest.fixture(scope="module")
def retriever(pursuit_base, encoder, tmp_path_factory):
    return Retriever.for_base(pursuit_base, encoder, cache_dir=tmp_path_factory.mktemp("index"))


def test_encodings_are_unit_vectors_and_similar_texts_are_closer(encoder):
    """It embeds texts as unit vectors; a paraphrase is nearer than an unrelated text."""
    v = encoder.encode(["keep the legal cells of each pursuer",
                        "filter the candidate moves to the legal ones",
                        "the weather in Paris is mild"])
    assert v.shape == (3, encoder.dim)
    assert abs(float((v * v).sum(1).max()) - 1) < 1e-4
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])


def test_the_index_is_stored_then_loaded_with_the_same_results(pursuit_base, encoder, tmp_path):
    """It builds and stores the index once; the next retriever loads it and ranks alike."""
    first = Retriever.for_base(pursuit_base, encoder, cache_dir=tmp_path)
    second = Retriever.for_base(pursuit_base, encoder, cache_dir=tmp_path)
    assert not first.loaded and second.loaded and first.path.is_file()
    assert first.index_hash == second.index_hash
    query = "Stage: pursuer.filter: keep only the legal candidate cells"
    assert first.search(query, 5) == second.search(query, 5)


def test_a_damaged_index_file_is_rebuilt_not_trusted(pursuit_base, encoder, tmp_path, caplog):
    """It checks the stored file's checksum and rebuilds when the file was altered, saying so
    in one line (an independent referee found the rebuild silent)."""
    built = Retriever.for_base(pursuit_base, encoder, cache_dir=tmp_path)
    data = bytearray(built.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    built.path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="ldengine.retriever"):
        again = Retriever.for_base(pursuit_base, encoder, cache_dir=tmp_path)
    assert not again.loaded and again.index_hash == built.index_hash
    assert [r.getMessage() for r in caplog.records] == [
        f"retriever index {built.path.name} discarded (its bytes do not match its signed checksum); building it again"]


def test_a_changed_function_base_gets_its_own_index(pursuit_base, registry, encoder, tmp_path):
    """It names the index by the base's hash, so a new function makes a new index that finds it."""
    extra = ModuleSource("pursuit", '''"""Extra."""
VERSION = "0.1.0"


def stay_put(state):
    """Keep every pursuer on its cell: the do-nothing move.

    Stage: pursuer.wait
    Reads: state["pursuers"].
    Returns: one [x, y] per pursuer, its current cell.
    Rules: never moves.
    Example:
        >>> stay_put({"pursuers": [[1, 1]]})
        [[1, 1]]
    """
    return [list(p) for p in state["pursuers"]]
''', "pursuit/extra.py", "test")
    grown = FunctionBase.build("pursuit", [*registry.modules_for("pursuit"), extra])
    old = Retriever.for_base(pursuit_base, encoder, cache_dir=tmp_path)
    new = Retriever.for_base(grown, encoder, cache_dir=tmp_path)
    assert new.path != old.path and len(new) == len(old) + 1
    assert new.search("Stage: pursuer.wait: keep every pursuer where it is", 1)[0][0] == "stay_put"


def test_each_stage_query_ranks_its_function_first_on_expert_games(retriever, pursuit_base, pursuit_task,
                                                                   registry):
    """It finds the right function of every stage met in two expert games in its top-5, and first at
    every stage with one function; at pursuer.decide its first hit is one of the stage's alternatives
    (which one the state decides, and the student chooses)."""
    pairs = stage_inputs(pursuit_task, pursuit_base, registry.get("evaders", "greedy").obj, [3, 4])
    provider = RetrieverProvider(pursuit_task, pursuit_base, retriever, k=5)
    examples = [(provider.query(stage, state), pursuit_base.oracle(stage, state).name) for stage, state in pairs]
    assert {stage for stage, _ in pairs} == set(pursuit_task.pipeline)
    assert recall_at_k(retriever, examples, ks=(5,)) == {5: 1.0}
    single = [(q, name) for (q, name), (stage, _) in zip(examples, pairs) if stage != "pursuer.decide"]
    assert recall_at_k(retriever, single, ks=(1,)) == {1: 1.0}
    candidates = provider.candidates("pursuer.decide", pairs[3][1])
    alternatives = {e.name for e in pursuit_base.for_stage("pursuer.decide")}
    assert len(alternatives) == 4 and len(candidates) == 5 and candidates[0].name in alternatives


def test_k_is_clamped_to_the_base_and_scores_are_sorted(retriever, pursuit_base):
    """It returns every entry at most once, best first, whatever k is asked for."""
    hits = retriever.search("cells", 100)
    assert sorted(n for n, _ in hits) == sorted(pursuit_base.entries)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert retriever.search("cells", 0) == []
    assert rank_of("nope", hits) is None


def test_pure_dense_mode_scores_are_cosines(pursuit_base, encoder, tmp_path):
    """It gives plain cosine similarities (at most 1) when the lexical term is off."""
    dense = Retriever.for_base(pursuit_base, encoder, cache_dir=tmp_path, lexical_weight=0.0)
    assert all(-1.0 <= s <= 1.0001 for _, s in dense.search("legal cells of each pursuer", 5))


def test_the_query_puts_stage_state_then_task():
    """It builds one line from the stage, the state summary and the task text, skipping blanks."""
    q = build_query("a chase game.", "pursuer.filter: keep legal cells", "")
    assert q == "Stage: pursuer.filter: keep legal cells. Task: a chase game."


def test_an_empty_base_is_a_clear_error(pursuit_base, encoder, tmp_path):
    """It refuses to index a base without functions."""
    with pytest.raises(LDEngineError, match="empty"):
        Retriever.for_base(replace(pursuit_base, entries={}), encoder, cache_dir=tmp_path)


def test_the_stored_metadata_names_the_entries_in_index_order(retriever):
    """It writes a JSON file beside the index naming the entries and the index checksum."""
    meta = json.loads(retriever.path.with_suffix(".json").read_text())
    assert meta["names"] == [f"pursuit:{n}" for n in retriever.names]
    assert meta["index_sha256"] == retriever.index_hash


def test_one_index_holds_every_tasks_functions_and_each_task_finds_its_own(registry, encoder, tmp_path):
    """It indexes pursuit and twentyone together in one file; on expert games of each task
    every stage's function is among the offered top 5 and the first hit is always the task's own;
    another task's hits are named task:name and resolve to that task's manual entry. (The raw top 5
    misses pin_against_edge when the decide query says "border" and its When: says "edge": the
    provider offers every function of the stage, RetrieverProvider._offered.)"""
    found = {}
    for name, seeds in (("pursuit", [3]), ("twentyone", list(range(6)))):
        task = registry.get("tasks", name).obj
        base = FunctionBase.build(name, registry.modules_for(name))
        retriever = Retriever.for_library(base, registry, encoder, cache_dir=tmp_path)
        provider = RetrieverProvider(task, base, retriever, k=5)
        pairs = stage_inputs(task, base, registry.get("evaders", "greedy").obj, seeds)
        examples = [(provider.query(stage, state), base.oracle(stage, state).name) for stage, state in pairs]
        assert {stage for stage, _ in pairs} == set(task.pipeline)
        assert recall_at_k(retriever, examples, ks=(5,))[5] >= (0.75 if name == "pursuit" else 1.0)
        assert all(base.oracle(stage, state) in provider.candidates(stage, state) for stage, state in pairs)
        assert all(":" not in hits[0][0] for hits in retriever.search_batch([q for q, _ in examples], 1))
        found[name] = retriever
    assert found["pursuit"].path == found["twentyone"].path and found["twentyone"].loaded
    assert len(found["pursuit"]) == len(found["twentyone"]) > 20
    foreign = [n for n, _ in found["pursuit"].search("Stage: player.decide: hit or stand", 3) if ":" in n]
    assert foreign and foreign[0].startswith("twentyone:")
    assert found["pursuit"].entry(foreign[0]).task == "twentyone"


def test_another_tasks_function_picked_by_mistake_fails_the_stage_without_running(registry, encoder,
                                                                                  pursuit_base, pursuit_task,
                                                                                  tmp_path):
    """It never runs a twentyone function on a pursuit state: the stage fails as a wrong pick."""
    from ldengine.loop import decide

    class PickForeign:
        def select(self, stage, state, candidates):
            return next(i for i, c in enumerate(candidates) if c.task != "pursuit")

    retriever = Retriever.for_library(pursuit_base, registry, encoder, cache_dir=tmp_path)
    provider = RetrieverProvider(pursuit_task, pursuit_base, retriever, k=len(retriever))
    state = pursuit_task.new_game(0)[0].state()
    decision = decide(state, pursuit_task.pipeline, pursuit_base, provider, PickForeign())
    stage = decision.stages[0]
    assert decision.action is None and len(decision.stages) == 1
    assert stage.chosen.startswith("twentyone:") and stage.cause == "wrong_pick"
    assert stage.result.error_type == "ForeignFunction" and "twentyone" in stage.result.error


def test_an_index_not_signed_here_never_reaches_hnswlibs_loader(pursuit_base, encoder, tmp_path, caplog):
    """Issue 34's attack: the index file replaced by a crafted one and its recorded sha256
    recomputed (hnswlib's loader crashed the process on such a header). The metadata is not
    signed with this machine's key, so the index is built again, and the queries are answered."""
    from ldengine.cache import sha256_file
    from ldengine.signing import signed
    built = Retriever.for_base(pursuit_base, encoder, cache_dir=tmp_path)
    meta_path = built.path.with_suffix(".json")
    assert signed(json.loads(meta_path.read_text()))
    built.path.write_bytes(b"\xff" * 64 + built.path.read_bytes()[64:])
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "index_sha256": sha256_file(built.path)}))
    with caplog.at_level(logging.WARNING, logger="ldengine.retriever"):
        again = Retriever.for_base(pursuit_base, encoder, cache_dir=tmp_path)
    assert len(caplog.records) == 1 and "not signed with this machine's key" in caplog.records[0].getMessage()
    assert again.index_hash == built.index_hash and signed(json.loads(meta_path.read_text()))
    assert again.search("keep the legal cells", k=3)
