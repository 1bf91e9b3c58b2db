r"""Gaussian linear tasks (sbibm's ``gaussian_linear`` and ``gaussian_linear_uniform``).

Both infer the mean of a 10-d Gaussian from one draw,

.. math:: x \mid \theta \sim \mathcal N(\theta,\; \sigma^2 I_{10}), \qquad \sigma^2 = 0.1,

so :math:`\log p(x \mid \theta) = \sum_k \log \mathcal N(x_k; \theta_k, \sigma^2)`.

**Gaussian prior** (``gaussian_linear``): :math:`\theta \sim \mathcal N(0, \tau^2 I)`,
:math:`\tau^2 = 0.1`. The posterior is conjugate,

.. math:: \theta \mid x \sim \mathcal N\Bigl(\frac{\tau^2}{\tau^2 + \sigma^2}\,x,\;
          \frac{\tau^2\sigma^2}{\tau^2 + \sigma^2} I\Bigr) = \mathcal N(x/2,\; 0.05\, I).

**Uniform prior** (``gaussian_linear_uniform``): :math:`\theta \sim \mathcal U(-1, 1)^{10}`.
The posterior is :math:`\mathcal N(x, \sigma^2 I)` restricted to the box; reference
samples are drawn from the Gaussian and rejected outside the box, as in sbibm.

(Every "0.1" above is a variance: sbibm builds both Gaussians from precision
matrices ``inverse(0.1 * I)``.)

Observations 1-10 and their true parameters are sbibm's published ones
(``sbibm/tasks/gaussian_linear{,_uniform}/files/num_observation_<i>/``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ..prior import Prior
from .base import Task, rejection_sample

__all__ = ["GaussianLinear", "GaussianLinearUniform"]

_DIM = 10
_NOISE_VAR = 0.1
_PRIOR_VAR = 0.1

_TRUE_PARAMETERS = np.array([
    [0.27184236, 0.6762953, 0.17189318, -0.04218617, -0.82151634,
     0.024290232, -0.24255924, -0.16438946, -0.13595216, 0.26958188],
    [0.3231766, -0.48194557, -0.158818, 0.24477085, -0.05232675,
     -0.17622235, 0.11508731, -0.59824085, 0.4403286, 0.054832038],
    [0.7524056, -0.40969732, -0.4214273, 0.5400569, 0.106762305,
     0.44723606, 0.15044528, -0.44408217, 0.03280716, -0.7424394],
    [0.21707824, -0.8317063, -0.07557733, -0.4370258, -0.14421989,
     0.32103, -0.50172037, 0.28485256, -0.35796782, -0.70275885],
    [-0.15898985, -0.08629426, -0.021514494, 0.28765088, -0.15135133,
     -0.1654573, 0.6602954, 0.07169207, -0.011314105, 0.1380289],
    [-0.13793041, 0.045632858, 0.53129846, -0.12456216, 0.17174427,
     -0.084691405, 0.20289446, 0.19580129, -0.44808364, 0.0024759779],
    [-0.32851782, -0.04893442, -0.19452389, -0.14762016, 0.18822408,
     0.4414935, 0.07872076, 0.14572169, -0.29071635, 0.6546646],
    [0.29568693, -0.87399215, -0.08688919, 0.15754443, 0.24703713,
     0.3069163, -0.5726556, -0.011553854, -0.0880848, -0.3792606],
    [-0.11919082, -0.46535635, -0.80274117, 0.47296685, 0.44567764,
     0.16000625, 0.25931683, -0.14714251, -0.20642096, 0.28618297],
    [0.21370807, -0.14310072, 0.3802537, 0.23015006, -0.4929388,
     -0.011544324, -0.05810091, 0.19308132, 0.10048655, -0.52734745],
])
_OBSERVATIONS = np.array([
    [1.0471346, 0.5566712, -0.23618454, 0.027879834, -1.0051446,
     -0.007930746, 0.06117077, -0.29286885, -0.38539964, 0.2449614],
    [-0.106687605, -0.8015651, -0.07332335, 0.4009537, 0.62297356,
     -0.18687348, 0.7087778, 0.1921165, 0.6718195, 0.097826496],
    [0.46684834, -1.0391812, -0.4221986, -0.043471217, 0.06795333,
     0.44685173, 0.034785576, -0.48691356, -0.14388148, -0.60066223],
    [0.26986307, -0.8764679, -0.80710757, -0.62243676, -0.29644397,
     0.18969943, -1.2106322, 0.080149904, -0.05710575, -0.6485255],
    [0.086261556, 0.23511642, -0.12244874, -0.23736775, -0.14382003,
     -0.59807384, 0.5410164, 0.35587752, 0.45564276, 0.33464402],
    [0.303608, 0.09702572, 0.4143386, -0.6286805, -0.10541348,
     0.2423679, -0.27078122, 0.6748003, -0.29908583, -0.23966554],
    [-0.54149276, 0.15401167, -0.53614, 0.15069558, -0.15211618,
     -0.21718031, -0.39777136, -0.0935701, -0.76762325, 0.66795474],
    [-0.16127616, -1.227219, -0.094550796, 0.16520452, 0.62588596,
     0.31528804, -1.0753651, 0.1274876, -0.31232044, -0.6503956],
    [-0.2497777, -0.27713263, -0.34482944, 0.5036805, 0.75670123,
     0.8884809, 0.047073513, -0.2576767, -0.45802453, -0.16742781],
    [0.43484968, 0.5951628, 0.24885634, 0.6911342, -0.80032897,
     0.5683282, -0.23501486, 0.4710286, 0.3702978, -0.88694054],
])

_UNIFORM_TRUE_PARAMETERS = np.array([
    [-0.95270705, -0.14817107, 0.9824493, 0.41320384, 0.99042416,
     -0.74023414, 0.7862458, 0.043799043, -0.6261761, -0.76511395],
    [-0.28899693, -0.8759459, 0.95357263, -0.6195792, -0.9145992,
     0.18952191, 0.3366685, 0.027963042, -0.57398486, 0.36814296],
    [0.73016036, -0.3217839, 0.7436297, -0.98562, 0.5888654,
     0.55506134, -0.02393043, -0.34145534, -0.9468237, -0.99791837],
    [-0.8023417, 0.011640668, 0.4937837, 0.12288535, -0.8193135,
     -0.30012524, 0.15650165, 0.87042105, -0.17070031, 0.05518043],
    [0.89478576, 0.71784866, -0.96226573, 0.72463524, -0.68452966,
     0.3685118, 0.5850848, 0.65575254, 0.15802038, 0.4119612],
    [-0.6377127, 0.0018655062, -0.47496068, 0.5964273, 0.740837,
     0.7891394, 0.44359863, 0.9471376, 0.48177147, 0.7264427],
    [-0.61911654, 0.829502, 0.10599208, -0.09929764, -0.8491708,
     0.80009747, -0.6855464, 0.088377714, 0.04646504, 0.51540077],
    [-0.7995198, 0.49675143, -0.0035431385, -0.43815613, -0.16744614,
     0.81618166, 0.5373577, -0.31165457, -0.46446574, 0.86274874],
    [0.6775234, 0.013154268, -0.5788579, 0.61971605, -0.6461849,
     0.5230421, -0.0032577515, -0.6397122, 0.76371455, 0.766533],
    [0.72652316, -0.9946897, 0.32040286, -0.3200866, -0.7283441,
     0.9077108, -0.093097925, 0.14058733, -0.6240684, -0.4237193],
])
_UNIFORM_OBSERVATIONS = np.array([
    [-0.53739023, -0.23864163, 0.81923723, 0.6407443, 0.41616207,
     -0.09746933, 1.1292295, -0.05842293, -0.97055256, -0.9423423],
    [0.019115955, -0.4197468, 0.98860306, -0.6720742, -1.2154121,
     -0.11650029, 0.35099706, -0.16472842, 0.08806163, 1.239455],
    [0.4030226, -0.7874718, 0.47823936, -1.4466298, 1.0304383,
     0.36987883, 0.41743642, -0.6283107, -0.7926628, -1.3377644],
    [-1.1217812, 0.090078756, 0.67020655, -0.31719723, -0.1833409,
     -0.48315385, 0.5459728, 0.92876196, 0.23659813, -0.10014519],
    [0.90498954, 0.77588695, -0.77208096, 0.56694007, -0.5352473,
     0.46516165, 0.11420995, 0.47490227, 0.19284089, -0.11555666],
    [-0.5577458, 0.14209919, -0.6500296, 0.9244957, 0.70007527,
     0.743738, 0.09592885, 0.5875819, 0.45902732, 0.42756116],
    [-0.69729096, 0.6521971, 0.29714647, 0.09962295, -0.5758827,
     0.656759, -0.87105334, 0.33949262, -0.24973083, 0.14594421],
    [-1.1619325, 0.40415072, 0.16907583, -0.9075509, -0.5899501,
     0.7317498, 0.6526604, -0.59575146, -0.4379231, 0.8628466],
    [0.35297677, -0.6149599, -0.7641265, 0.8470119, -0.9302237,
     0.58948755, 0.002313375, -0.5937533, 0.64574105, 0.6016496],
    [0.65008456, -1.2486589, 0.5422658, 0.18347389, -0.71052873,
     0.69502926, 0.1572721, 0.05693593, -0.7391961, -0.6808562],
])


class _GaussianLikelihood(Task):
    """Shared simulator and likelihood: ``x ~ N(theta, 0.1 I)``."""

    def _simulate_one(self, theta, rng):
        return rng.multivariate_normal(theta, _NOISE_VAR * np.eye(_DIM))

    def _simulate_batch(self, theta, rng):
        return theta + math.sqrt(_NOISE_VAR) * rng.standard_normal(theta.shape)

    def _log_likelihood(self, theta, x):
        return stats.norm.logpdf(x, theta, math.sqrt(_NOISE_VAR)).sum(axis=1)


class GaussianLinear(_GaussianLikelihood):
    """10-d Gaussian mean with a Gaussian prior ``N(0, 0.1 I)``; exact Gaussian posterior.

    Examples
    --------
    >>> from sklearn_tmnre import tasks
    >>> task = tasks.gaussian_linear()
    >>> mean, cov = task.posterior_moments(task.observation(1))
    >>> float(cov[0, 0])
    0.05
    """

    def __init__(self):
        prior = Prior([stats.norm(0.0, math.sqrt(_PRIOR_VAR))] * _DIM)
        super().__init__("gaussian_linear", prior, (_DIM,), _TRUE_PARAMETERS, _OBSERVATIONS)

    def posterior_moments(self, x):
        """Mean (n_params,) and covariance (n_params, n_params) of ``p(theta | x)``.

        Parameters
        ----------
        x : array-like of shape (10,)

        Returns
        -------
        mean : ndarray of shape (10,)
        cov : ndarray of shape (10, 10)
        """
        x = self._check_x(x, 1)[0]
        shrink = _PRIOR_VAR / (_PRIOR_VAR + _NOISE_VAR)
        return shrink * x, shrink * _NOISE_VAR * np.eye(_DIM)

    def _reference(self, i, n, rng):
        mean, cov = self.posterior_moments(self.observation(i))
        return mean + rng.standard_normal((n, _DIM)) * np.sqrt(np.diag(cov))


class GaussianLinearUniform(_GaussianLikelihood):
    """10-d Gaussian mean with a uniform prior ``U(-1, 1)^10``; posterior by rejection.

    Examples
    --------
    >>> from sklearn_tmnre import tasks
    >>> task = tasks.gaussian_linear_uniform()
    >>> task.reference_samples(1, n=100, random_state=0).shape
    (100, 10)
    """

    def __init__(self):
        prior = Prior([stats.uniform(-1.0, 2.0)] * _DIM)
        super().__init__("gaussian_linear_uniform", prior, (_DIM,),
                         _UNIFORM_TRUE_PARAMETERS, _UNIFORM_OBSERVATIONS)

    def _reference(self, i, n, rng):
        x = self.observation(i)
        bounds = self.prior.bounds

        def propose(m, rng):
            return x + math.sqrt(_NOISE_VAR) * rng.standard_normal((m, _DIM))

        def inside(theta):
            return np.all((theta >= bounds[:, 0]) & (theta <= bounds[:, 1]), axis=1)

        return rejection_sample(propose, inside, n, rng)
