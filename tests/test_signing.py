"""Signed provenance (issue 34): records signed with this machine's key, a key only its owner
reads; a record changed after it was signed, or written without the key, is not signed."""
import os
import stat

import pytest

from ldengine import signing
from ldengine.signing import SigningKeyError, sign, signed


@pytest.fixture(autouse=True)
def own_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LDENGINE_DATA", str(tmp_path / "data"))


def test_the_key_is_made_once_readable_by_its_owner_only():
    record = sign({"module_sha256": "ab" * 32, "n": 3})
    path = signing.key_path()
    assert path.is_file() and len(path.read_bytes()) == 32
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signed(record) and sign(record) == record        # the same key again, not a new one


def test_a_changed_record_or_a_recomputed_hash_is_not_signed():
    record = sign({"module_sha256": "ab" * 32, "params": {"x0": 5}})
    assert not signed({**record, "module_sha256": "cd" * 32})
    assert not signed({**record, "params": {"x0": 6}})
    assert not signed({k: v for k, v in record.items() if k != "signature"})
    assert not signed({**record, "signature": 5}) and not signed(["not", "a", "record"])


def test_a_key_others_can_read_or_a_damaged_key_is_refused_in_one_line():
    sign({"a": 1})
    path = signing.key_path()
    if os.name == "posix":
        path.chmod(0o644)
        with pytest.raises(SigningKeyError, match="chmod 600"):
            sign({"a": 1})
        path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(SigningKeyError, match="damaged"):
        signed({"a": 1, "signature": "00"})


def test_without_a_key_nothing_is_signed_and_no_key_is_made():
    assert not signed({"a": 1, "signature": "00" * 32})
    assert not signing.key_path().exists()


def test_the_key_id_names_the_key_and_differs_between_data_folders(tmp_path, monkeypatch):
    """Caches signed with a key live in folders named by its id: two data folders sharing one
    cache keep separate copies instead of rebuilding each other's."""
    first = signing.key_id()
    assert len(first) == 8 and signing.key_id() == first
    monkeypatch.setenv("LDENGINE_DATA", str(tmp_path / "other"))
    assert signing.key_id() != first
