"""The ``bad-input-table`` directive: what each bad input gets, found by running it.

Every row calls the library with one bad input while the docs build and shows
what happened: the exception type and message, the warning, or the value
returned. The table therefore cannot drift from the code. Rows whose class or
function does not exist yet read "not implemented yet"; a row whose outcome
breaks the contract (bad input raises ``ValueError``/``TypeError`` naming the
argument; see the hardening issue) is flagged with a warning sign.

Usage::

    .. bad-input-table:: fit

where the argument is one of the groups in :data:`GROUPS`.
"""

import atexit
import os
import re
import shutil
import tempfile
import time
import warnings

import numpy as np
import pandas as pd
from docutils import nodes
from docutils.parsers.rst import Directive
from scipy import stats

MAX_MESSAGE = 320


class _Pending(Exception):
    """The API a row exercises does not exist yet."""


def _api(name):
    """``sklearn_tmnre.<name>`` (dotted), or raise _Pending if it is not there yet."""
    import importlib

    module_name, _, attr = ("sklearn_tmnre." + name).rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise _Pending(f"sklearn_tmnre.{name}") from exc


_FIXTURES = {}


def _fixtures():
    """A prior, simulations and a tiny fitted estimator, built once per docs build."""
    if not _FIXTURES:
        Prior, TMNREEstimator = _api("Prior"), _api("TMNREEstimator")
        prior = Prior({"a": stats.uniform(-1, 2), "b": stats.norm(0, 1)})
        theta = prior.sample(64, random_state=0)
        noise = np.random.default_rng(0).standard_normal((64, 3))
        X = np.column_stack([theta["a"], theta["b"], theta["a"] * theta["b"]]) + 0.1 * noise
        est = TMNREEstimator(prior=prior, max_epochs=1, embedding_dim=4, hidden_features=8,
                             num_blocks=1, n_grid_1d=16, n_grid_2d=8, validation_fraction=0,
                             random_state=0).fit(X, theta)
        _FIXTURES.update(prior=prior, theta=theta, X=X, est=est,
                         x_o=X[0], unfitted=TMNREEstimator(prior=prior))
    return _FIXTURES


def _new_estimator(**params):
    f = _fixtures()
    defaults = dict(prior=f["prior"], max_epochs=1, embedding_dim=4, hidden_features=8,
                    num_blocks=1, validation_fraction=0, random_state=0)
    return _api("TMNREEstimator")(**{**defaults, **params})


def _with_nan(a, value=np.nan):
    a = np.array(a, dtype=float)
    a[1, 0] = value
    return a


def _clone(est):
    from sklearn.base import clone

    return clone(est)


_TEMP_DIRS = []


def _temp_dir():
    """A new temporary folder, removed when the docs build's process exits."""
    path = tempfile.mkdtemp(prefix="bad-input-")
    _TEMP_DIRS.append(path)
    return path


atexit.register(lambda: [shutil.rmtree(p, ignore_errors=True) for p in _TEMP_DIRS])


def _folder(files):
    """A new folder holding ``files`` ({name: text})."""
    path = _temp_dir()
    for name, text in files.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
    return path


def _store_with(files, remove=None):
    """A store with two rows, then ``files`` written into it and ``remove`` deleted."""
    path = os.path.join(_temp_dir(), "sims.zarr")
    _api("SimulationStore")(path).append(pd.DataFrame({"a": [0.0, 0.5]}), np.zeros((2, 3)))
    for name, text in files.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
    if remove:
        os.remove(os.path.join(path, remove))
    return path


def _store_damaged(chunk, how):
    """A store with two rows whose ``chunk`` file then has one bit flipped, or is deleted."""
    path = _store_with({})
    target = os.path.join(path, *chunk.split("/"))
    if how == "delete":
        os.remove(target)
    else:
        with open(target, "rb") as f:
            data = bytearray(f.read())
        data[len(data) // 2] ^= 0x10
        with open(target, "wb") as f:
            f.write(bytes(data))
    return path


def _repair_summary(path, **kwargs):
    report = _api("SimulationStore").repair(path, **kwargs)
    return {"n_rows": report.n_rows, "n_dropped": report.n_dropped, "problems": report.problems}


def _simulator(theta, rng):
    return np.asarray(theta, dtype=float) + 0.1 * rng.standard_normal(len(theta))


def _raising_simulator(theta, rng):
    if theta[0] > 0:
        raise RuntimeError("solver did not converge")
    return np.asarray(theta, dtype=float)


def _nan_simulator(theta, rng):
    return np.full(2, np.nan) if theta[0] > 0 else np.asarray(theta, dtype=float)


def _ragged_simulator(theta, rng):
    return np.zeros(3) if theta[0] > 0 else np.asarray(theta, dtype=float)


def _slow_simulator(theta, rng):
    if theta[0] > 0:
        time.sleep(2)
    return np.asarray(theta, dtype=float)


def _stubborn_simulator(theta, rng):
    # Retries on every exception, so a timeout raised as an Exception would never end it.
    while theta[0] > 0:
        try:
            time.sleep(2)
        except Exception:  # noqa: BLE001 - the stubbornness under test
            pass
    return np.asarray(theta, dtype=float)


_THETA2 = np.array([[-0.5, 0.1], [0.5, 0.2], [-0.2, 0.3]])

# (call, bad input, thunk, expected) per group; expected is "error" (ValueError or
# TypeError), "oserror" (an OSError: the file system refused), "warning" (a warning,
# with a result) or "value" (a defined result).
GROUPS = {
    "prior": [
        ("Prior(distributions)", "empty dict", lambda: _api("Prior")({}), "error"),
        ("Prior(distributions)", "not a dict or list (a string)",
         lambda: _api("Prior")("a"), "error"),
        ("Prior(distributions)", "an unfrozen distribution (stats.norm)",
         lambda: _api("Prior")({"a": stats.norm}), "error"),
        ("Prior(distributions)", "a discrete distribution (stats.poisson(3))",
         lambda: _api("Prior")({"a": stats.poisson(3)}), "error"),
        ("Prior(distributions)", "a multivariate distribution",
         lambda: _api("Prior")({"a": stats.multivariate_normal(np.zeros(2))}), "error"),
        ("Prior(distributions)", "duplicate names (1 and '1')",
         lambda: _api("Prior")({1: stats.norm(), "1": stats.norm()}), "error"),
        ("Prior.sample(n)", "n = -1", lambda: _fixtures()["prior"].sample(-1), "error"),
        ("Prior.log_prob(theta)", "NaN",
         lambda: _fixtures()["prior"].log_prob(_with_nan(_THETA2)), "error"),
        ("Prior.log_prob(theta)", "+inf (outside the support)",
         lambda: _fixtures()["prior"].log_prob(_with_nan(_THETA2, np.inf)), "value"),
        ("Prior.log_prob(theta)", "wrong number of columns (3 for 2 parameters)",
         lambda: _fixtures()["prior"].log_prob(np.zeros((4, 3))), "error"),
        ("Prior.log_prob(theta)", "object array of strings",
         lambda: _fixtures()["prior"].log_prob(np.array([["x", "y"]], dtype=object)), "error"),
        ("Prior.log_prob(theta)", "DataFrame without column 'b'",
         lambda: _fixtures()["prior"].log_prob(pd.DataFrame({"a": [0.0]})), "error"),
        ("Prior.truncate(bounds)", "unknown name",
         lambda: _fixtures()["prior"].truncate({"z": (0, 1)}), "error"),
        ("Prior.truncate(bounds)", "box outside the support",
         lambda: _fixtures()["prior"].truncate({"a": (5, 6)}), "error"),
        ("Prior.truncate(bounds)", "high < low",
         lambda: _fixtures()["prior"].truncate({"a": (0.5, -0.5)}), "error"),
        ("Prior.truncate(bounds)", "NaN",
         lambda: _fixtures()["prior"].truncate({"a": (np.nan, 0.5)}), "error"),
        ("Prior.truncate(bounds)", "array of the wrong shape",
         lambda: _fixtures()["prior"].truncate(np.zeros((3, 2))), "error"),
    ],
    "simulate": [
        ("simulate(simulator, theta)", "simulator not callable",
         lambda: _api("simulate")(42, _THETA2), "error"),
        ("simulate(simulator, theta, event_shape=(3,))", "outputs of shape (2,)",
         lambda: _api("simulate")(_simulator, _THETA2, event_shape=(3,)), "error"),
        ("simulate(simulator, theta, timeout=...)", "timeout=inf",
         lambda: _api("simulate")(_simulator, _THETA2, timeout=np.inf), "error"),
        ("simulate(simulator, theta)", "theta with NaN",
         lambda: _api("simulate")(_simulator, _with_nan(_THETA2)), "error"),
        ("simulate(simulator, theta)", "theta with -inf",
         lambda: _api("simulate")(_simulator, _with_nan(_THETA2, -np.inf)), "error"),
        ("simulate(simulator, theta)", "theta with no rows",
         lambda: _api("simulate")(_simulator, np.zeros((0, 2))), "error"),
        ("simulate(simulator, theta)", "theta of shape (3, 2, 1)",
         lambda: _api("simulate")(_simulator, np.zeros((3, 2, 1))), "error"),
        ("simulate(simulator, theta)", "object array of strings",
         lambda: _api("simulate")(_simulator, np.array([["x", "y"]], dtype=object)), "error"),
        ("simulate(..., on_error)", "on_error='ignore'",
         lambda: _api("simulate")(_simulator, _THETA2, on_error="ignore"), "error"),
        ("simulate(..., timeout)", "timeout=0",
         lambda: _api("simulate")(_simulator, _THETA2, timeout=0), "error"),
        ("simulate(..., batch_size)", "batch_size=0",
         lambda: _api("simulate")(_simulator, _THETA2, batch_size=0), "error"),
        ("simulate(..., random_state)", "random_state=-1",
         lambda: _api("simulate")(_simulator, _THETA2, random_state=-1), "error"),
        ("simulate(simulator, theta)", "the simulator raises on one row",
         lambda: _api("simulate")(_raising_simulator, _THETA2, random_state=0), "error"),
        ("simulate(simulator, theta)", "the simulator returns NaN on one row",
         lambda: _api("simulate")(_nan_simulator, _THETA2, random_state=0), "error"),
        ("simulate(simulator, theta)", "the simulator returns the wrong shape on one row",
         lambda: _api("simulate")(_ragged_simulator, _THETA2, random_state=0), "error"),
        ("simulate(..., timeout=0.2)", "the simulator hangs (2 s) on one row",
         lambda: _api("simulate")(_slow_simulator, _THETA2, timeout=0.2, random_state=0),
         "error"),
        ("simulate(..., timeout=0.2)",
         "the simulator catches every exception and retries forever on one row",
         lambda: _api("simulate")(_stubborn_simulator, _THETA2, timeout=0.2, random_state=0),
         "error"),
        ("simulate(..., on_error='skip')", "the simulator raises on one row",
         lambda: _api("simulate")(_raising_simulator, _THETA2, on_error="skip",
                                  random_state=0), "warning"),
    ],
    "fit": [
        ("TMNREEstimator.fit(X, y)", "X with NaN",
         lambda: _new_estimator().fit(_with_nan(_fixtures()["X"]), _fixtures()["theta"]),
         "error"),
        ("TMNREEstimator.fit(X, y)", "X with +inf",
         lambda: _new_estimator().fit(_with_nan(_fixtures()["X"], np.inf),
                                      _fixtures()["theta"]), "error"),
        ("TMNREEstimator.fit(X, y)", "X of strings (object array)",
         lambda: _new_estimator().fit(np.full((64, 3), "x", dtype=object),
                                      _fixtures()["theta"]), "error"),
        ("TMNREEstimator.fit(X, y)", "X with no rows",
         lambda: _new_estimator().fit(np.zeros((0, 3)), np.zeros((0, 2))), "error"),
        ("TMNREEstimator.fit(X, y)", "X 1-d (a single observation)",
         lambda: _new_estimator().fit(_fixtures()["X"][0], _fixtures()["theta"]), "error"),
        ("TMNREEstimator.fit(X, y)", "a single sample",
         lambda: _new_estimator().fit(_fixtures()["X"][:1], _fixtures()["theta"][:1]), "error"),
        ("TMNREEstimator.fit(X, y)", "X and y of different lengths",
         lambda: _new_estimator().fit(_fixtures()["X"], _fixtures()["theta"][:10]), "error"),
        ("TMNREEstimator.fit(X, y)", "y is None",
         lambda: _new_estimator().fit(_fixtures()["X"], None), "error"),
        ("TMNREEstimator.fit(X, y)", "y with NaN",
         lambda: _new_estimator().fit(_fixtures()["X"], _with_nan(_fixtures()["theta"])),
         "error"),
        ("TMNREEstimator.fit(X, y)", "y of strings (object array)",
         lambda: _new_estimator().fit(_fixtures()["X"], np.full((64, 2), "x", dtype=object)),
         "error"),
        ("TMNREEstimator.fit(X, y)", "y with 3 columns for a 2-parameter prior",
         lambda: _new_estimator().fit(_fixtures()["X"], np.zeros((64, 3))), "error"),
        ("TMNREEstimator.fit(X, y)", "y with a column not in the prior",
         lambda: _new_estimator().fit(_fixtures()["X"],
                                      _fixtures()["theta"].assign(c=0.0)), "error"),
        ("TMNREEstimator.fit(X, y)", "y without the prior's column 'b'",
         lambda: _new_estimator().fit(_fixtures()["X"], _fixtures()["theta"][["a"]]), "error"),
        ("TMNREEstimator.fit(X, y)", "y with duplicate column names",
         lambda: _new_estimator().fit(
             _fixtures()["X"], _fixtures()["theta"].set_axis(["a", "a"], axis=1)), "error"),
        ("TMNREEstimator.fit(X, y)", "y outside the prior's support (a = 5)",
         lambda: _new_estimator().fit(_fixtures()["X"],
                                      _fixtures()["theta"].assign(a=5.0)), "error"),
        ("TMNREEstimator(prior=...)", "a dict instead of a Prior",
         lambda: _new_estimator(prior={"a": stats.norm()}).fit(_fixtures()["X"],
                                                               _fixtures()["theta"]), "error"),
        ("TMNREEstimator(marginals=...)", "'3d'",
         lambda: _new_estimator(marginals="3d").fit(_fixtures()["X"], _fixtures()["theta"]),
         "error"),
        ("TMNREEstimator(marginals=...)", "an unknown parameter name",
         lambda: _new_estimator(marginals=[("a", "z")]).fit(_fixtures()["X"],
                                                            _fixtures()["theta"]), "error"),
        ("TMNREEstimator(marginals=...)", "a marginal listed twice",
         lambda: _new_estimator(marginals=[("a",), ("a",)]).fit(_fixtures()["X"],
                                                                _fixtures()["theta"]), "error"),
        ("TMNREEstimator(embedding=...)", "an unknown name ('transformer')",
         lambda: _new_estimator(embedding="transformer").fit(_fixtures()["X"],
                                                             _fixtures()["theta"]), "error"),
        ("TMNREEstimator(embedding__<arg>=...)", "an argument the embedding lacks",
         lambda: _new_estimator(embedding__width=3).fit(_fixtures()["X"],
                                                        _fixtures()["theta"]), "error"),
        ("TMNREEstimator(embedding=...)", "'cnn2d' for vector data",
         lambda: _new_estimator(embedding="cnn2d").fit(_fixtures()["X"],
                                                       _fixtures()["theta"]), "error"),
        ("TMNREEstimator(...)", "an argument without the embedding__ prefix",
         lambda: _new_estimator(widht=3).fit(_fixtures()["X"], _fixtures()["theta"]), "error"),
        ("TMNREEstimator(batch_size=...)", "1",
         lambda: _new_estimator(batch_size=1).fit(_fixtures()["X"], _fixtures()["theta"]),
         "error"),
        ("TMNREEstimator(balance=...)", "-1",
         lambda: _new_estimator(balance=-1).fit(_fixtures()["X"], _fixtures()["theta"]),
         "error"),
        ("clone(TMNREEstimator(hiden_features=8)).fit(X, y)", "a misspelled argument",
         lambda: _clone(_new_estimator(hiden_features=8)).fit(_fixtures()["X"],
                                                             _fixtures()["theta"]), "error"),
        ("TMNREEstimator(lr=...)", "0",
         lambda: _new_estimator(lr=0).fit(_fixtures()["X"], _fixtures()["theta"]), "error"),
        ("TMNREEstimator(validation_fraction=...)", "1.0",
         lambda: _new_estimator(validation_fraction=1.0).fit(_fixtures()["X"],
                                                            _fixtures()["theta"]), "error"),
    ],
    "inference": [
        ("predict(X)", "an estimator that was not fitted",
         lambda: _fixtures()["unfitted"].predict(_fixtures()["X"]), "error"),
        ("predict(X)", "X with NaN",
         lambda: _fixtures()["est"].predict(_with_nan(_fixtures()["X"])), "error"),
        ("predict(X)", "X with another event shape (4 features, fitted on 3)",
         lambda: _fixtures()["est"].predict(np.zeros((2, 4))), "error"),
        ("predict(X)", "X with no rows",
         lambda: _fixtures()["est"].predict(np.zeros((0, 3))), "error"),
        ("predict_interval(X, coverage)", "coverage=1.5",
         lambda: _fixtures()["est"].predict_interval(_fixtures()["X"][:2], coverage=1.5),
         "error"),
        ("predict_interval(X, kind)", "kind='mode'",
         lambda: _fixtures()["est"].predict_interval(_fixtures()["X"][:2], kind="mode"),
         "error"),
        ("score(X, y)", "y with NaN",
         lambda: _fixtures()["est"].score(_fixtures()["X"], _with_nan(_fixtures()["theta"])),
         "error"),
        ("score(X, y)", "X and y of different lengths",
         lambda: _fixtures()["est"].score(_fixtures()["X"], _fixtures()["theta"][:5]), "error"),
        ("log_ratio(X, theta)", "theta with 1 column for 2 parameters",
         lambda: _fixtures()["est"].log_ratio(_fixtures()["X"][:2], np.zeros((2, 1))), "error"),
        ("log_ratio(X, theta)", "theta outside the prior's support (a = 5)",
         lambda: _fixtures()["est"].log_ratio(_fixtures()["X"][:2],
                                              _fixtures()["theta"][:2].assign(a=5.0)), "error"),
        ("posterior(x_o)", "x_o with NaN",
         lambda: _fixtures()["est"].posterior(np.array([np.nan, 0.0, 0.0])), "error"),
        ("posterior(x_o)", "x_o of the wrong length (2, fitted on 3)",
         lambda: _fixtures()["est"].posterior(np.zeros(2)), "error"),
        ("credibility(est, X, theta)", "X with another event shape ((4, 1), fitted on 3)",
         lambda: _api("metrics.credibility")(_fixtures()["est"], np.zeros((4, 1)),
                                             _fixtures()["theta"][:4]), "error"),
        ("credibility(est, X, theta)", "X with NaN",
         lambda: _api("metrics.credibility")(_fixtures()["est"], _with_nan(_fixtures()["X"]),
                                             _fixtures()["theta"]), "error"),
        ("posterior(x_o).sample(n, marginal)", "a marginal that was not estimated",
         lambda: _fixtures()["est"].posterior(_fixtures()["x_o"]).sample(
             10, marginal=("a", "b")), "error"),
    ],
    "truncator": [
        ("Truncator(epsilon=...)", "epsilon=0",
         lambda: _api("Truncator")(_fixtures()["prior"], epsilon=0).fit(
             _fixtures()["x_o"], estimator=_fixtures()["est"]), "error"),
        ("Truncator(epsilon=...)", "epsilon=2",
         lambda: _api("Truncator")(_fixtures()["prior"], epsilon=2).fit(
             _fixtures()["x_o"], estimator=_fixtures()["est"]), "error"),
        ("Truncator(tail_mass=...)", "tail_mass=0.5",
         lambda: _api("Truncator")(_fixtures()["prior"], tail_mass=0.5).fit(
             _fixtures()["x_o"], estimator=_fixtures()["est"]), "error"),
        ("Truncator.fit(x_o, estimator)", "x_o with NaN",
         lambda: _api("Truncator")(_fixtures()["prior"]).fit(
             np.array([np.nan, 0.0, 0.0]), estimator=_fixtures()["est"]), "error"),
        ("Truncator.fit(x_o, estimator)", "x_o of the wrong length",
         lambda: _api("Truncator")(_fixtures()["prior"]).fit(
             np.zeros(2), estimator=_fixtures()["est"]), "error"),
        ("Truncator.fit(x_o, estimator)", "an estimator that was not fitted",
         lambda: _api("Truncator")(_fixtures()["prior"]).fit(
             _fixtures()["x_o"], estimator=_fixtures()["unfitted"]), "error"),
        ("Truncator.transform(theta)", "theta with NaN",
         lambda: _api("Truncator")(_fixtures()["prior"]).fit(
             _fixtures()["x_o"], estimator=_fixtures()["est"]).transform(_with_nan(_THETA2)),
         "error"),
        ("Truncator.transform(theta)", "theta with 3 columns for 2 parameters",
         lambda: _api("Truncator")(_fixtures()["prior"]).fit(
             _fixtures()["x_o"], estimator=_fixtures()["est"]).transform(np.zeros((2, 3))),
         "error"),
    ],
    "store": [
        ("SimulationStore(path, mode='w')", "a folder holding attrs.json and the user's files",
         lambda: _api("SimulationStore")(_folder({"attrs.json": "{}", "thesis.tex": "x"}),
                                         mode="w"), "error"),
        ("SimulationStore(path)", "a zarr group that is not a store",
         lambda: _api("SimulationStore")(_folder({"zarr.json": "{}"})), "error"),
        ("SimulationStore(path, mode='w')", "a store holding a file it did not write",
         lambda: _api("SimulationStore")(_store_with({"notes.txt": "mine"}), mode="w"),
         "error"),
        ("SimulationStore(path)", "a store whose commit.json was lost",
         lambda: _api("SimulationStore")(_store_with({}, remove="commit.json")), "error"),
        ("SimulationStore(path)", "a garbled commit.json",
         lambda: _api("SimulationStore")(_store_with({"commit.json": "{not json"})), "error"),
        ("SimulationStore(path, mode='r').X", "a chunk of X with one bit flipped",
         lambda: _api("SimulationStore")(_store_damaged("X/c/0/0", "flip"), mode="r").X,
         "error"),
        ("SimulationStore(path).select()", "the chunk of X of rows marked ok was deleted",
         lambda: _api("SimulationStore")(_store_damaged("X/c/0/0", "delete")).select(),
         "error"),
        ("SimulationStore(path).theta", "a chunk of theta was deleted",
         lambda: _api("SimulationStore")(_store_damaged("theta/c/0/0", "delete")).theta,
         "error"),
        ("SimulationStore(path).verify()", "a chunk of X with one bit flipped",
         lambda: _api("SimulationStore")(_store_damaged("X/c/0/0", "flip")).verify().problems,
         "value"),
        ("SimulationStore.repair(path)", "a store whose commit.json was lost",
         lambda: _repair_summary(_store_with({}, remove="commit.json")), "value"),
        ("SimulationStore.repair(path)", "a store whose commit record is intact",
         lambda: _repair_summary(_store_with({})), "error"),
        ("SimulationStore.repair(path)", "a folder that is not a store",
         lambda: _repair_summary(_folder({"thesis.tex": "x"})), "error"),
        ("SimulationStore(path)", "temporary files of a writer killed mid-write",
         lambda: sorted(os.listdir(_api("SimulationStore")(_store_with(
             {".commit.json." + "0" * 32 + ".tmp": "half"})).path)), "value"),
    ],
    "tmnre": [
        ("TMNRE(simulator, ...).fit(x_o)", "simulator not callable",
         lambda: _api("TMNRE")(42, _fixtures()["prior"], estimator=_new_estimator(),
                               n_sims=32, max_rounds=1).fit(np.zeros(2)), "error"),
        ("TMNRE(..., n_sims=...).fit(x_o)", "n_sims=0",
         lambda: _api("TMNRE")(_simulator, _fixtures()["prior"], estimator=_new_estimator(),
                               n_sims=0, max_rounds=1).fit(np.zeros(2)), "error"),
        ("TMNRE(..., max_rounds=...).fit(x_o)", "max_rounds=0",
         lambda: _api("TMNRE")(_simulator, _fixtures()["prior"], estimator=_new_estimator(),
                               n_sims=32, max_rounds=0).fit(np.zeros(2)), "error"),
        ("TMNRE(...).fit(x_o)", "x_o with NaN",
         lambda: _api("TMNRE")(_simulator, _fixtures()["prior"], estimator=_new_estimator(),
                               n_sims=32, max_rounds=1).fit(np.array([np.nan, 0.0])), "error"),
        ("TMNRE(..., store=...).fit(x_o)", "a store path under a file (/dev/null)",
         lambda: _api("TMNRE")(_simulator, _fixtures()["prior"], estimator=_new_estimator(),
                               n_sims=32, max_rounds=1,
                               store=os.devnull + "/sims.zarr").fit(np.zeros(2)), "oserror"),
    ],
}


def _short(text):
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


def _outcome(thunk, expected):
    """Run one case; return (kind, type name or None, text, ok)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = thunk()
        except _Pending as exc:
            return "pending", None, f"not implemented yet ({exc})", True
        except Exception as exc:  # noqa: BLE001 - every outcome is a row of the table
            allowed = {"error": (ValueError, TypeError), "oserror": (OSError,)}.get(expected, ())
            ok = isinstance(exc, allowed)
            return "error", type(exc).__name__, _short(exc), ok
    relevant = [w for w in caught if not issubclass(w.category, DeprecationWarning)]
    if relevant:
        w = relevant[0]
        return "warning", w.category.__name__, _short(w.message), expected == "warning"
    return "value", None, "no error; returns " + _short(_describe(value)), expected == "value"


def _describe(value):
    if isinstance(value, pd.DataFrame | np.ndarray):
        return f"{type(value).__name__} of shape {value.shape}: {np.asarray(value).ravel()[:4]}"
    return repr(value)


def _cell(*children):
    entry = nodes.entry()
    para = nodes.paragraph()
    para.extend(children)
    entry += para
    return entry


class BadInputTable(Directive):
    """``.. bad-input-table:: <group>``: a table of calls, bad inputs and their outcome."""

    required_arguments = 1

    def run(self):
        group = self.arguments[0]
        if group not in GROUPS:
            raise self.error(f"bad-input-table: unknown group {group!r}; use one of "
                             f"{sorted(GROUPS)}.")
        table = nodes.table(classes=["bad-input"])
        tgroup = nodes.tgroup(cols=3)
        table += tgroup
        for width in (22, 26, 52):
            tgroup += nodes.colspec(colwidth=width)
        head = nodes.thead()
        row = nodes.row()
        for title in ("Call", "Bad input", "Result"):
            row += _cell(nodes.Text(title))
        head += row
        tgroup += head
        body = nodes.tbody()
        for call, bad, thunk, expected in GROUPS[group]:
            kind, name, text, ok = _outcome(thunk, expected)
            result = []
            if not ok:
                result.append(nodes.strong(text="⚠ breaks the contract: "))
            if kind == "pending":
                result.append(nodes.emphasis(text=text))
            elif name is None:
                result.append(nodes.Text(text))
            else:
                # Literal text: shown verbatim, without typographic quotes.
                result += [nodes.strong(text=name), nodes.Text(": "), nodes.literal(text=text)]
            row = nodes.row()
            row += _cell(nodes.literal(text=call))
            row += _cell(nodes.Text(bad))
            row += _cell(*result)
            body += row
        tgroup += body
        return [table]


def _always_reread(app, env, added, changed, removed):
    # The tables show what the installed library does, which changes without any
    # change to the .rst sources: pages using the directive are re-read every build.
    return [doc for doc in env.found_docs if doc in getattr(env, "bad_input_docs", set())]


def _record_docs(app, doctree):
    env = app.env
    if not hasattr(env, "bad_input_docs"):
        env.bad_input_docs = set()
    if any("bad-input" in table["classes"] for table in doctree.findall(nodes.table)):
        env.bad_input_docs.add(env.docname)


def _purge_doc(app, env, docname):
    getattr(env, "bad_input_docs", set()).discard(docname)


def _merge_info(app, env, docnames, other):
    env.bad_input_docs = getattr(env, "bad_input_docs", set()) | getattr(
        other, "bad_input_docs", set())


def setup(app):
    app.add_directive("bad-input-table", BadInputTable)
    app.connect("doctree-read", _record_docs)
    app.connect("env-purge-doc", _purge_doc)
    app.connect("env-merge-info", _merge_info)
    app.connect("env-get-outdated", _always_reread)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
