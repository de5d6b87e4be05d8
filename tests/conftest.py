import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Timing belongs in benchmarks/, not in tests: no deadlines, no speed health checks
# (CI machines are small and shared).
settings.register_profile("ldengine", deadline=None, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ldengine")

# Functions the student writes in tests go to a throwaway store, not function_base/.
os.environ["LDENGINE_EMERGENCY_DIR"] = tempfile.mkdtemp(prefix="ldengine-emergencies-")
# ... and distilled function-base versions too.
os.environ["LDENGINE_FUNCTION_BASE_DIR"] = tempfile.mkdtemp(prefix="ldengine-versions-")
# ... and the user's data (adapters trained in tests, the signing key): never the tester's own.
os.environ["LDENGINE_DATA"] = tempfile.mkdtemp(prefix="ldengine-data-")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def registry():
    from ldengine.registry import Registry
    return Registry.load()


@pytest.fixture(scope="session")
def pursuit_base(registry):
    from ldengine.functionbase import FunctionBase
    return FunctionBase.build("pursuit", registry.modules_for("pursuit"))


@pytest.fixture(scope="session")
def pursuit_task(registry):
    return registry.get("tasks", "pursuit").obj
