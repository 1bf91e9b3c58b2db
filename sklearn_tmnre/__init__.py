"""sklearn_tmnre: Truncated Marginal Neural Ratio Estimation with a scikit-learn face.

Simulation-based inference of the 1-d and 2-d marginal posteriors of a
stochastic simulator's parameters, with prior truncation round by round and
coverage tests.
"""

from .estimator import TMNREEstimator
from .posterior import MarginalPosterior
from .prior import Prior
from .simulate import SimulationError, SimulationResult, SimulationWarning, simulate
from .store import SimulationStore

__version__ = "0.1.0"

__all__ = [
    "MarginalPosterior",
    "Prior",
    "SimulationError",
    "SimulationResult",
    "SimulationStore",
    "SimulationWarning",
    "TMNREEstimator",
    "simulate",
    "__version__",
]
