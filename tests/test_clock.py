"""The wall clock that games are charged by: time spent suspended is not counted."""
import os
import signal
import subprocess
import sys
import time

import pytest

from ldengine import clock

PROGRAM = """
import sys, time
from ldengine import clock
a = clock.now(); t = time.perf_counter()
print("ready", flush=True)
sys.stdin.readline()
print(round(clock.now() - a, 2), round(time.perf_counter() - t, 2), flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX job control")
def test_it_does_not_count_time_spent_stopped():
    """A process stopped for 3 s (kill -STOP, then -CONT) reads about 3 s less on this
    clock than on the plain monotonic one."""
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(3)
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.5)
        proc.stdin.write("\n")
        proc.stdin.flush()
        charged, elapsed = map(float, proc.stdout.readline().split())
    finally:
        proc.kill()
        proc.wait()
    assert elapsed >= 3.4
    assert charged < elapsed - 2.5


def test_it_runs_like_a_monotonic_clock_when_nothing_stops():
    a, t = clock.now(), time.perf_counter()
    time.sleep(0.3)
    assert abs((clock.now() - a) - (time.perf_counter() - t)) < 0.05
    assert clock.paused() >= 0
