"""Output paths checked before any work: a run that ends in an unwritable file loses
every game it played, so the command line checks each path it will write first.

A check tries what the write will do (it creates the missing folders and a
temporary file in the folder, then removes the file): permission bits say
nothing useful to root, and ``/proc`` or a read-only mount refuse only when
written to.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ldengine.errors import LDEngineError


class OutputError(LDEngineError):
    """An output path that cannot be written; the message names the option and the path."""


def check_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` as a file this process can write (its missing folders created)."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise OutputError(f"{option} {path}: is a folder, give a file name")
    _writable_folder(target.parent, option, path)
    if target.exists():
        try:
            open(target, "ab").close()      # appending nothing leaves the file as it is
        except OSError as exc:
            raise OutputError(f"{option} {path}: cannot write it ({_reason(exc)})") from None
    return target


def check_folder(path: str | os.PathLike, option: str) -> Path:
    """``path`` as a folder this process can write files in (created if missing)."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise OutputError(f"{option} {path}: is a file, give a folder")
    _writable_folder(target, option, path)
    return target


def check_plot(path: str | os.PathLike, option: str = "--plot") -> Path:
    """A file whose suffix names a format matplotlib writes (.png, .svg, .pdf, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase
    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        others = ", ".join(f".{f}" for f in sorted(formats) if f != "png")
        raise OutputError(f"{option} {path}: give a file ending in .png (or {others})")
    return check_file(path, option)


def _writable_folder(folder: Path, option: str, shown: str | os.PathLike) -> None:
    existing = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    if existing.exists() and not existing.is_dir():
        raise OutputError(f"{option} {shown}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".ldengine-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{option} {shown}: cannot write in {folder} ({_reason(exc)})") from None


def _reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else type(exc).__name__
