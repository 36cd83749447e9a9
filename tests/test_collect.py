"""Every test the project has is collectable in one pytest run (test module basenames must be
unique across tests/ and benchmarks/: pytest imports them as top-level modules)."""
import os
import subprocess
import sys
from pathlib import Path

import lenet_fast

ROOT = Path(__file__).resolve().parents[1]


def test_tests_and_benchmarks_collect_together():
    # -P and PYTHONPATH: the child imports the same lenet_fast as this process, whichever that is.
    env = dict(os.environ, PYTHONPATH=str(Path(lenet_fast.__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-P", "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                        "tests", "benchmarks"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "benchmarks/test_benchmarks.py::" in r.stdout and "tests/test_ops.py::" in r.stdout
