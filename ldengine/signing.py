"""Provenance that a rewritten hash cannot fake: records signed with this machine's key.

A stored function's provenance, a trained adapter's manifest and the metadata of the caches
record sha256 digests of their files; anyone who can change a file can recompute its digest.
Each such record is therefore also signed: an HMAC-SHA256 over its canonical JSON (every
field but ``signature``) with a key of 32 random bytes made on first use at
``<data_root>/signing.key``, readable by its owner only. A record someone else wrote, or
rewrote, carries no valid signature, and the engine refuses it (stored code, adapters) or
builds it again (caches). What ships in the package is vouched for by the package, not by a
key: those files are checked against their recorded digests only.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path

from ldengine.errors import LDEngineError
from ldengine.userdata import data_root

KEY_FILE = "signing.key"
KEY_BYTES = 32
FIELD = "signature"


_READ: list = [None, b""]       # (path, mtime, size, inode) of the key last read, and its bytes


class SigningKeyError(LDEngineError):
    """The signing key cannot be made, read, or trusted (others can read it)."""


def key_path() -> Path:
    return data_root() / KEY_FILE


def _key(create: bool) -> bytes | None:
    """The key's bytes; made (owner-only) when missing and ``create``, else None when missing."""
    path = key_path()
    if not path.exists():
        if not create:
            return None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:         # another process made it first: use theirs
            return _key(create=False)
        except OSError as exc:
            raise SigningKeyError(f"cannot make the signing key {path}: {exc.strerror or exc}") from None
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(KEY_BYTES))
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            raise SigningKeyError(f"the signing key {path} is not a regular file; remove it (a new key is made, "
                                  "and what the old one signed must be stored again)")
        if os.name == "posix" and info.st_mode & 0o077:
            raise SigningKeyError(f"the signing key {path} can be read or changed by other users "
                                  f"(mode {stat.S_IMODE(info.st_mode):o}); run: chmod 600 {path}")
        stamp = (str(path), info.st_mtime_ns, info.st_size, info.st_ino)
        key = _READ[1] if _READ[0] == stamp else path.read_bytes()     # checked on every kv cache read
        _READ[:] = [stamp, key]
    except OSError as exc:
        raise SigningKeyError(f"cannot read the signing key {path}: {exc.strerror or exc}") from None
    if len(key) != KEY_BYTES:
        raise SigningKeyError(f"the signing key {path} is damaged ({len(key)} bytes, not {KEY_BYTES}); remove it "
                              "(a new key is made, and what the old one signed must be stored again)")
    return key


def key_id() -> str:
    """A short name of this machine's key (the key is made if there is none yet): caches signed
    with it live in folders named by it, so that two data folders sharing one cache (a test run
    beside the user's own) never rebuild each other's."""
    key = _key(create=True)
    assert key is not None
    return hashlib.sha256(b"ldengine key id:" + key).hexdigest()[:8]


def _payload(record: dict) -> bytes:
    body = {k: v for k, v in record.items() if k != FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signature(record: dict) -> str:
    """The record's signature (the key is made if there is none yet)."""
    key = _key(create=True)
    assert key is not None
    return hmac.new(key, _payload(record), hashlib.sha256).hexdigest()


def sign(record: dict) -> dict:
    """The record with its ``signature`` field (any earlier one replaced)."""
    return {**{k: v for k, v in record.items() if k != FIELD}, FIELD: signature(record)}


def signed(record: object) -> bool:
    """Was the record signed, as it is now, with this machine's key? (False without a key.)"""
    if not isinstance(record, dict) or not isinstance(record.get(FIELD), str):
        return False
    key = _key(create=False)
    if key is None:
        return False
    try:
        payload = _payload(record)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(hmac.new(key, payload, hashlib.sha256).hexdigest(), record[FIELD])


def unsigned_reason(what: str) -> str:
    """The sentence for a record that is not signed with this machine's key."""
    return (f"{what} is not signed with this machine's key ({key_path()}): it was not stored by ldengine "
            "here, or it was changed (its recorded hash with it) after it was stored")
