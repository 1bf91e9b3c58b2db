"""Benchmark problems with reference posteriors, defined as in the SBI benchmark.

Each task (Lueckmann et al., "Benchmarking Simulation-Based Inference", AISTATS
2021; the ``sbibm`` package) provides a prior, a per-row and a vectorized
simulator, ten fixed observations with sbibm's published true parameters, and
reference posterior samples:

===========================  ======  ====  ======================================================
name                         params  data  reference posterior
===========================  ======  ====  ======================================================
``two_moons``                2       2     exact (inversion of the simulator)
``gaussian_linear``          10      10    exact (conjugate Gaussian)
``gaussian_linear_uniform``  10      10    exact (Gaussian, rejection to the box)
``gaussian_mixture``         2       2     exact (mixture, rejection to the box)
``slcp``                     5       8     rejection from a fitted proposal, shipped in ``data/``
===========================  ======  ====  ======================================================

Examples
--------
>>> from sklearn_tmnre import tasks
>>> task = tasks.get_task("two_moons")
>>> theta, X = task.sample(1000, random_state=0)
>>> ref = task.reference_samples(1, n=500, random_state=0)
>>> list(ref.columns)
['theta_0', 'theta_1']
"""

from .base import Task
from .gaussian_linear import GaussianLinear, GaussianLinearUniform
from .gaussian_mixture import GaussianMixture
from .slcp import SLCP
from .two_moons import TwoMoons

# Science tasks (cmb.py, supernova.py, lensing.py) are registered here by the lead.

__all__ = [
    "Task",
    "TwoMoons",
    "GaussianLinear",
    "GaussianLinearUniform",
    "GaussianMixture",
    "SLCP",
    "two_moons",
    "gaussian_linear",
    "gaussian_linear_uniform",
    "gaussian_mixture",
    "slcp",
    "get_task",
    "TASKS",
]


def two_moons():
    """Return the two-moons task (:class:`TwoMoons`)."""
    return TwoMoons()


def gaussian_linear():
    """Return the 10-d Gaussian linear task with a Gaussian prior (:class:`GaussianLinear`)."""
    return GaussianLinear()


def gaussian_linear_uniform():
    """Return the 10-d Gaussian linear task, uniform prior (:class:`GaussianLinearUniform`)."""
    return GaussianLinearUniform()


def gaussian_mixture():
    """Return the 2-d Gaussian mixture task (:class:`GaussianMixture`)."""
    return GaussianMixture()


def slcp():
    """Return the SLCP task (:class:`SLCP`)."""
    return SLCP()


_FACTORIES = {
    "two_moons": two_moons,
    "gaussian_linear": gaussian_linear,
    "gaussian_linear_uniform": gaussian_linear_uniform,
    "gaussian_mixture": gaussian_mixture,
    "slcp": slcp,
}

#: Names accepted by :func:`get_task`.
TASKS = tuple(_FACTORIES)


def get_task(name):
    """Return a new task by name.

    Parameters
    ----------
    name : str
        One of :data:`TASKS`.

    Returns
    -------
    task : Task
    """
    try:
        return _FACTORIES[name]()
    except (KeyError, TypeError):
        raise ValueError(f"get_task: unknown task name {name!r}; choose one of {TASKS}.") from None
