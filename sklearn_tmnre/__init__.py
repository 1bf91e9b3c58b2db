"""sklearn_tmnre: Truncated Marginal Neural Ratio Estimation with a scikit-learn face.

Simulation-based inference of the 1-d and 2-d marginal posteriors of a
stochastic simulator's parameters, with prior truncation round by round and
coverage tests.
"""

from . import tasks  # noqa: E402  (sub-package of benchmark problems)
from .estimator import TMNREEstimator
from .persistence import _register_estimator_class
from .posterior import MarginalPosterior
from .prior import Prior
from .rounds import TMNRE
from .simulate import SimulationError, SimulationResult, SimulationWarning, simulate
from .store import SimulationStore
from .truncation import Truncator

__version__ = "0.1.0"

# Model files name their estimator class; persistence learns it here rather than
# importing the estimator module, which calls persistence for save and load.
_register_estimator_class(TMNREEstimator)

__all__ = [
    "MarginalPosterior",
    "Prior",
    "SimulationError",
    "SimulationResult",
    "SimulationStore",
    "SimulationWarning",
    "TMNRE",
    "TMNREEstimator",
    "Truncator",
    "simulate",
    "tasks",
    "__version__",
]
