"""Smoke and unit tests of the benchmark harness (``benchmarks/run.py``).

The tiny setting runs our two methods end to end on two moons (300
simulations, 2 epochs), so the harness cannot rot; sbi's methods are tested
only where sbi is installed.
"""

import importlib.util
import mmap
import pathlib
import sys

import numpy as np
import pandas as pd
import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


run = _load("run")
methods = sys.modules["_methods"]  # the module run.py imported


def test_tiny_run_writes_resumable_results_and_report(tmp_path):
    argv = ["--quick", "--tiny", "--methods", "tmnre_amortized", "tmnre_truncated",
            "--threads", "1", "--out", str(tmp_path)]
    assert run.main(argv) == 0
    table = pd.read_csv(tmp_path / "accuracy.csv")
    assert list(table.columns) == run.COLUMNS
    assert sorted(table["method"]) == ["tmnre_amortized", "tmnre_truncated"]
    assert (table["setting"] == "tiny").all() and (table["n_sims"] == 300).all()
    # C2ST is an accuracy of a balanced two-class problem: chance 0.5 up to 1.
    assert table["c2st_1d"].between(0.4, 1.0).all()
    assert table["c2st_2d"].between(0.4, 1.0).all()
    amortized = table.set_index("method").loc["tmnre_amortized"]
    assert amortized["n_sims_used"] == 300 and amortized["n_coverage"] == 200
    assert 0 <= amortized["coverage_mae"] <= 1
    truncated = table.set_index("method").loc["tmnre_truncated"]
    # Rounds stop early when the box stops shrinking; a last round spends the rest.
    assert truncated["n_sims_used"] == 300 and truncated["rounds"] >= 2
    report = (tmp_path / "benchmarks.md").read_text()
    assert "| 300 | tmnre_amortized |" in report and "swyft TMNRE (published)" not in report
    assert (tmp_path / "_static" / "benchmarks_c2st.png").stat().st_size > 1000

    # A rerun finds every cell done and appends nothing.
    assert run.main(argv) == 0
    assert len(pd.read_csv(tmp_path / "accuracy.csv")) == 2


def test_tiny_defaults_never_touch_committed_results(monkeypatch, tmp_path):
    monkeypatch.setattr(run.tempfile, "mkdtemp", lambda prefix: str(tmp_path / "tmp"))
    settings, grid, out, docs, figure = run.configure(run.parse_args(["--quick", "--tiny"]))
    assert out == tmp_path / "tmp" and docs == out / "benchmarks.md"
    assert settings.name == "tiny" and settings.max_epochs == 2 and settings.n_c2st == 500
    assert grid["budgets"] == [300] and grid["tasks"] == ["two_moons"]
    settings, grid, out, docs, _ = run.configure(run.parse_args(["--quick"]))
    assert out == run.RESULTS and docs == run.DOCS / "benchmarks.md"


def test_peak_memory_sees_an_allocation():
    size = 64 * 2**20
    with methods.PeakMemory() as mem:
        # Fresh anonymous pages, written: malloc could hand back resident memory instead.
        block = mmap.mmap(-1, size)
        np.frombuffer(block, dtype=np.uint8)[:] = 1
    assert len(block) == size and mem.peak_mb >= 0.9 * size / 2**20


def test_appended_rows_are_found_as_done(tmp_path):
    path = tmp_path / "accuracy.csv"
    settings = methods.Settings(name="tiny", max_epochs=1, sbi_max_epochs=1, n_c2st=10,
                                n_coverage=0, truncated_rounds=1)
    key = run._key(settings, "two_moons", 1, 300, "tmnre_amortized", 0)
    run.append_row(path, dict(zip(run.KEY, key)))
    assert run.load_done(path) == {key}
    run.append_row(path, dict(zip(run.KEY, run._key(settings, "slcp", 2, 300, "sbi_bnre", 1))))
    assert len(run.load_done(path)) == 2


def test_results_written_before_a_new_column_are_migrated(tmp_path):
    path = tmp_path / "accuracy.csv"
    settings = methods.Settings(name="tiny", max_epochs=1, sbi_max_epochs=1, n_c2st=10,
                                n_coverage=0, truncated_rounds=1)
    old_key = run._key(settings, "two_moons", 1, 300, "tmnre_amortized", 0)
    old = pd.DataFrame([{**dict(zip(run.KEY, old_key)), "c2st_1d": 0.61, "c2st_2d": 0.7}])
    old.to_csv(path, index=False)  # an older file: no n_2d and fewer columns
    new_key = run._key(settings, "slcp", 2, 300, "sbi_bnre", 1)
    run.append_row(path, {**dict(zip(run.KEY, new_key)), "c2st_1d": 0.8, "n_2d": 10})
    table = pd.read_csv(path)
    assert list(table.columns) == run.COLUMNS
    assert table["c2st_1d"].tolist() == [0.61, 0.8]
    assert table["c2st_2d"].iloc[0] == 0.7 and np.isnan(table["n_2d"].iloc[0])
    assert run.load_done(path) == {old_key, new_key}


def test_scored_pairs_are_a_fixed_subset_for_large_tasks():
    small = [f"t{i}" for i in range(5)]
    assert methods.grid_marginals(small, max_2d=10) == methods.grid_marginals(small)
    assert len(methods.grid_marginals(small)) == 5 + 10
    large = [f"theta_{i}" for i in range(10)]
    chosen = methods.grid_marginals(large, max_2d=10)
    assert chosen[:10] == [(n,) for n in large]
    pairs = chosen[10:]
    assert len(pairs) == len(set(pairs)) == 10
    assert all(a in large and b in large and large.index(a) < large.index(b) for a, b in pairs)
    # The same pairs on every call, so every method of a task is scored alike.
    assert methods.grid_marginals(list(large), max_2d=10) == chosen
    assert len(methods.grid_marginals(large)) == 10 + 45


def test_torch_prior_matches_the_prior():
    pytest.importorskip("sbi")
    torch = pytest.importorskip("torch")
    from sklearn_tmnre import tasks

    for name in ("two_moons", "gaussian_linear"):
        prior = tasks.get_task(name).prior
        theta = prior.sample(50, random_state=0)
        ours = prior.log_prob(theta)
        theirs = methods.torch_prior(prior).log_prob(
            torch.as_tensor(theta.to_numpy(dtype=np.float32, copy=True))).numpy()
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-4)


def test_ratio_on_grid_recovers_a_known_posterior():
    torch = pytest.importorskip("torch")
    from scipy import stats

    from sklearn_tmnre import Prior

    sigma = 0.1

    def gaussian_log_ratio(theta, x):
        # theta (P, n, 2), x (P, n, 2) -> (P, n): the exact log likelihood up to a constant
        return -0.5 * (((theta - x) / sigma) ** 2).sum(-1)

    prior = Prior({"a": stats.uniform(-1, 2), "b": stats.uniform(-1, 2)})
    grid = methods.RatioOnGrid(gaussian_log_ratio, prior, n_grid=100)
    X = np.array([[0.0, 0.3], [-0.5, 0.1]], dtype=np.float32)
    axes, masses = grid._grid_masses(X)
    for j, name in enumerate("ab"):
        centres = axes[(name,)][0][0]
        m = masses[(name,)]
        np.testing.assert_allclose(m.sum(axis=1), 1.0)
        mean = m @ centres
        sd = np.sqrt(m @ centres**2 - mean**2)
        np.testing.assert_allclose(mean, X[:, j], atol=2e-3)
        np.testing.assert_allclose(sd, sigma, rtol=0.02)
    assert torch.is_grad_enabled()  # the no_grad context did not leak


def test_grid_floor_snaps_draws_into_their_own_cell():
    floor = _load("bench_grid_floor")
    from scipy import stats

    from sklearn_tmnre import Prior

    prior = Prior({"a": stats.uniform(0, 10)})
    draws = pd.DataFrame({"a": np.random.default_rng(0).uniform(0, 10, 1000)})
    rng = np.random.default_rng(1)
    out = floor.snapped(draws, ("a",), prior, 10, rng)
    np.testing.assert_array_equal(np.floor(out["a"]), np.floor(draws["a"]))  # same unit cell
    assert not np.allclose(out["a"], draws["a"])  # but a new point inside it
    # Zoomed to draws within [4, 6): cells shrink from 1 to (6 + 2 - (4 - 2)) / 10 = 0.6.
    near = pd.DataFrame({"a": np.random.default_rng(2).uniform(4, 6, 1000)})
    out = floor.snapped(near, ("a",), prior, 10, rng, zoom_to=near, tail=0.0)
    cells = np.floor((near["a"] - 2.0) / 0.6)
    np.testing.assert_array_equal(np.floor((out["a"] - 2.0) / 0.6), cells)


def test_grid_floor_table_averages_observations():
    report = sys.modules["_report"]
    floor = pd.DataFrame({"task": ["gm"] * 4, "observation": [1, 2, 1, 2],
                          "grid": ["prior range", "prior range", "zoomed", "zoomed"],
                          "n": 5000, "c2st_1d": [0.50, 0.52, 0.49, 0.51],
                          "c2st_2d": [0.55, 0.53, 0.50, 0.50]})
    lines = report._grid_floor_section(floor)
    assert lines[0] == "## Grid floor"
    assert "| gm | prior range | 0.510 | 0.540 | 2 | 5,000 |" in lines
    assert "| gm | zoomed | 0.500 | 0.500 | 2 | 5,000 |" in lines


@pytest.mark.parametrize("method", ["tmnre_deepset", "tmnre_truncated_deepset"])
def test_deepset_methods_run_only_on_tasks_made_of_draws(method):
    from sklearn_tmnre import tasks

    slcp, moons = tasks.slcp(), tasks.two_moons()
    assert methods.applies(method, slcp)
    assert not methods.applies(method, moons)
    assert all(methods.applies(m, moons) for m in methods.METHODS if "deepset" not in m)
    assert methods.method_params(method, slcp) == {
        "embedding": "deepset", "embedding__set_size": 4}
    assert methods.method_params("tmnre_amortized", slcp) == {}
    assert methods.method_params("tmnre_truncated", slcp) == {}
    with pytest.raises(ValueError, match="exchangeable draws"):
        methods.method_params(method, moons)


def test_truncated_deepset_rounds_use_the_deepset_embedding(monkeypatch):
    from sklearn_tmnre import TMNREEstimator, tasks

    fitted = []
    fit = TMNREEstimator.fit

    def recording_fit(self, X, theta, **kwargs):
        fitted.append(self.get_params()["embedding"])
        return fit(self, X, theta, **kwargs)

    monkeypatch.setattr(TMNREEstimator, "fit", recording_fit)
    settings = methods.Settings(name="tiny", max_epochs=1, sbi_max_epochs=1, n_c2st=200,
                                n_coverage=0, truncated_rounds=2, c2st_max_iter=50)
    task = tasks.slcp()
    reference = task.reference_samples(1, 200, random_state=0)
    result = methods.truncated_result(task, 1, 400, reference, 0, settings,
                                      "tmnre_truncated_deepset")
    assert fitted and set(fitted) == {"deepset"}
    assert result["n_sims_used"] == 400


def test_tiny_run_skips_a_method_that_does_not_apply(tmp_path):
    argv = ["--tiny", "--tasks", "two_moons", "--methods", "tmnre_deepset", "--threads", "1",
            "--out", str(tmp_path), "--no-render"]
    assert run.main(argv) == 0
    assert not (tmp_path / "accuracy.csv").exists()


def test_sbi_network_grid_draws_recover_a_known_posterior():
    pytest.importorskip("torch")
    from scipy import stats

    from sklearn_tmnre import Prior

    sampler = _load("bench_sbi_sampler")
    sigma = 0.01  # narrower than the coarse grid resolves (cells of 0.016): needs the zoom

    def gaussian_log_ratio(theta, x):
        return -0.5 * (((theta - x) / sigma) ** 2).sum(-1)

    prior = Prior({"a": stats.uniform(-1, 2), "b": stats.uniform(-1, 2)})
    x_o = np.array([0.3, -0.55])
    draws = sampler.grid_draws(gaussian_log_ratio, prior, x_o, 20_000, seed=0)
    assert list(draws.columns) == ["a", "b"]
    np.testing.assert_allclose(draws.mean(), x_o, atol=1e-3)
    np.testing.assert_allclose(draws.std(), sigma, rtol=0.03)
    again = sampler.grid_draws(gaussian_log_ratio, prior, x_o, 20_000, seed=0)
    pd.testing.assert_frame_equal(draws, again)


def test_sampler_table_sets_mcmc_beside_grid():
    report = sys.modules["_report"]
    rows = pd.DataFrame({
        "task": ["tm"] * 4, "n_sims": [100] * 4, "method": ["sbi_nre_c"] * 4,
        "observation": [1, 1, 2, 2], "sampler": ["mcmc", "grid", "mcmc", "grid"],
        "c2st_1d": [0.7, 0.6, 0.5, 0.5], "c2st_2d": [0.8, 0.6, 0.6, 0.6],
        "sample_seconds": [10.0, 0.1, 12.0, 0.1]})
    lines = report._sampler_section(rows)
    assert lines[0] == "## sbi: network or sampler?"
    assert "| tm | 100 | sbi_nre_c | 0.600 / 0.700 | 0.550 / 0.600 | 11.0 / 0.10 | 2 |" in lines


def test_headline_picks_our_best_default_method_and_judges_it_against_the_target():
    report = sys.modules["_report"]
    rows = [("{}", "tmnre_amortized", 0.52, 0.61), ("{}", "tmnre_truncated", 0.525, 0.59),
            ("{}", "tmnre_balanced", 0.50, 0.50), ('{"lr": 1}', "tmnre_deepset", 0.5, 0.5),
            ("{}", "sbi_nre_c", 0.60, 0.70), ("{}", "sbi_nre_a", 0.65, 0.75)]
    summary = pd.DataFrame([{"setting": "full", "n_c2st": 10_000, "params": p,
                             "task": "two_moons", "n_sims": 10_000, "method": m,
                             "c2st_1d": a, "c2st_2d": b, "cells": 3} for p, m, a, b in rows])
    lines = report._headline(summary)
    assert lines[2] == ("| two_moons | 10,000 | 0.530 / 0.600 (target) | 0.525 / 0.590 "
                        "(tmnre_truncated, 3 cells) | 0.600 / 0.700 (sbi_nre_c, 3 cells) "
                        "| **meets** |")
    summary.loc[summary["method"] == "tmnre_truncated", "c2st_2d"] = 0.64
    assert report._headline(summary)[2].endswith("| 2-d short by 0.010 |")


def test_time_to_accuracy_table_takes_cost_ratios_over_common_seeds(tmp_path):
    report = sys.modules["_report"]
    base = {"setting": "tta", "task": "two_moons", "n_sims": 10_000, "threads": 1,
            "n_c2st": 10_000, "params": "{}", "c2st_1d": 0.52, "c2st_2d": 0.56,
            "peak_mb": 100.0, "coverage_n_below": 1.0, "coverage_max_shortfall": 0.02}
    # (method, seed, CPU seconds, code commit of the run)
    fits = [("tmnre_amortized", 0, 40.0, "a"), ("tmnre_amortized", 1, 60.0, "b"),
            ("sbi_nre_c", 0, 80.0, "a"), ("sbi_nre_c", 1, 10.0, "z"),
            ("sbi_nre_a", 0, 20.0, "c"), ("sbi_nre_a", 1, 40.0, "c")]
    rows = [{**base, "method": m, "seed": seed, "observation": obs, "train_cpu_seconds": cpu,
             "train_seconds": cpu + 1, "epochs": 50, "commit": commit}
            for m, seed, cpu, commit in fits for obs in (1, 2, 3)]
    lines = report._time_to_accuracy(pd.DataFrame(rows), tmp_path / "tta.png")
    ratio = next(line for line in lines if "| *ours / sbi" in line)
    # Seed 0 of NRE_C ran with ours in one run: only that pair counts (seed 1 would
    # give (40 + 60) / (80 + 10) = 1.11x).
    assert "0.50× sbi_nre_c (1 seed(s), same run)" in ratio
    # No NRE_A seed ran with ours: the seeds both trained on, marked as such.
    assert "1.67× sbi_nre_a (2 seed(s), across runs)" in ratio
    # Rows without a commit column pair across runs only.
    lines = report._time_to_accuracy(pd.DataFrame(rows).drop(columns="commit"),
                                     tmp_path / "tta2.png")
    ratio = next(line for line in lines if "| *ours / sbi" in line)
    assert "1.11× sbi_nre_c (2 seed(s), across runs)" in ratio
    ours = next(line for line in lines if "| tmnre_amortized |" in line)
    assert "| 50.0 | 51.0 | 50 |" in ours  # mean CPU and wall seconds over seeds
    assert (tmp_path / "tta.png").exists()


def test_simulations_saved_interpolates_in_log_budget():
    savings = _load("bench_truncation").savings
    rows = [("wide", s, "truncated", 1000, a) for s, a in ((0, 0.56), (1, 0.54))]
    rows += [("wide", s, "one_round", n, a) for s in (0, 1)
             for n, a in ((1000, 0.70), (2000, 0.60), (4000, 0.50), (8000, 0.50))]
    df = pd.DataFrame(rows, columns=["problem", "seed", "method", "n_sims", "accuracy"])
    table = savings(df)
    assert table.loc[0, "truncated"] == pytest.approx(0.55)
    # 0.55 lies halfway (in accuracy) between 2,000 (0.60) and 4,000 (0.50): 2^1.5 x 1,000.
    assert table.loc[0, "simulations_saved"] == pytest.approx(2 ** 1.5, rel=1e-9)
    worse = df.assign(accuracy=np.where(df["method"] == "truncated", 0.40, df["accuracy"]))
    assert savings(worse).loc[0, "simulations_saved"] == "> 8"
    better = df.assign(accuracy=np.where(df["method"] == "truncated", 0.90, df["accuracy"]))
    assert savings(better).loc[0, "simulations_saved"] == "≤ 1"


def test_coverage_cost_counts_levels_at_or_below_each_nominal_level():
    cost = _load("bench_coverage_cost")
    levels = np.array([0.1, 0.5, 0.6, 0.9, 0.99])
    np.testing.assert_allclose(cost.coverage(levels), [0.4, 0.6, 0.8])


def test_objects_scale_shared_head_weights_do_not_grow_with_the_objects():
    scale = _load("bench_objects_scale")
    # Beyond 48 marginals hidden_features="auto" is at its floor (16) whatever N.
    rows = [scale.run_one(n, mode, 32) for n in (60, 120) for mode in ("shared", "dense")]
    shared = [r for r in rows if r["mode"] == "shared"]
    dense = [r for r in rows if r["mode"] == "dense"]
    assert shared[0]["head_weights"] == shared[1]["head_weights"]
    assert dense[1]["head_weights"] > dense[0]["head_weights"] > shared[0]["head_weights"]
    lines = scale.section(pd.DataFrame(rows))
    assert sum(line.startswith("| 120 | ") for line in lines) == 2


def test_field_loss_benchmark_scores_both_losses_and_resumes(tmp_path):
    field_loss = _load("bench_field_loss")
    argv = ["--n-sims", "200", "--epochs", "1", "--n-test", "20", "--out", str(tmp_path)]
    field_loss.main(argv)
    table = pd.read_csv(tmp_path / "field_loss.csv")
    assert sorted(table["field_loss"]) == ["posterior", "ratio"]
    assert (table["grid"] == "small").all() and (table["n_sims"] == 200).all()
    assert table["brier_skill"].between(-1, 1).all()
    assert table["average_precision"].between(0, 1).all()
    field_loss.main(argv)  # every row done: nothing appended
    assert len(pd.read_csv(tmp_path / "field_loss.csv")) == 2
