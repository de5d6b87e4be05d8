"""The Python API (``from ldengine import ...``; its README example runs in test_readme.py):
imported on first use, so ``import ldengine`` stays light; ``run_function`` returns what
went wrong rather than raising; the functions agree with the command line."""
import subprocess
import sys
from pathlib import Path

import pytest

import ldengine
from ldengine import decide, first_state, make_agent, play, run_function, select_function, stage_input
from ldengine.errors import LDEngineError

ROOT = Path(__file__).resolve().parent.parent


def test_importing_ldengine_and_reaching_the_api_imports_no_heavy_library():
    code = ("import sys, ldengine; ldengine.play; ldengine.run_function\n"
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'hnswlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_it_exports_the_documented_names_and_no_others():
    assert set(ldengine.__all__) == {"__version__", "load_registry", "play", "make_agent", "first_state", "decide",
                                     "stage_input", "select_function", "run_function"}
    with pytest.raises(ImportError):
        from ldengine import no_such_name  # noqa: F401


def test_play_plays_what_ldengine_run_plays(registry):
    """Seeds 3-5 with the expert: the same outcomes as game by game through the task."""
    outcome = play("pursuit", agent="expert", games=3, seed=3, registry=registry)
    assert outcome.summary["games"] == 3 and [r.seed for r in outcome.results] == [3, 4, 5]
    assert outcome.summary["success"] == 1.0 and outcome.summary["selection_accuracy"] == 1.0


def test_decide_and_select_function_agree_with_the_oracle(registry):
    agent = make_agent("pursuit", "expert", registry=registry)
    state = first_state("pursuit", seed=2, registry=registry)
    step = decide(agent, state)
    assert [s.stage for s in step.stages] == agent.pipeline and all(s.correct for s in step.stages)
    decide_input = step.stages[-1].state
    chosen = select_function(agent, "pursuer.decide", decide_input)
    assert chosen.chosen == step.functions[-1] and chosen.result.value == step.action
    assert stage_input(agent, "pursuer.decide", state) == decide_input and "candidates" in decide_input
    assert stage_input(agent, agent.pipeline[0], state) is state
    with pytest.raises(LDEngineError, match="no stage 'pursuer.dance' in the agent's pipeline"):
        stage_input(agent, "pursuer.dance", state)
    with pytest.raises(LDEngineError, match="no stage 'pursuer.dance'"):
        select_function(agent, "pursuer.dance", state)


def test_run_function_returns_a_refused_construct_and_a_hang_as_results():
    refused = run_function("def f(x):\n    return open('/etc/passwd').read()\n", "f", 1)
    assert not refused.ok and refused.error_type == "CompileError" and "open" in refused.error
    hang = run_function("def f(x):\n    while True:\n        x += 1\n", "f", 1, timeout=0.5)
    assert not hang.ok and hang.error_type in ("Timeout", "CPULimit")
