r"""Gaussian mixture (sbibm's ``gaussian_mixture``): a narrow peak on a broad base.

Prior :math:`\theta \sim \mathcal U(-10, 10)^2`; one draw of

.. math:: x \mid \theta \sim \tfrac12\,\mathcal N(\theta, I) + \tfrac12\,\mathcal N(\theta, 0.01\,I)

(the component is chosen once for both coordinates). The likelihood is that mixture
density. Because it depends on :math:`x - \theta` only and the prior is flat, the
posterior is the same mixture centred on the observation, restricted to the box,

.. math:: p(\theta \mid x_o) \propto \bigl[\tfrac12\,\mathcal N(\theta; x_o, I)
          + \tfrac12\,\mathcal N(\theta; x_o, 0.01\,I)\bigr]\,
          \mathbb 1[\theta \in [-10, 10]^2],

sampled exactly by drawing from the mixture and rejecting draws outside the box
(as in sbibm); near a wall this also reweights the two components correctly.

Observations 1-10 and their true parameters are sbibm's published ones
(``sbibm/tasks/gaussian_mixture/files/num_observation_<i>/``).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import logsumexp

from ..prior import Prior
from .base import Task, rejection_sample

__all__ = ["GaussianMixture"]

_BOUND = 10.0
_SCALES = np.array([1.0, 0.1])
_LOG_WEIGHTS = np.log([0.5, 0.5])

_TRUE_PARAMETERS = np.array([
    [-9.527071, -1.4817104],
    [-2.8899693, -8.7594595],
    [7.3016033, -3.2178392],
    [-8.0234165, 0.11640644],
    [8.947857, 7.178486],
    [-6.377127, 0.018654823],
    [-6.1911654, 8.295019],
    [-7.995198, 4.967514],
    [6.775234, 0.1315422],
    [7.265232, -9.9468975],
])
_OBSERVATIONS = np.array([
    [-9.472713, -1.4950509],
    [-2.940192, -8.682056],
    [7.1683364, -3.0470583],
    [-8.047317, -0.021793246],
    [8.879822, 8.088118],
    [-4.697014, -0.3752453],
    [-6.806304, 7.828203],
    [-8.022675, 5.017334],
    [6.521385, 0.2811075],
    [8.4677, -9.219099],
])


class GaussianMixture(Task):
    """2-d mean of a two-component Gaussian mixture under a ``U(-10, 10)^2`` prior.

    Examples
    --------
    >>> from sklearn_tmnre import tasks
    >>> task = tasks.gaussian_mixture()
    >>> task.simulator([0.0, 0.0], rng=0).shape
    (2,)
    """

    def __init__(self):
        prior = Prior([stats.uniform(-_BOUND, 2 * _BOUND)] * 2)
        super().__init__("gaussian_mixture", prior, (2,), _TRUE_PARAMETERS, _OBSERVATIONS)

    def _simulate_one(self, theta, rng):
        scale = _SCALES[0] if rng.random() < 0.5 else _SCALES[1]
        return rng.normal(theta, scale)

    def _simulate_batch(self, theta, rng):
        scale = _SCALES[rng.integers(0, 2, size=len(theta))]
        return theta + scale[:, None] * rng.standard_normal(theta.shape)

    def _log_likelihood(self, theta, x):
        per_component = [stats.norm.logpdf(x, theta, s).sum(axis=1) for s in _SCALES]
        return logsumexp(np.column_stack(per_component) + _LOG_WEIGHTS, axis=1)

    def _reference(self, i, n, rng):
        x = self.observation(i)

        def propose(m, rng):
            return self._simulate_batch(np.broadcast_to(x, (m, 2)), rng)

        def inside(theta):
            return np.all(np.abs(theta) <= _BOUND, axis=1)

        return rejection_sample(propose, inside, n, rng)
