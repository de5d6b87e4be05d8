"""What every benchmark shares: the machine line and appending to RESULTS.md."""
from __future__ import annotations

import os
import platform
import shlex
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_model() -> str:
    """The CPU's model name and the cores this process may use."""
    cores = len(os.sched_getaffinity(0))
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({cores} cores)"
    except OSError:
        pass
    return f"{platform.machine()} ({cores} cores)"


def machine_line(script: str, argv: list[str]) -> str:
    """Machine, Python, load average and the command that reproduces the figures."""
    return (f"Machine: {cpu_model()}, Python {platform.python_version()}, load average "
            f"{os.getloadavg()[0]:.2f}. Command: `.venv/bin/python benchmarks/{script} {shlex.join(argv)}`".rstrip())


def publish(text: str, write: bool) -> None:
    """Print the figures; with ``write``, append them to benchmarks/RESULTS.md."""
    print(text)
    if write:
        with open(RESULTS, "a", encoding="utf-8") as fh:
            fh.write("\n" + text)


def median_s(fn, repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn``, after one warm-up call (which,
    for a student with its prefix cache on, also runs the one prefix pass)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
