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

Science toys for the examples (:data:`SCIENCE_TASKS`, also found by
:func:`get_task`): :func:`cmb_spectrum` (6 cosmological parameters, TT/TE/EE
spectra), :func:`supernovae` (flat wCDM Hubble diagram, optionally one latent
offset per supernova), :func:`strong_lensing` (64x64 lensed images with a
subhalo) and :func:`subhalo_lensing` (lensed images with a Poisson population of
subhalos, and their occupancy maps in 10 mass bins).

Examples
--------
>>> from sklearn_tmnre import tasks
>>> task = tasks.get_task("two_moons")
>>> theta, X = task.sample(1000, random_state=0)
>>> ref = task.reference_samples(1, n=500, random_state=0)
>>> list(ref.columns)
['theta_0', 'theta_1']
"""

from ._matched_filter import matched_filter, subhalo_matched_filter
from .base import Task
from .cmb import CMBSpectrum, cmb_spectrum
from .gaussian_linear import GaussianLinear, GaussianLinearUniform
from .gaussian_mixture import GaussianMixture
from .lensing import StrongLensing, strong_lensing
from .slcp import SLCP
from .subhalos import SubhaloLensing, subhalo_lensing
from .supernova import Supernovae, supernovae
from .two_moons import TwoMoons

__all__ = [
    "Task",
    "TwoMoons",
    "GaussianLinear",
    "GaussianLinearUniform",
    "GaussianMixture",
    "SLCP",
    "CMBSpectrum",
    "Supernovae",
    "StrongLensing",
    "SubhaloLensing",
    "two_moons",
    "gaussian_linear",
    "gaussian_linear_uniform",
    "gaussian_mixture",
    "slcp",
    "cmb_spectrum",
    "supernovae",
    "strong_lensing",
    "subhalo_lensing",
    "matched_filter",
    "subhalo_matched_filter",
    "get_task",
    "TASKS",
    "SCIENCE_TASKS",
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

#: The SBI-benchmark tasks (reference posteriors for every observation).
TASKS = tuple(_FACTORIES)

_SCIENCE = {"cmb_spectrum": cmb_spectrum, "supernovae": supernovae,
            "strong_lensing": strong_lensing, "subhalo_lensing": subhalo_lensing}

#: The science toys of the examples (default settings).
SCIENCE_TASKS = tuple(_SCIENCE)


def get_task(name):
    """Return a new task by name.

    Parameters
    ----------
    name : str
        One of :data:`TASKS` or :data:`SCIENCE_TASKS`.

    Returns
    -------
    task : Task
    """
    factories = {**_FACTORIES, **_SCIENCE}
    if not isinstance(name, str) or name not in factories:
        raise ValueError(f"get_task: unknown task name {name!r}; choose one of "
                         f"{TASKS + SCIENCE_TASKS}.")
    return factories[name]()
