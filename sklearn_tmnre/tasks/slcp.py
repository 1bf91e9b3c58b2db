r"""SLCP, "simple likelihood, complex posterior" (sbibm's ``slcp``).

Prior :math:`\theta \sim \mathcal U(-3, 3)^5`. The data are four independent draws
of a 2-d Gaussian, flattened to 8 numbers :math:`(x_{1,0}, x_{1,1}, \dots, x_{4,1})`,

.. math:: x_k \sim \mathcal N(m, \Sigma), \quad m = (\theta_0, \theta_1), \quad
          \Sigma = \begin{pmatrix} s_0^2 + \epsilon & \rho s_0 s_1 \\
                                   \rho s_0 s_1 & s_1^2 + \epsilon \end{pmatrix},

with scales :math:`s_0 = \theta_2^2`, :math:`s_1 = \theta_3^2`, correlation
:math:`\rho = \tanh\theta_4` and :math:`\epsilon = 10^{-6}` (sbibm's jitter).
The likelihood is a product of four bivariate normal densities, cheap and exact,
but it depends on :math:`\theta_2, \theta_3` only through their squares, so the
posterior has four exactly symmetric modes (sign flips of :math:`\theta_2`,
:math:`\theta_3`) and curved ridges between them.

**Reference posterior.** There is no closed form; ``benchmarks/make_references.py``
samples the analytic posterior folded onto :math:`\theta_2, \theta_3 \ge 0` by
rejection from a proposal adapted by importance sampling (a Gaussian mixture plus
10 % prior; sbibm uses a flow proposal), gives every sample independent random
signs of :math:`\theta_2, \theta_3`, and ships 10,000 samples per observation as
``data/slcp_reference.npz`` (float32). Ensemble MCMC (emcee) was tried first and
under-covered the funnel-shaped posterior. :meth:`SLCP.reference_samples` draws
without replacement from that file.

Observations 1-10 and their true parameters are sbibm's published ones
(``sbibm/tasks/slcp/files/num_observation_<i>/``).

Reference: Papamakarios, Sterratt & Murray, "Sequential neural likelihood", AISTATS 2019.
"""

from __future__ import annotations

from functools import cached_property
from importlib import resources

import numpy as np
from scipy import stats

from ..prior import Prior
from .base import Task

__all__ = ["SLCP", "REFERENCE_FILE"]

_N_DRAWS = 4
_EPS = 1e-6
#: File name, inside ``sklearn_tmnre/tasks/data``, of the shipped reference samples.
REFERENCE_FILE = "slcp_reference.npz"

_TRUE_PARAMETERS = np.array([
    [-2.8581212, -0.44451332, 2.9473476, 1.2396116, 2.9712725],
    [-0.8669908, -2.6278377, 2.8607178, -1.8587376, -2.7437975],
    [2.1904812, -0.9653516, 2.2308893, -2.95686, 1.7665963],
    [-2.407025, 0.034922123, 1.4813509, 0.36865616, -2.4579406],
    [2.6843572, 2.1535459, -2.8867972, 2.1739058, -2.0535889],
    [-1.9131382, 0.0055966377, -1.424882, 1.7892818, 2.2225108],
    [2.9774556, -1.563847, -2.5354505, 0.4488709, -1.7340868],
    [-2.8381855, -2.4080014, 2.9901233, -0.72601986, 1.2363443],
    [2.03257, 0.039462805, -1.7365737, 1.859148, -1.9385548],
    [2.1795692, -2.984069, 0.9612086, -0.9602599, -2.1850324],
])
_OBSERVATIONS = np.array([
    [2.3718784, 0.49947417, 9.931435, 1.7136912, -10.436423, -1.9067793, -1.2343777, -0.09735],
    [-0.66452104, -2.9279308, -16.49147, 4.06107, 4.232153, -4.652277, -4.9924355, -1.5655216],
    [3.5023372, 5.254722, 8.685451, 9.995327, 0.40782332, -5.7111573, 10.605566, 12.695774],
    [-1.6371447, -0.037302777, -1.5622597, 0.031204943,
     -3.683134, 0.09953671, -1.7389069, 0.0309663],
    [-8.801672, 8.726709, -10.484016, 6.857725, -6.769688, 7.574161, 3.804308, 2.7593615],
    [0.069512725, 4.0657325, -1.1986864, 0.94379723, -1.4434359, 0.02170819, -4.4811616, -4.26959],
    [-3.0776706, -1.2080946, 25.778881, -2.244017, -0.77473235, -1.5114331, 5.919487, -1.6953411],
    [1.2463324, -2.414371, -2.9786007, -2.3214335, -17.3002, -3.298883, -13.487199, -3.023044],
    [4.755368, -2.3791986, 3.5834174, -1.444761, 5.063205, -3.448882, 0.56577647, 1.3524654],
    [1.3710914, -2.39026, 1.8363019, -2.4391632, 2.013802, -3.2097385, 2.4036794, -3.0089793],
])


def _moments(theta):
    """Mean (n, 2) and covariance entries ``(c00, c01, c11)`` for parameters (n, 5)."""
    s0, s1 = theta[:, 2] ** 2, theta[:, 3] ** 2
    rho = np.tanh(theta[:, 4])
    return theta[:, :2], (s0**2 + _EPS, rho * s0 * s1, s1**2 + _EPS)


class SLCP(Task):
    """The SLCP task (5 parameters, 8 data); see the module docstring.

    Examples
    --------
    >>> from sklearn_tmnre import tasks
    >>> task = tasks.slcp()
    >>> task.observation(1).shape
    (8,)
    >>> task.set_size
    4
    """

    set_size = _N_DRAWS

    def __init__(self):
        prior = Prior([stats.uniform(-3.0, 6.0)] * 5)
        super().__init__("slcp", prior, (2 * _N_DRAWS,), _TRUE_PARAMETERS, _OBSERVATIONS)

    def _simulate_one(self, theta, rng):
        mean, (c00, c01, c11) = _moments(theta[None])
        cov = np.array([[c00[0], c01[0]], [c01[0], c11[0]]])
        return rng.multivariate_normal(mean[0], cov, size=_N_DRAWS).ravel()

    def _simulate_batch(self, theta, rng):
        mean, (c00, c01, c11) = _moments(theta)
        # Closed-form Cholesky factor of the 2x2 covariance.
        l00 = np.sqrt(c00)
        l10 = c01 / l00
        l11 = np.sqrt(c11 - l10**2)
        z = rng.standard_normal((len(theta), _N_DRAWS, 2))
        x0 = mean[:, None, 0] + l00[:, None] * z[..., 0]
        x1 = mean[:, None, 1] + l10[:, None] * z[..., 0] + l11[:, None] * z[..., 1]
        return np.stack([x0, x1], axis=-1).reshape(len(theta), 2 * _N_DRAWS)

    def _log_likelihood(self, theta, x):
        mean, (c00, c01, c11) = _moments(theta)
        det = c00 * c11 - c01**2
        d = x.reshape(len(theta), _N_DRAWS, 2) - mean[:, None, :]
        quad = (c11[:, None] * d[..., 0] ** 2 - 2 * c01[:, None] * d[..., 0] * d[..., 1]
                + c00[:, None] * d[..., 1] ** 2) / det[:, None]
        return -0.5 * quad.sum(axis=1) - _N_DRAWS * (np.log(2 * np.pi) + 0.5 * np.log(det))

    @cached_property
    def _reference_file(self):
        path = resources.files(__package__).joinpath("data", REFERENCE_FILE)
        with path.open("rb") as f, np.load(f) as data:
            samples, observations = data["samples"], data["observations"]
        if not np.allclose(observations, self._observations[: len(observations)]):
            raise RuntimeError(
                f"{REFERENCE_FILE} was made for other observations; regenerate it with "
                "benchmarks/make_references.py."
            )
        return samples

    def _reference(self, i, n, rng):
        samples = self._reference_file
        if i > len(samples):
            raise ValueError(
                f"slcp: reference samples are shipped for observations 1..{len(samples)}; "
                f"got i={i}. Generate more with benchmarks/make_references.py."
            )
        available = samples.shape[1]
        if n > available:
            raise ValueError(
                f"slcp: n={n} reference samples requested but {available} are shipped for "
                f"observation {i}; ask for at most {available}."
            )
        return samples[i - 1, rng.choice(available, size=n, replace=False)]
