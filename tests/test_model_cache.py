"""The cache: a damaged converted student is found and converted again with one line, and
``ldengine cache info`` / ``cache clean`` show and empty it (always in a temporary cache here)."""
import json
import logging
import os

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file

from ldengine.cli import cli
from ldengine.models import loading
from ldengine.models.loading import MARKER, converted_gguf, damage
from ldengine.signing import sign


def write_converted(folder, record=True):
    """A converted-model folder as the conversion leaves it: real safetensors weights, a
    config, and the marker (recording each file's size and sha256, or, as before that
    record existed, only the source)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.arange(4096, dtype=np.float32).reshape(64, 64)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"model_type": "llama"}')
    marker = {"source": "model.gguf", "sha256": "0" * 64}
    if record:
        marker = sign({**marker, "files": loading._file_record(folder, loading.sha256_file)})
    (folder / MARKER).write_text(json.dumps(marker))
    return folder


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LDENGINE_CACHE", str(tmp_path / "cache"))


def test_a_whole_conversion_passes_its_check(tmp_path):
    """It finds nothing wrong with a folder whose files have their recorded size and sha256."""
    assert damage(write_converted(tmp_path / "m")) is None


def test_it_finds_truncated_weights(tmp_path):
    """It names the file cut short and the size written (a full disk, a killed copy)."""
    folder = write_converted(tmp_path / "m")
    weights = folder / "model.safetensors"
    written = weights.stat().st_size
    os.truncate(weights, 1000)
    assert damage(folder) == f"model.safetensors has 1000 bytes, {written} were written"


def test_it_finds_weights_changed_in_place(tmp_path):
    """It notices bytes changed at the same size (the sha256, remembered by size and mtime)."""
    folder = write_converted(tmp_path / "m")
    weights = folder / "model.safetensors"
    assert damage(folder) is None                       # remembers the hash
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(1, 1))
    assert damage(folder) == "model.safetensors changed after it was written (sha256)"


def test_an_older_conversion_is_converted_again_saying_why(tmp_path):
    """A folder converted before the record existed is converted again (its weights could be
    anyone's); truncated ones are named from the safetensors header."""
    whole = write_converted(tmp_path / "whole", record=False)
    assert damage(whole) == "it was converted before its files' sizes and hashes were recorded"
    cut = write_converted(tmp_path / "cut", record=False)
    os.truncate(cut / "model.safetensors", 5000)
    assert damage(cut).startswith("model.safetensors has 5000 bytes, its header needs")


def test_weights_rewritten_with_their_record_but_no_signature_are_converted_again(tmp_path):
    """Someone who changes the weights and writes their new sizes and hashes into the marker
    cannot sign it: the folder is not used."""
    folder = write_converted(tmp_path / "m")
    save_file({"w": np.ones((64, 64), dtype=np.float32)}, str(folder / "model.safetensors"))
    marker = json.loads((folder / MARKER).read_text())
    marker["files"] = loading._file_record(folder, loading.sha256_file)
    (folder / MARKER).write_text(json.dumps(marker))
    assert damage(folder).startswith("its marker is not signed with this machine's key")
    (folder / MARKER).write_text(json.dumps(sign(marker)))
    assert damage(folder) is None


def test_a_damaged_conversion_is_converted_again_with_one_line(tmp_path, monkeypatch, caplog):
    """It says in one line what is wrong and converts again; the new copy passes its check.
    (The conversion itself is stood in for: the real one takes 40 s and more.)"""
    target = write_converted(tmp_path / "students" / "abc")
    os.truncate(target / "model.safetensors", 100)
    monkeypatch.setattr(loading, "_convert", lambda gguf, out: write_converted(out, record=False))
    with caplog.at_level(logging.WARNING, logger=loading.__name__):
        assert converted_gguf(tmp_path / "m.gguf", "0" * 64, target) == target
    [line] = [r.getMessage() for r in caplog.records]
    assert "is damaged (model.safetensors has 100 bytes" in line and "converting m.gguf again" in line
    assert damage(target) is None and "files" in json.loads((target / MARKER).read_text())


def test_cache_info_shows_each_part_and_clean_removes_what_the_engine_rebuilds(tmp_path):
    """It lists where the cache is and each part's size; clean asks first (no: nothing goes),
    then removes students, indexes and hashes, and keeps the quick adapters."""
    root = tmp_path / "cache"
    write_converted(root / "students" / "abc")
    (root / "indexes").mkdir()
    (root / "indexes" / "library-1.bin").write_bytes(b"\0" * 2_000_000)
    (root / "adapters" / "quick-1").mkdir(parents=True)
    info = CliRunner().invoke(cli, ["cache", "info"], catch_exceptions=False)
    assert info.exit_code == 0 and f"cache: {root}" in info.output
    assert any(line.split()[:2] == ["indexes", "2.0"] for line in info.output.splitlines())
    parts = json.loads(CliRunner().invoke(cli, ["cache", "info", "--json"]).output)["parts"]
    assert {p["name"]: p["removed_by_clean"] for p in parts}["adapters"] is False
    refused = CliRunner().invoke(cli, ["cache", "clean"], input="n\n")
    assert refused.exit_code == 1 and (root / "students").is_dir()
    cleaned = CliRunner().invoke(cli, ["cache", "clean", "--yes"], catch_exceptions=False)
    assert cleaned.exit_code == 0 and "removed" in cleaned.output
    assert not (root / "students").exists() and not (root / "indexes").exists()
    assert (root / "adapters" / "quick-1").is_dir()
    again = CliRunner().invoke(cli, ["cache", "clean"], catch_exceptions=False)
    assert again.output.startswith("nothing to remove")


def test_the_disk_store_of_keys_and_values_keeps_its_most_recently_used_files(tmp_path):
    """Past its size limit the store removes the files used longest ago; past ``KEEP`` weight
    folders, the folder used longest ago."""
    import os

    from ldengine.models import kvdisk
    folder = tmp_path / "kv" / "w0"
    folder.mkdir(parents=True)
    for i in range(5):
        f = folder / f"{i}.safetensors"
        f.write_bytes(b"x" * 1000)
        os.utime(f, (1000 + i, 1000 + i))
    kvdisk._trim(folder, 2500)
    assert sorted(f.name for f in folder.iterdir()) == ["3.safetensors", "4.safetensors"]
    os.utime(folder, (1000, 1000))
    for i in range(1, kvdisk.KEEP + 2):
        (tmp_path / "kv" / f"w{i}").mkdir()
        os.utime(tmp_path / "kv" / f"w{i}", (2000 + i, 2000 + i))
    kvdisk._prune(tmp_path / "kv", kvdisk.KEEP)
    assert sorted(p.name for p in (tmp_path / "kv").iterdir()) == [f"w{i}" for i in range(2, kvdisk.KEEP + 2)]
