r"""Two moons (sbibm's ``two_moons``): a crescent-shaped, bimodal posterior.

Prior :math:`\theta \sim \mathcal U(-1, 1)^2`. The simulator draws
:math:`a \sim \mathcal U(-\pi/2, \pi/2)` and :math:`r \sim \mathcal N(0.1, 0.01^2)`,
forms :math:`p = (r\cos a + 0.25,\; r\sin a)` and returns

.. math:: x = p + \bigl(-|z_0|,\; z_1\bigr), \qquad
          z_0 = (\theta_0 + \theta_1)/\sqrt 2, \quad z_1 = (\theta_1 - \theta_0)/\sqrt 2,

i.e. :math:`z` is :math:`\theta` rotated by :math:`-\pi/4`. The absolute value makes
the posterior two crescents, mirror images under :math:`z_0 \to -z_0`
(:math:`\theta \to (-\theta_1, -\theta_0)`).

**Likelihood.** With :math:`(u, v) = (x_0 + |z_0| - 0.25,\; x_1 - z_1)` and
:math:`\rho = \sqrt{u^2 + v^2}`, the change of variables :math:`(r, a) \to (u, v)`
(Jacobian :math:`\rho`) gives

.. math:: p(x \mid \theta) = \frac{\mathcal N(\operatorname{sign}(u)\,\rho;\, 0.1, 0.01^2)}
                              {\pi\,\rho}.

sbibm's ``_likelihood`` leaves out the :math:`1/(\pi\rho)` factor; it is included
here, so this is the normalized density of :math:`x`.

**Reference posterior** (exact, as in sbibm): draw :math:`p` from the simulator's
noise, invert :math:`|z_0| = p_0 - x_0` (rejected if negative) and
:math:`z_1 = x_1 - p_1`, give :math:`z_0` a random sign, rotate back and reject draws
outside the prior box. Each branch is a translation of :math:`p`, so accepted draws
follow :math:`p(\theta \mid x_o)` exactly.

Observations 1-10 and their true parameters are sbibm's published ones
(``sbibm/tasks/two_moons/files/num_observation_<i>/``).

Reference: Greenberg, Nonnenmacher & Macke, "Automatic posterior transformation
for likelihood-free inference", ICML 2019; Lueckmann et al., AISTATS 2021.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ..prior import Prior
from .base import Task, rejection_sample

__all__ = ["TwoMoons"]

_A_LOW, _A_HIGH = -math.pi / 2, math.pi / 2
_R_LOC, _R_SCALE = 0.1, 0.01
_OFFSET = 0.25
_SQRT_HALF = math.sqrt(0.5)

_TRUE_PARAMETERS = np.array([
    [-0.8176656, -0.5756806],
    [-0.28899693, -0.8759459],
    [0.73016036, -0.3217839],
    [-0.8023417, 0.011640668],
    [-0.43228424, -0.9955981],
    [-0.6377127, 0.0018655062],
    [-0.61911654, 0.829502],
    [-0.7995198, 0.49675143],
    [0.6775234, 0.013154268],
    [0.72652316, -0.9946897],
])
_OBSERVATIONS = np.array([
    [-0.6396706, 0.16234657],
    [-0.5676688, -0.33194834],
    [0.0030109584, -0.6457662],
    [-0.25049388, 0.633055],
    [-0.66463584, -0.42604533],
    [-0.12940255, 0.3873573],
    [0.19458583, 1.0400153],
    [0.13603824, 0.9160449],
    [-0.17962828, -0.5452459],
    [0.14563406, -1.170141],
])


class TwoMoons(Task):
    """The two-moons task (2 parameters, 2 data); see the module docstring.

    Examples
    --------
    >>> from sklearn_tmnre import tasks
    >>> task = tasks.two_moons()
    >>> theta, X = task.sample(5, random_state=0)
    >>> X.shape
    (5, 2)
    """

    def __init__(self):
        prior = Prior([stats.uniform(-1.0, 2.0), stats.uniform(-1.0, 2.0)])
        super().__init__("two_moons", prior, (2,), _TRUE_PARAMETERS, _OBSERVATIONS)

    def _simulate_one(self, theta, rng):
        a = rng.uniform(_A_LOW, _A_HIGH)
        r = rng.normal(_R_LOC, _R_SCALE)
        z0 = (theta[0] + theta[1]) * _SQRT_HALF
        z1 = (theta[1] - theta[0]) * _SQRT_HALF
        return np.array([r * math.cos(a) + _OFFSET - abs(z0), r * math.sin(a) + z1])

    @staticmethod
    def _noise(n, rng):
        """``n`` draws of ``p = (r cos a + 0.25, r sin a)``, shape (n, 2)."""
        a = rng.uniform(_A_LOW, _A_HIGH, size=n)
        r = rng.normal(_R_LOC, _R_SCALE, size=n)
        return np.column_stack([r * np.cos(a) + _OFFSET, r * np.sin(a)])

    def _simulate_batch(self, theta, rng):
        p = self._noise(len(theta), rng)
        z0 = (theta[:, 0] + theta[:, 1]) * _SQRT_HALF
        z1 = (theta[:, 1] - theta[:, 0]) * _SQRT_HALF
        return p + np.column_stack([-np.abs(z0), z1])

    def _log_likelihood(self, theta, x):
        z0 = (theta[:, 0] + theta[:, 1]) * _SQRT_HALF
        z1 = (theta[:, 1] - theta[:, 0]) * _SQRT_HALF
        u = x[:, 0] + np.abs(z0) - _OFFSET
        v = x[:, 1] - z1
        rho = np.hypot(u, v)
        # r < 0 (probability ~1e-23) lands at u < 0: the signed radius covers both branches.
        signed = np.where(u >= 0, rho, -rho)
        with np.errstate(divide="ignore"):
            return stats.norm.logpdf(signed, _R_LOC, _R_SCALE) - np.log(math.pi * rho)

    def _reference(self, i, n, rng):
        x = self.observation(i)
        bounds = self.prior.bounds

        def propose(m, rng):
            p = self._noise(m, rng)
            abs_z0 = p[:, 0] - x[0]
            z0 = np.where(rng.random(m) < 0.5, abs_z0, -abs_z0)
            z1 = x[1] - p[:, 1]
            theta = np.column_stack([(z0 - z1) * _SQRT_HALF, (z0 + z1) * _SQRT_HALF])
            # A negative |z_0| has no preimage; encode it as a point outside the box.
            theta[abs_z0 < 0] = np.inf
            return theta

        def inside(theta):
            return np.all((theta >= bounds[:, 0]) & (theta <= bounds[:, 1]), axis=1)

        return rejection_sample(propose, inside, n, rng)
