"""Tests of the network and training set-up helpers (sklearn_tmnre._build)."""

import numpy as np
import pytest

from sklearn_tmnre._build import _global_mean_std


@pytest.mark.parametrize("chunk_numbers", [1, 7, 50, 10**6])
def test_global_mean_std_by_chunks_is_numpys(chunk_numbers):
    """Chunks of one row, of a few rows (the last one shorter) or of all rows agree with
    numpy's float64 statistics of the whole array."""
    x = np.random.default_rng(0).standard_normal((23, 3, 5), dtype=np.float32) * 4 + 2
    mean, std = _global_mean_std(x, chunk_numbers=chunk_numbers)
    assert mean == pytest.approx(x.mean(dtype=np.float64), rel=1e-12)
    assert std == pytest.approx(x.std(dtype=np.float64), rel=1e-12)


def test_global_mean_std_does_not_overflow_for_large_float32_values():
    x = np.full((4, 8), 3e19, dtype=np.float32)
    x[0, 0] = 1e19
    mean, std = _global_mean_std(x, chunk_numbers=8)
    assert np.isfinite(std) and std == pytest.approx(x.std(dtype=np.float64), rel=1e-9)
