"""A log of the runs, as ``llm logs`` keeps one: every ``run`` and ``eval`` appends one line to
``<data_root>/logs.jsonl`` (when, the command with every effective option, the engine's version,
and the run's key figures), and ``ldengine logs`` lists them, newest last.

A line is written in one ``write`` to a file opened for appending, so two runs at once never
interleave their lines; a damaged line is skipped when listed, never fatal.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Mapping

from ldengine.userdata import data_root
from ldengine.version import __version__

LOG_FILE = "logs.jsonl"
FIGURES = ("games", "success", "failure_with_violation", "avg_steps_success", "violations", "selection_accuracy",
           "wall_s", "student", "adapter", "emergency")


def log_path() -> Path:
    return data_root() / LOG_FILE


def append(kind: str, command: str, figures: Mapping[str, object], **extra: object) -> None:
    """One line for a finished (or interrupted) run: ``kind`` (run, eval), its command, the
    figures of ``FIGURES`` it has, and ``extra`` (e.g. the eval's output folder). A log that
    cannot be written costs the run nothing."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "kind": kind, "version": __version__,
              "command": command, **{k: figures[k] for k in FIGURES if figures.get(k) is not None}, **extra}
    line = (json.dumps(record, ensure_ascii=True, default=str) + "\n").encode()
    try:
        log_path().parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:
        return          # a log that cannot be written costs the run nothing


def records(last: int | None = None) -> list[dict]:
    """The logged runs, oldest first (the ``last`` of them)."""
    try:
        lines = log_path().read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out[-last:] if last else out


def line(record: dict) -> str:
    """One logged run as a line: when, what, the key figures."""
    figures = [f"{k} {record[k]:.3f}" if isinstance(record.get(k), float) else f"{k} {record[k]}"
               for k in ("games", "success", "violations", "selection_accuracy") if k in record]
    where = f"  -> {record['out']}" if record.get("out") else ""
    return f"{record.get('time', '?')}  {record.get('command', '?')}\n    {', '.join(figures)}{where}"
