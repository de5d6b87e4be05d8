"""Meta-tests: every hook has a test and a line in the docs (as datasette does)."""
from pathlib import Path

from ldengine import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = [name for name in dir(hookspecs) if name.startswith("ldengine_")]


def test_every_hook_is_documented_in_the_docs():
    """It names each hook of hookspecs.py in the plugins page (docs/plugins.md)."""
    readme = (ROOT / "docs" / "plugins.md").read_text()
    assert HOOKS and [h for h in HOOKS if f"`{h}(" not in readme] == []


def test_every_hook_is_exercised_by_a_test():
    """It implements each hook in at least one test plugin."""
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_meta.py")
    assert [h for h in HOOKS if f"def {h}(" not in tests] == []
