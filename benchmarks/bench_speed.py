"""Speed and scale of sklearn_tmnre, each ratio measured within one run.

(a) Training throughput (pairs/s) of ``TMNREEstimator.fit`` against a
    hand-written plain-torch loop training the same ``RatioNetwork`` with the
    same loss, batch size, epochs and data (target: ratio >= 0.8).
(b) Training time per epoch against sbi's ``NRE_A`` on the same data, once with
    a network of similar parameter count and once with our defaults.
(c) Posterior evaluation: every 1-d marginal (``_grid_masses(X, dims=(1,))``)
    and every 1-d and 2-d marginal (``posterior(X)``) for 1,000 observations,
    against sbi drawing 10,000 posterior samples for one observation.
(d) ``simulate`` with ``n_jobs=2`` against a serial Python loop, for a
    simulator of about 1 ms per call (sleeping, and CPU-bound), and the
    overhead per call on a trivial simulator (target: speed-up >= 1.7).
(e) Time per epoch and peak memory at 10, 100, 1,000 (10,000 where memory
    allows) 1-d marginals, and at 10^3, 10^4, 10^5 simulations.
(f) Time per epoch with 1 and 2 torch threads (shows the cost of thread
    oversubscription on a shared machine).

Whole-call timings are the best of ``--repeats`` runs and per-epoch figures the
fastest epoch of a fit (both the least disturbed by other jobs; epochs exclude
set-up).
Writes ``benchmarks/results/speed.csv`` and re-renders ``docs/benchmarks.md``
with a Speed section.

    python benchmarks/bench_speed.py --quick     # about ten minutes on 2 idle cores
    python benchmarks/bench_speed.py
"""

from __future__ import annotations

import argparse
import functools
import math
import multiprocessing as mp
import os
import pathlib
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _methods import PeakMemory, sbi_available, torch_prior  # noqa: E402
from _report import render  # noqa: E402

from sklearn_tmnre import Prior, TMNREEstimator, simulate, tasks  # noqa: E402
from sklearn_tmnre.networks import RatioNetwork, make_embedding  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


class Recorder:
    """Collects (section, case, value, unit, note) rows and prints them as they come."""

    def __init__(self):
        self.rows = []

    def __call__(self, section, case, value, unit, note=""):
        self.rows.append({"section": section, "case": case, "value": float(value),
                          "unit": unit, "note": note})
        print(f"[{section}] {case}: {value:.4g} {unit} {note}", flush=True)

    def frame(self):
        return pd.DataFrame(self.rows, columns=["section", "case", "value", "unit", "note"])


def best_time(fn, repeats):
    """Smallest wall time of ``repeats`` calls of ``fn`` and the last return value."""
    best, out = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def n_parameters(module):
    return sum(p.numel() for p in module.parameters())


def epoch_seconds(est):
    """Fastest epoch of a fitted estimator (skorch's ``dur``): no set-up, least disturbed."""
    return float(np.min(est.net_.history[:, "dur"]))


# --------------------------------------------------------------- (a) training
def plain_torch_fit(est_like, X, theta, epochs, batch_size, seed):
    """Train a fresh copy of ``est_like``'s RatioNetwork with a bare torch loop.

    The same architecture, standardization, loss (BCE of each joint pair
    against ``n_negatives`` marginal pairs), AdamW and batch sizes as the
    estimator; marginal pair ``j`` pairs each row with the row ``j`` places on
    in the shuffled batch (a derangement). The network gets ``epoch_seconds``,
    the wall time of each epoch.
    """
    torch.manual_seed(seed)
    x32, t32 = X.astype(np.float32), theta.to_numpy().astype(np.float32)
    embedding, width = make_embedding(est_like.embedding, X.shape[1:], est_like.embedding_dim)
    names = list(theta.columns)
    indices = [tuple(names.index(n) for n in m) for m in est_like.marginals_]
    net = RatioNetwork(embedding, width, indices, x32.mean(0), x32.std(0), t32.mean(0),
                       t32.std(0), hidden_features=est_like.hidden_features,
                       num_blocks=est_like.num_blocks)
    optimizer = torch.optim.AdamW(net.parameters(), lr=est_like.lr,
                                  weight_decay=est_like.weight_decay)
    xs, ts = torch.from_numpy(x32), torch.from_numpy(t32)
    n_batches = max(1, math.ceil(len(xs) / batch_size))
    shifts = range(1, est_like.n_negatives + 1)
    net.epoch_seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for idx in torch.tensor_split(torch.randperm(len(xs)), n_batches):
            s = net.embed(xs[idx])
            th = ts[idx]
            candidates = torch.stack([th, *(th.roll(j, 0) for j in shifts)], dim=1)
            logits = net.logits_from_embedding(s, candidates)
            loss = (F.softplus(-logits[:, 0]).mean(0)
                    + F.softplus(logits[:, 1:]).mean((0, 1))).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.epoch_seconds.append(time.perf_counter() - start)
    return net


def training_throughput(record, task, theta, X, epochs, repeats):
    section = "(a) training throughput: fit vs plain torch"
    kw = dict(prior=task.prior, marginals="1d+2d", max_epochs=epochs, patience=epochs + 1,
              validation_fraction=0.0, batch_size=256, random_state=0)
    # Interleaved, so that both see the same spells of load from other jobs.
    t_ours = t_plain = e_ours = e_plain = math.inf
    for _ in range(repeats):
        seconds, est = best_time(lambda: TMNREEstimator(**kw).fit(X, theta), 1)
        t_ours, e_ours = min(t_ours, seconds), min(e_ours, epoch_seconds(est))
        seconds, net = best_time(lambda est=est: plain_torch_fit(est, X, theta, epochs, 256, 0),
                                 1)
        t_plain, e_plain = min(t_plain, seconds), min(e_plain, min(net.epoch_seconds))
    if n_parameters(net) != n_parameters(est.net_.module_):
        raise RuntimeError("the plain-torch network differs from the estimator's")
    pairs = len(X) * epochs
    note = (f"{len(X)} pairs x {epochs} epochs, batch 256, {est.n_negatives} negatives, "
            f"{n_parameters(net)} parameters")
    record(section, "TMNREEstimator.fit, whole call", pairs / t_ours, "pairs/s", note)
    record(section, "plain torch loop, whole call", pairs / t_plain, "pairs/s", note)
    record(section, "ratio fit / plain, whole call", t_plain / t_ours, "x",
           "target >= 0.8; includes fit's validation and setup")
    record(section, "TMNREEstimator.fit, per epoch", len(X) / e_ours, "pairs/s",
           "fastest epoch (skorch history dur)")
    record(section, "plain torch loop, per epoch", len(X) / e_plain, "pairs/s", "fastest epoch")
    record(section, "ratio fit / plain, per epoch", e_plain / e_ours, "x", "target >= 0.8")
    return est


# ------------------------------------------------------------ (b) vs sbi epoch
def sbi_trainer(task, theta, X, epochs, seed=0):
    from sbi.inference import NRE_A

    torch.manual_seed(seed)
    trainer = NRE_A(prior=torch_prior(task.prior), show_progress_bars=False)
    trainer.append_simulations(torch.as_tensor(theta.to_numpy(dtype=np.float32, copy=True)),
                               torch.as_tensor(X, dtype=torch.float32))
    estimator = trainer.train(max_num_epochs=epochs, stop_after_epochs=epochs + 1,
                              training_batch_size=200)
    return trainer, estimator, float(np.min(trainer._summary["epoch_durations_sec"]))


def per_epoch_vs_sbi(record, task, theta, X, epochs):
    section = "(b) training time per epoch: ours vs sbi NRE_A"
    # sbi's NRE_A contrasts each joint pair with one marginal pair: n_negatives=1 is the
    # same work per pair.
    small = dict(embedding_dim=16, hidden_features=32, num_blocks=1, embedding__hidden=50,
                 n_negatives=1)
    per_epoch = {}
    for label, arch in (("ours, similar size, 1 negative", small), ("ours, defaults", {})):
        kw = dict(prior=task.prior, marginals="1d+2d", max_epochs=epochs, patience=epochs + 1,
                  batch_size=200, random_state=0, **arch)
        _, est = best_time(lambda kw=kw: TMNREEstimator(**kw).fit(X, theta), 1)
        per_epoch[label] = epoch_seconds(est)
        record(section, label, per_epoch[label], "s/epoch",
               f"{n_parameters(est.net_.module_)} parameters; {est.n_negatives} negative(s); "
               "1d+2d marginals; batch 200; 10 % validation; fastest epoch")
    if not sbi_available():
        record(section, "sbi NRE_A", float("nan"), "s/epoch", "sbi not installed")
        return None
    trainer, net, best = sbi_trainer(task, theta, X, epochs)
    record(section, "sbi NRE_A", best, "s/epoch",
           f"{n_parameters(net)} parameters (resnet, 50 hidden); batch 200; 10 % validation; "
           "fastest epoch")
    record(section, "ratio sbi / ours (similar size)",
           best / per_epoch["ours, similar size, 1 negative"], "x", "> 1: ours faster per epoch")
    return trainer


# ------------------------------------------------------------- (c) posterior
def posterior_evaluation(record, task, est, trainer, n_obs, n_samples, repeats):
    section = "(c) posterior evaluation"
    _, X_obs = task.sample(n_obs, random_state=1)
    t1, _ = best_time(lambda: est._grid_masses(X_obs, dims=(1,)), repeats)
    record(section, f"ours: all 1-d marginals, {n_obs} observations", t1, "s",
           f"{est.n_grid_1d}-cell grids")
    t2, _ = best_time(lambda: est.posterior(X_obs), 1)
    record(section, f"ours: all 1-d and 2-d marginals, {n_obs} observations", t2, "s",
           f"{est.n_grid_2d}x{est.n_grid_2d} 2-d grids")
    if trainer is None:
        record(section, f"sbi NRE_A: {n_samples} samples, 1 observation", float("nan"), "s",
               "sbi not installed")
        return
    posterior = trainer.build_posterior()
    x_o = torch.as_tensor(task.observation(1)[None], dtype=torch.float32)
    torch.manual_seed(0)
    ts, _ = best_time(lambda: posterior.sample((n_samples,), x=x_o, show_progress_bars=False), 1)
    record(section, f"sbi NRE_A: {n_samples} samples, 1 observation", ts, "s",
           "default MCMC (slice sampling, 20 chains)")
    record(section, f"ratio sbi (1 obs) / ours 1-d+2-d ({n_obs} obs)", ts / t2, "x", "")


# ------------------------------------------------------------- (d) simulate
def sleeping_simulator(theta, rng):
    """About 10 ms of waiting (an external program, I/O), then a draw."""
    time.sleep(0.01)
    return theta + rng.standard_normal(len(theta))


def cpu_simulator(theta, rng, repeats):
    """``repeats`` small matrix products: CPU-bound work."""
    a = rng.standard_normal((32, 32))
    for _ in range(repeats):
        a = np.tanh(a @ a / 32.0)
    return theta + a[0, : len(theta)]


def trivial_simulator(theta, rng):
    return theta


def serial_loop(simulator, theta, seed=0):
    """The plain Python loop a user would write, with the same per-row seeding."""
    rows = theta.to_numpy()
    return np.stack([simulator(row, np.random.default_rng(np.random.SeedSequence(
        seed, spawn_key=(i,)))) for i, row in enumerate(rows)])


def calibrate_cpu(target_s=1e-3, probe=200):
    """Matrix products per call for ``target_s`` seconds of CPU work, and the time per call.

    Timed with the process's CPU clock (best of several tries), so other jobs
    on the machine do not shorten the calibrated work.
    """
    rng = np.random.default_rng(0)
    theta = np.zeros(2)

    def per_call(repeats):
        best = math.inf
        for _ in range(5):
            start = time.process_time()
            for _ in range(5):
                cpu_simulator(theta, rng, repeats)
            best = min(best, (time.process_time() - start) / 5)
        return best

    repeats = max(1, int(round(probe * target_s / max(per_call(probe), 1e-7))))
    return repeats, per_call(repeats)


def simulation_speed(record, n_calls, repeats):
    section = "(d) simulate: n_jobs=2 vs serial loop"
    prior = Prior({"a": stats.uniform(0, 1), "b": stats.uniform(0, 1)})
    theta = prior.sample(n_calls, random_state=0)
    simulate(trivial_simulator, theta.iloc[:8], n_jobs=2, random_state=0)  # start the pool
    # 10 ms a call: 2,000 calls are 20 s of serial work, more than simulate keeps in the
    # calling process (cheaper jobs are measured by the cold-start case below).
    reps, per_call = calibrate_cpu(target_s=1e-2)
    cpu = functools.partial(cpu_simulator, repeats=reps)
    for label, sim in (("sleeping 10 ms", sleeping_simulator),
                       (f"CPU-bound {per_call * 1e3:.2f} ms", cpu)):
        t_loop, _ = best_time(lambda sim=sim: serial_loop(sim, theta), repeats)
        t_par, _ = best_time(lambda sim=sim: simulate(sim, theta, n_jobs=2, random_state=0),
                             repeats)
        record(section, f"{label}: serial loop", t_loop / n_calls * 1e3, "ms/call")
        record(section, f"{label}: simulate n_jobs=2", t_par / n_calls * 1e3, "ms/call")
        record(section, f"{label}: speed-up", t_loop / t_par, "x",
               f"target >= 1.7; {n_calls} calls")
    # A fresh process, as a user's script meets it: no pool started yet.
    code = ("import time, numpy as np; from sklearn_tmnre import simulate; "
            "theta = np.random.default_rng(0).random((2000, 2)); "
            "f = lambda t, rng: t + rng.standard_normal(2); start = time.perf_counter(); "
            "simulate(f, theta, n_jobs={jobs}, random_state=0); "
            "print(time.perf_counter() - start)")
    cold = {}
    for jobs in (1, -1):
        cold[jobs] = min(float(subprocess.run([sys.executable, "-c", code.format(jobs=jobs)],
                                              capture_output=True, text=True,
                                              check=True).stdout)
                         for _ in range(repeats))
        record(section, f"cold start, 2000 cheap draws: simulate n_jobs={jobs}", cold[jobs], "s",
               "a fresh process; best of repeats")
    record(section, "cold start: n_jobs=-1 / n_jobs=1", cold[-1] / cold[1], "x",
           "target <= 1.1 (cheap simulations stay in the process)")
    t_loop, _ = best_time(lambda: serial_loop(trivial_simulator, theta), repeats)
    for jobs in (1, 2):
        t_sim, _ = best_time(lambda jobs=jobs: simulate(trivial_simulator, theta, n_jobs=jobs,
                                                        random_state=0), repeats)
        record(section, f"trivial simulator: overhead per call, n_jobs={jobs}",
               (t_sim - t_loop) / n_calls * 1e6, "us/call",
               f"simulate minus the serial loop ({t_loop / n_calls * 1e6:.1f} us/call)")


# ------------------------------------------------------------------ (e) scale
def _mem_available_mb():
    try:
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.inf


def _linear_problem(n_params, n, seed=0):
    """``x = W theta + 0.1 noise``, 32 data, ``n_params`` uniform parameters."""
    rng = np.random.default_rng(seed)
    prior = Prior({f"t{i}": stats.uniform(0, 1) for i in range(n_params)})
    theta = prior.sample(n, random_state=rng)
    W = rng.standard_normal((n_params, 32)) / np.sqrt(n_params)
    return prior, theta, theta.to_numpy() @ W + 0.1 * rng.standard_normal((n, 32))


_SCALE_ARCH = dict(hidden_features=32, num_blocks=1, batch_size=256, n_negatives=1,
                   validation_fraction=0.0, random_state=0)
_SCALE_NOTE = "heads of 32 hidden units, 1 block; batch 256, 1 negative; 32 data"


#: The heads and training of version 0.1's defaults, for the per-epoch comparison of (g).
_DEFAULTS_0_1 = dict(hidden_features=128, num_blocks=3, n_negatives=4, batch_size=256)


def _defaults_case(n_params, n, arch, n_threads):
    """Fastest of two epochs of a 1-d-marginal fit with the package defaults (``arch`` None)
    or with ``arch`` (in a fresh process); returns (s/epoch, peak RSS MiB, parameters)."""
    torch.set_num_threads(n_threads)
    prior, theta, X = _linear_problem(n_params, n)
    kwargs = dict(arch or {}, validation_fraction=0.0, n_threads=n_threads, random_state=0)
    TMNREEstimator(prior=prior, max_epochs=1, **kwargs).fit(X[:64], theta.iloc[:64])
    est = TMNREEstimator(prior=prior, max_epochs=2, patience=3, **kwargs).fit(X, theta)
    return epoch_seconds(est), _peak_rss_mb(), n_parameters(est.net_.module_)


def defaults_at_scale(record, marginal_counts, n_train, n_threads):
    """(g): per-epoch cost of many 1-d marginals, today's defaults against 0.1's."""
    section = "(g) scale: default heads, many 1-d marginals"
    for count in marginal_counts:
        new, peak, params = _in_fresh_process(_defaults_case, count, n_train, None, n_threads)
        record(section, f"{count} marginals, defaults", new, "s/epoch",
               f"{n_train} pairs; {params} parameters; peak RSS {peak:.0f} MiB")
        if count <= 1_000:  # 0.1's heads need ~10 GB of weights and optimizer state at 10^4
            old, peak, params = _in_fresh_process(_defaults_case, count, n_train,
                                                  _DEFAULTS_0_1, n_threads)
            record(section, f"{count} marginals, 0.1 defaults", old, "s/epoch",
                   f"{n_train} pairs; {params} parameters; peak RSS {peak:.0f} MiB")
            record(section, f"{count} marginals: 0.1 / today per epoch", old / new, "x",
                   "target >= 5")


def _scale_case(n_params, n, epochs, n_threads):
    """Fit in a fresh process: (fastest epoch in s, RSS growth in MiB, peak RSS, parameters).

    A fresh process makes the peak resident set of the fit measurable: memory
    that an earlier case freed is not there to be reused.
    """
    torch.set_num_threads(n_threads)
    prior, theta, X = _linear_problem(n_params, n)
    # A small warm-up fit first: torch's one-off start-up costs are not per-epoch costs.
    TMNREEstimator(prior=prior, max_epochs=1, **_SCALE_ARCH).fit(X[:64], theta.iloc[:64])
    est = TMNREEstimator(prior=prior, max_epochs=epochs, patience=epochs + 1, **_SCALE_ARCH)
    with PeakMemory() as mem:
        est.fit(X, theta)
    return epoch_seconds(est), mem.peak_mb, _peak_rss_mb(), n_parameters(est.net_.module_)


def _peak_rss_mb():
    """The process's peak resident set (VmHWM; getrusage's maximum survives fork + exec)."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _in_fresh_process(fn, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def scale(record, marginal_counts, sim_counts, n_train, n_threads):
    section_m = "(e) scale: 1-d marginals"
    for count in marginal_counts:
        # Head weights with gradients and AdamW state, and about ten saved activations of
        # (batch, 2 candidates, hidden) per head, 4 bytes each.
        need_mb = 4 * count * (4 * (32 * 32 * 2 + 4 * 32) + 10 * 256 * 2 * 32) / 2**20
        available = _mem_available_mb()
        if need_mb * 3 > available:
            record(section_m, f"{count} marginals", float("nan"), "s/epoch",
                   f"skipped: needs about {need_mb:.0f} MiB, {available:.0f} MiB available")
            continue
        per_epoch, grew, peak, params = _in_fresh_process(_scale_case, count, n_train, 3,
                                                          n_threads)
        record(section_m, f"{count} marginals", per_epoch, "s/epoch",
               f"{n_train} pairs; {_SCALE_NOTE}")
        record(section_m, f"{count} marginals: memory of fit", grew, "MiB",
               f"{params} parameters; process peak RSS {peak:.0f} MiB")
    section_n = "(e) scale: simulations"
    for n in sim_counts:
        epochs = 3 if n <= 10_000 else 2
        per_epoch, grew, peak, _ = _in_fresh_process(_scale_case, 10, n, epochs, n_threads)
        record(section_n, f"{n:,} simulations", per_epoch, "s/epoch",
               f"10 marginals; {_SCALE_NOTE}")
        record(section_n, f"{n:,} simulations: memory of fit", grew, "MiB",
               f"process peak RSS {peak:.0f} MiB")


# ---------------------------------------------------------------- (f) threads
def threads(record, task, theta, X, epochs):
    section = "(f) torch threads"
    for n_threads in (1, 2):
        torch.set_num_threads(n_threads)
        with threadpool_limits(n_threads):
            est = TMNREEstimator(prior=task.prior, marginals="1d+2d", max_epochs=epochs,
                                 patience=epochs + 1, validation_fraction=0.0,
                                 n_threads=n_threads, random_state=0)
            est.fit(X, theta)
            record(section, f"{n_threads} thread(s)", epoch_seconds(est),
                   "s/epoch", f"fastest epoch; 1-minute load average {os.getloadavg()[0]:.1f} on "
                   f"{os.cpu_count()} cores")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    p.add_argument("--threads", type=int, default=2, help="torch and BLAS threads")
    p.add_argument("--repeats", type=int, help="timings per measurement (best kept)")
    p.add_argument("--max-marginals", type=int, default=10_000,
                   help="largest marginal count of the scale test")
    p.add_argument("--sections", nargs="+", default=list("abcdefg"), choices=list("abcdefg"))
    p.add_argument("--out", type=pathlib.Path, default=RESULTS)
    p.add_argument("--docs", type=pathlib.Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--no-render", action="store_true")
    args = p.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 3)
    n = 3_000 if args.quick else 10_000
    epochs = 3 if args.quick else 5
    task = tasks.get_task("two_moons")
    theta, X = task.sample(n, random_state=0)
    record = Recorder()
    est = trainer = None
    if "f" in args.sections:
        threads(record, task, theta.iloc[:2000], X[:2000], 3)
    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        if "a" in args.sections:
            est = training_throughput(record, task, theta, X, epochs, repeats)
        if "b" in args.sections or "c" in args.sections:
            trainer = per_epoch_vs_sbi(record, task, theta, X, epochs)
        if "c" in args.sections:
            if est is None:
                est = TMNREEstimator(prior=task.prior, marginals="1d+2d", max_epochs=epochs,
                                     random_state=0).fit(X, theta)
            posterior_evaluation(record, task, est, trainer, 1_000, 10_000, repeats)
        if "d" in args.sections:
            simulation_speed(record, 500 if args.quick else 2_000, repeats)
        if "e" in args.sections:
            counts = [c for c in (10, 100, 1_000, 10_000) if c <= args.max_marginals]
            sims = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
            scale(record, counts, sims, 1_024 if args.quick else 2_048, args.threads)
        if "g" in args.sections:
            counts = [c for c in (1_000, 10_000) if c <= args.max_marginals]
            defaults_at_scale(record, counts, 1_024 if args.quick else 2_048, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    frame = record.frame()
    frame["threads"] = args.threads
    path = args.out / "speed.csv"
    if path.exists():
        # Keep the rows of the sections not run this time.
        old = pd.read_csv(path)
        rerun = tuple(f"({letter})" for letter in args.sections)
        frame = pd.concat([old[~old["section"].str.startswith(rerun)], frame],
                          ignore_index=True)
    frame.to_csv(path, index=False)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(frame.to_string(index=False))
    if not args.no_render:
        render(args.out, args.docs, args.docs.parent / "_static" / "benchmarks_c2st.png")
        print(f"report: {args.docs}")


if __name__ == "__main__":
    main()
