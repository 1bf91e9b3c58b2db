"""Accuracy and calibration per simulation budget, side by side with the peers.

For every task, budget and seed, the training pairs are simulated once and
every amortized method (``tmnre_amortized``, ``tmnre_balanced``, sbi's
``NRE_A``, ``NRE_C``, ``BNRE``) trains on those same pairs; ``tmnre_truncated``
spends the same budget per observation in truncation rounds. Each cell (task x
observation x budget x method x seed) records the mean marginal C2ST of the 1-d
and 2-d marginals against the reference posterior, the expected-coverage error
of the 1-d marginals, the simulations used, wall seconds and peak memory (see
``benchmarks/_methods.py``). Finished cells are appended to
``<out>/accuracy.csv`` at once and skipped when the run is repeated, so a
stopped run resumes where it stopped. The report ``docs/benchmarks.md`` and the
figure ``docs/_static/benchmarks_c2st.png`` are rendered at the end.

    python benchmarks/run.py --quick            # a few minutes on 2 cores
    python benchmarks/run.py                    # the full run (hours; resumable)
    python benchmarks/run.py --tasks two_moons slcp --budgets 1000 10000 \\
        --observations 1 2 3 --seeds 0 --methods tmnre_amortized tmnre_truncated
    python benchmarks/run.py --quick --tiny     # CI: < 2 minutes, writes to a temp dir

sbi's methods need ``pip install sbi`` (the ``bench`` extra); without it they
are skipped with a message.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _methods import (  # noqa: E402
    AMORTIZED,
    METHODS,
    OUR_METHOD_PARAMS,
    SBI_METHODS,
    Settings,
    applies,
    fit_amortized,
    observation_result,
    sbi_available,
    truncated_result,
)
from _report import render  # noqa: E402

from sklearn_tmnre import tasks  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
KEY = ["setting", "task", "observation", "n_sims", "method", "seed", "n_c2st", "params",
       "threads"]
COLUMNS = KEY + [
    "c2st_1d", "c2st_2d", "n_2d", "coverage_mae", "coverage_max_shortfall",
    "coverage_n_below", "n_coverage", "n_sims_used", "epochs", "rounds", "train_seconds",
    "train_cpu_seconds", "posterior_seconds", "seconds", "peak_mb", "version", "commit",
    "load", "timestamp",
]

PRESETS = {
    "full": dict(tasks=["two_moons", "slcp", "gaussian_mixture", "gaussian_linear_uniform",
                        "gaussian_linear"],
                 budgets=[1_000, 10_000, 100_000], observations=[1, 2, 3], seeds=[0, 1, 2],
                 settings=dict(max_epochs=200, sbi_max_epochs=None, n_c2st=10_000,
                               n_coverage=1_000, truncated_rounds=4)),
    "quick": dict(tasks=["two_moons"], budgets=[1_000], observations=[1], seeds=[0],
                  settings=dict(max_epochs=100, sbi_max_epochs=100, n_c2st=2_000,
                                n_coverage=1_000, truncated_rounds=3)),
    # Time to accuracy: each method with its own defaults (no epoch cap), ours against
    # sbi's on the same simulations, one thread per process (``--threads 2`` for the other).
    "tta": dict(tasks=["two_moons", "slcp", "gaussian_mixture", "gaussian_linear_uniform",
                       "gaussian_linear"],
                budgets=[10_000, 1_000], observations=[1, 2, 3], seeds=[0, 1, 2],
                methods=["tmnre_amortized", "sbi_nre_a", "sbi_nre_c"],
                # tmnre_truncated (on request) runs TMNRE's defaults: at most 5 rounds.
                settings=dict(max_epochs=None, sbi_max_epochs=None, n_c2st=10_000,
                              n_coverage=1_000, truncated_rounds=5)),
    "tiny": dict(tasks=["two_moons"], budgets=[300], observations=[1], seeds=[0],
                 settings=dict(max_epochs=2, sbi_max_epochs=2, n_c2st=500, n_coverage=200,
                               truncated_rounds=2, c2st_max_iter=100)),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few minutes: one task, 10^3 sims")
    p.add_argument("--tta", action="store_true",
                   help="time to accuracy: our defaults against sbi's NRE_A and NRE_C")
    p.add_argument("--tiny", action="store_true",
                   help="CI setting (< 2 min): 300 sims, 2 epochs; writes to a temp dir")
    p.add_argument("--tasks", nargs="+", choices=tasks.TASKS)
    p.add_argument("--budgets", nargs="+", type=int)
    p.add_argument("--observations", nargs="+", type=int)
    p.add_argument("--seeds", nargs="+", type=int)
    p.add_argument("--methods", nargs="+", choices=METHODS)
    p.add_argument("--n-c2st", type=int, help="draws per C2ST (full: 10000)")
    p.add_argument("--n-coverage", type=int, help="test pairs for coverage (0 skips)")
    p.add_argument("--params", default="{}",
                   help="JSON of TMNREEstimator hyperparameters of our methods, e.g. "
                        "'{\"max_epochs\": 50, \"balance\": 10}'; part of each cell's key")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and BLAS threads per process (part of each cell's key)")
    p.add_argument("--out", type=pathlib.Path,
                   help="results directory (default benchmarks/results; --tiny: a temp dir)")
    p.add_argument("--docs", type=pathlib.Path,
                   help="report path (default docs/benchmarks.md; --tiny: <out>/benchmarks.md)")
    p.add_argument("--no-render", action="store_true", help="skip the report")
    return p.parse_args(argv)


def configure(args):
    """Resolve the preset and overrides into (settings, grid, out, docs, figure)."""
    name = "tiny" if args.tiny else "quick" if args.quick else "tta" if args.tta else "full"
    preset = PRESETS[name]
    params = json.loads(args.params)
    if not isinstance(params, dict):
        raise SystemExit(f"--params must be a JSON object of hyperparameters; got {args.params!r}")
    overrides = {"n_c2st": args.n_c2st, "n_coverage": args.n_coverage}
    values = {**preset["settings"], **{k: v for k, v in overrides.items() if v is not None}}
    settings = Settings(name=name, params=tuple(sorted(params.items())), **values)
    # Our variants (balanced, ensemble, deepset: methods with hyperparameters of their own)
    # cost more and answer the full run's questions; the shorter settings run the baselines.
    default_methods = [m for m in METHODS
                       if name == "full" or not OUR_METHOD_PARAMS.get(m)]
    grid = {
        "tasks": args.tasks or preset["tasks"],
        "budgets": args.budgets or preset["budgets"],
        "observations": args.observations or preset["observations"],
        "seeds": args.seeds if args.seeds is not None else preset["seeds"],
        "methods": args.methods or preset.get("methods") or default_methods,
    }
    if args.out is not None:
        out = args.out
    elif args.tiny:
        out = pathlib.Path(tempfile.mkdtemp(prefix="sklearn_tmnre-bench-"))
    else:
        out = RESULTS
    if args.docs is not None:
        docs = args.docs
    else:
        docs = out / "benchmarks.md" if args.tiny else DOCS / "benchmarks.md"
    figure = docs.parent / "_static" / "benchmarks_c2st.png"
    return settings, grid, out, docs, figure


def code_commit():
    """The checkout's commit, with ``+dirty`` when ``sklearn_tmnre/`` has local changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sklearn_tmnre"],
                               cwd=ROOT, text=True, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")


def load_done(path):
    """Keys of the finished cells in a results file."""
    if not path.exists():
        return set()
    done = pd.read_csv(path, dtype={"params": str}, keep_default_na=False)
    return {tuple(str(v) for v in row) for row in done[KEY].itertuples(index=False)}


def append_row(path, row):
    """Append one finished cell (the header first when the file is new).

    A results file written before a column was added is rewritten once with the
    current columns (the new ones empty), so old rows keep their meaning.
    """
    if path.exists():
        with open(path) as f:
            header = f.readline().strip().split(",")
        if header != COLUMNS:
            old = pd.read_csv(path, dtype={"params": str}, keep_default_na=False)
            old.reindex(columns=COLUMNS).to_csv(path, index=False)
    frame = pd.DataFrame([row], columns=COLUMNS)
    frame.to_csv(path, mode="a", header=not path.exists(), index=False)


def _key(settings, task, observation, budget, method, seed, threads=1):
    return (settings.name, task, str(observation), str(budget), method, str(seed),
            str(settings.n_c2st), json.dumps(dict(settings.params), sort_keys=True),
            str(threads))


def run_grid(settings, grid, out, threads=1, log=print):
    """Run every missing cell of the grid; return the failures as (cell, message).

    Parameters
    ----------
    settings : Settings
    grid : dict
        ``tasks``, ``budgets``, ``observations``, ``seeds``, ``methods``.
    out : pathlib.Path
        Directory of ``accuracy.csv``.
    threads : int
        torch and BLAS threads.
    log : callable
        Progress messages.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / "accuracy.csv"
    done = load_done(path)
    methods = list(grid["methods"])
    if any(m in SBI_METHODS for m in methods) and not sbi_available():
        skipped = [m for m in methods if m in SBI_METHODS]
        log(f"sbi is not installed (pip install sbi, or the 'bench' extra): skipping {skipped}")
        methods = [m for m in methods if m not in SBI_METHODS]
    failures = []
    commit = code_commit()
    torch.set_num_threads(threads)
    with threadpool_limits(threads):
        for task_name in grid["tasks"]:
            task = tasks.get_task(task_name)
            for budget in grid["budgets"]:
                for seed in grid["seeds"]:
                    failures += _run_block(task, budget, seed, methods, grid["observations"],
                                           settings, path, done, (threads, commit), log)
    return failures


def _row(settings, task, observation, budget, method, seed, result, context, load):
    threads, commit = context
    key = _key(settings, task.name, observation, budget, method, seed, threads)
    return {**dict(zip(KEY, key)), **result, "commit": commit, "load": round(load, 2),
            "timestamp": datetime.datetime.now().isoformat(timespec="seconds")}


def _run_block(task, budget, seed, methods, observations, settings, path, done, context, log):
    """The cells of one task, budget and seed: amortized methods share one simulation set."""
    failures = []
    references = {}

    def reference(obs):
        if obs not in references:
            references[obs] = task.reference_samples(obs, settings.n_c2st,
                                                     random_state=np.random.SeedSequence(
                                                         [seed, obs, 2]))
        return references[obs]

    def missing(method):
        return [o for o in observations
                if _key(settings, task.name, o, budget, method, seed, context[0]) not in done]

    data = None
    for method in methods:
        todo = missing(method)
        if not todo or not applies(method, task):
            continue
        cell = f"{task.name} n_sims={budget} seed={seed} {method}"
        load = os.getloadavg()[0]
        try:
            if method in AMORTIZED:
                if data is None:
                    # The same simulations for every amortized method.
                    data = task.sample(budget, random_state=np.random.SeedSequence([seed, budget]))
                start = time.perf_counter()
                fitted = fit_amortized(method, task, *data, seed, settings)
                log(f"{cell}: trained in {time.perf_counter() - start:.1f} s "
                    f"({fitted.epochs} epochs)")
            for obs in todo:
                if method in AMORTIZED:
                    result = observation_result(fitted, task, obs, reference(obs), seed,
                                                settings)
                else:
                    result = truncated_result(task, obs, budget, reference(obs), seed,
                                              settings, method)
                row = _row(settings, task, obs, budget, method, seed, result, context, load)
                append_row(path, row)
                done.add(tuple(str(row[k]) for k in KEY))
                log(f"{cell} obs={obs}: C2ST 1-d {result['c2st_1d']:.3f}, "
                    f"2-d {result['c2st_2d']:.3f}, coverage error "
                    f"{result['coverage_mae']:.3f}, {result['seconds']:.1f} s")
        except Exception as exc:  # one failing method must not stop the others
            message = f"{type(exc).__name__}: {exc}"
            log(f"{cell}: FAILED {message}")
            log(traceback.format_exc())
            failures.append((cell, message))
    return failures


def main(argv=None):
    args = parse_args(argv)
    settings, grid, out, docs, figure = configure(args)
    print(f"setting {settings.name}: {grid}; results in {out}", flush=True)
    start = time.perf_counter()
    failures = run_grid(settings, grid, out, threads=args.threads,
                        log=lambda msg: print(msg, flush=True))
    print(f"done in {time.perf_counter() - start:.0f} s", flush=True)
    if not args.no_render:
        render(out, docs, figure)
        print(f"report: {docs}; figure: {figure}")
    for cell, message in failures:
        print(f"FAILED {cell}: {message}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
