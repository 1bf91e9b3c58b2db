"""Every example in ``examples/`` runs to the end at its tiny setting and saves its figures.

Each script runs in a subprocess with ``SKLEARN_TMNRE_QUICK=1``, as CI's
``.ci/run`` runs it, from a copy in a temporary directory so that its
``output/`` folder (figures, stores) is written there and not into the
working tree.

The tiny setting must stay tiny: an example may use at most ``QUICK_BUDGET_S``
seconds of CPU time (user + system, the script and every process it started).
CPU time is what the setting controls; wall time on a shared machine also
measures the neighbours' load (on an idle machine the two are close). A
wall-clock timeout catches hangs.

The whole file takes a few minutes (interpreter start-up and imports alone
cost several seconds per script), so it is marked ``slow``; run it with
``pytest -m slow tests/test_examples.py``.
"""

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))
QUICK_BUDGET_S = 60.0
WALL_TIMEOUT_S = 600


def _children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_examples_are_found():
    names = {p.name for p in EXAMPLES}
    expected = {"plot_cmb_forecast.py", "plot_supernova_cosmology.py", "plot_strong_lensing.py",
                "plot_trust_and_tuning.py", "plot_scaling_out.py", "plot_model_comparison.py",
                "plot_population_from_images.py", "plot_object_by_object.py",
                "plot_subhalo_segmentation.py"}
    assert expected <= names, f"missing examples: {sorted(expected - names)}"


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_at_tiny_setting(script, tmp_path):
    copy = tmp_path / script.name
    shutil.copy(script, copy)
    env = {**os.environ, "SKLEARN_TMNRE_QUICK": "1", "MPLBACKEND": "Agg"}
    cpu_before = _children_cpu_seconds()
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(copy)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=WALL_TIMEOUT_S)
    wall = time.perf_counter() - start
    cpu = _children_cpu_seconds() - cpu_before
    assert result.returncode == 0, (
        f"{script.name} failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n"
        f"{result.stderr[-5000:]}")
    figures = sorted(p.name for p in (tmp_path / "output").glob("*.png"))
    assert figures, f"{script.name} saved no figure under output/"
    assert cpu < QUICK_BUDGET_S, (
        f"{script.name} used {cpu:.0f} s of CPU ({wall:.0f} s wall) at its tiny setting; "
        f"the budget is {QUICK_BUDGET_S:.0f} s.")
