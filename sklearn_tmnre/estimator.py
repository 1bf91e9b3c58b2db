"""TMNREEstimator: marginal neural ratio estimation with a scikit-learn face.

A classifier :math:`f_m(x, \\theta_m)` per marginal is trained to tell joint
pairs :math:`(x, \\theta) \\sim p(x, \\theta)` from marginal pairs
:math:`(x, \\theta') \\sim p(x)p(\\theta)`; at the optimum of the binary
cross-entropy its logit is :math:`\\log p(\\theta_m \\mid x) / p(\\theta_m)`
(Hermans et al. 2020; Miller et al. 2021, "Truncated marginal neural ratio
estimation").  The network (:mod:`sklearn_tmnre.networks`) shares one
embedding of ``x`` across all marginals; training runs in skorch
(:mod:`sklearn_tmnre._training`); posteriors are read off grids
(:mod:`sklearn_tmnre.posterior`).
"""

from __future__ import annotations

import itertools
import numbers

import numpy as np
import pandas as pd
import torch
from scipy import stats
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch.callbacks import EarlyStopping, LRScheduler, ProgressBar

from ._grids import grid_logits, grid_masses
from ._training import PairData, RatioLoss, RatioNet, ValidationSplit
from .networks import RatioEnsemble, RatioNetwork, make_embedding
from .posterior import MarginalPosterior
from .prior import Prior

__all__ = ["TMNREEstimator"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _marginal_label(marginal):
    return "|".join(marginal)


class TMNREEstimator(RegressorMixin, BaseEstimator):
    """Marginal neural ratio estimator of 1-d and 2-d posteriors.

    Parameters
    ----------
    prior : Prior, optional
        The prior the training parameters were drawn from. Without one, the
        training parameters themselves serve as prior samples (a histogram per
        parameter) and densities are relative to their distribution.
    marginals : {"1d", "2d", "1d+2d"} or list of tuple of str, default="1d"
        The marginals to learn; a list names them (``[("a",), ("a", "b")]``).
    embedding : str or torch.nn.Module class, default="mlp"
        ``"identity"``, ``"linear"``, ``"mlp"``, ``"cnn1d"``, ``"cnn2d"``, or a
        module class. Its own arguments are given as ``embedding__<arg>=value``
        (tunable by GridSearchCV), e.g. ``embedding__channels=(16, 32)`` or
        ``embedding__pooling="avg"`` for the CNNs (see
        :func:`sklearn_tmnre.networks.make_embedding`).
    embedding_dim : int, default=32
        Width of the embedding's output (not used by ``"identity"``).
    hidden_features : int, default=128
        Width of each marginal head.
    num_blocks : int, default=3
        Residual blocks per head. Wide, deep heads sharpen 2-d marginals: on
        two moons at 10^4 simulations (one negative), 128 x 3 gave a 2-d C2ST
        of 0.69 where 64 x 2 gave 0.74 (``benchmarks/bench_estimator.py``).
    dropout : float, default=0.0
        Dropout inside the heads.
    balance : float, default=0.0
        Weight of the balancing penalty (balanced NRE); larger is more
        conservative.
    lr : float, default=1e-3
        AdamW learning rate.
    weight_decay : float, default=0.0
        AdamW weight decay.
    batch_size : int, default=256
        Pairs per training step.
    max_epochs : int, default=200
        Upper bound on training epochs.
    patience : int, default=60
        Early-stopping patience (epochs without validation improvement); the
        learning rate is divided by 5 after ``patience // 3`` such epochs.
        The best weights are restored at the end. Patience pays: the
        validation loss is dominated by the noisy 1-d terms, and an impatient
        schedule lowers the learning rate before the sharper 2-d heads have
        converged. On two moons at 10^4 simulations (``benchmarks/run.py``,
        seed 0, observations 1-3) patience 20 gave 2-d C2STs of 0.67 / 0.66 /
        0.69 after 76 epochs and patience 60 gave 0.57 / 0.60 / 0.59 after 200
        (the ``max_epochs`` cap), with better calibration too. Lower it for
        speed on easy problems.
    validation_fraction : float, default=0.1
        Held-out fraction for early stopping (0 disables validation).
    n_negatives : int, default=4
        Marginal (shuffled) pairs per joint pair in each step, each from a
        fresh derangement of the batch; more negatives lower the gradient
        noise at little cost (the embedding is shared). With the default
        heads, 4 negatives took the two-moons 2-d C2ST at 10^4 simulations
        from 0.69 to 0.54.
    n_ensemble : int, default=1
        Networks trained side by side (each with its own embedding and heads,
        differing in their initial weights); the logit is their mean. Costs
        ``n_ensemble`` times the training and evaluation time and cuts the
        run-to-run variance of the posteriors (see ``docs/benchmarks.md``).
    fourier_features : int, default=0
        Random Fourier features of the parameters per head (0 = off); help
        heads represent sharp, curved posteriors.
    fourier_scale : float, default=1.0
        Standard deviation of the Fourier frequencies (in standardized units).
    n_grid_1d : int, default=256
        Grid cells per parameter for 1-d posteriors.
    n_grid_2d : int, default=128
        Grid cells per parameter for 2-d posteriors.
    device : str, default="cpu"
        Torch device (``"cuda"`` for a GPU).
    random_state : int, RandomState or None
        Seeds weight initialization, batches and negatives.
    verbose : int, default=0
        1 prints the per-epoch table, 2 also shows a progress bar.
    callbacks : list of skorch callbacks, optional
        Extra callbacks passed to the skorch net.
    **embedding_params
        ``embedding__<arg>`` arguments of the embedding network.

    Attributes
    ----------
    prior_ : Prior
        The prior over ``names_`` (the given one, or a histogram of the training parameters).
    names_ : list of str
        Parameter names.
    marginals_ : list of tuple of str
        The learned marginals.
    log_ratio_columns_ : list of str
        Column labels of :meth:`log_ratio` (``"a"``, ``"a|b"``).
    event_shape_ : tuple of int
        Shape of one observation.
    n_features_in_ : int
        ``X.shape[1]`` at fit.
    net_ : skorch.NeuralNet
        The trained skorch net; ``net_.module_`` is the
        :class:`~sklearn_tmnre.networks.RatioNetwork`, ``net_.history`` the losses.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> from sklearn_tmnre import Prior, TMNREEstimator
    >>> prior = Prior({"mu": stats.uniform(-2, 4)})
    >>> theta = prior.sample(400, random_state=0)
    >>> X = theta.to_numpy() + 0.3 * np.random.default_rng(0).standard_normal((400, 1))
    >>> est = TMNREEstimator(prior=prior, max_epochs=5, random_state=0).fit(X, theta)
    >>> est.predict(X[:2]).shape
    (2, 1)
    """

    def __init__(
        self,
        prior=None,
        marginals="1d",
        embedding="mlp",
        embedding_dim=32,
        hidden_features=128,
        num_blocks=3,
        dropout=0.0,
        balance=0.0,
        lr=1e-3,
        weight_decay=0.0,
        batch_size=256,
        max_epochs=200,
        patience=60,
        validation_fraction=0.1,
        n_negatives=4,
        n_ensemble=1,
        fourier_features=0,
        fourier_scale=1.0,
        n_grid_1d=256,
        n_grid_2d=128,
        device="cpu",
        random_state=None,
        verbose=0,
        callbacks=None,
        **embedding_params,
    ):
        self.prior = prior
        self.marginals = marginals
        self.embedding = embedding
        self.embedding_dim = embedding_dim
        self.hidden_features = hidden_features
        self.num_blocks = num_blocks
        self.dropout = dropout
        self.balance = balance
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.n_negatives = n_negatives
        self.n_ensemble = n_ensemble
        self.fourier_features = fourier_features
        self.fourier_scale = fourier_scale
        self.n_grid_1d = n_grid_1d
        self.n_grid_2d = n_grid_2d
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        unexpected = sorted(k for k in embedding_params if not k.startswith("embedding__"))
        if unexpected:
            # Reported by fit: scikit-learn estimators never raise in __init__.
            self._unexpected_params = unexpected
        for key, value in embedding_params.items():
            if key.startswith("embedding__"):
                setattr(self, key, value)

    # ----------------------------------------------------- sklearn plumbing
    def get_params(self, deep=True):
        params = super().get_params(deep=deep)
        params.update({k: v for k, v in vars(self).items() if k.startswith("embedding__")})
        return params

    def set_params(self, **params):
        emb = {k: params.pop(k) for k in list(params) if k.startswith("embedding__")}
        for key, value in emb.items():
            setattr(self, key, value)
        return super().set_params(**params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags

    def _embedding_params(self):
        return {k[len("embedding__"):]: v for k, v in vars(self).items()
                if k.startswith("embedding__")}

    def _check_hyperparameters(self):
        unexpected = getattr(self, "_unexpected_params", None)
        if unexpected:
            raise TypeError(f"TMNREEstimator got unexpected arguments {unexpected}; embedding "
                            "arguments are spelled embedding__<arg>.")
        def positive_int(name, minimum=1):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")

        for name in ("embedding_dim", "hidden_features", "max_epochs", "patience"):
            positive_int(name)
        positive_int("num_blocks", 0)
        positive_int("n_negatives", 1)
        positive_int("n_ensemble", 1)
        positive_int("fourier_features", 0)
        if not (isinstance(self.fourier_scale, numbers.Real) and self.fourier_scale > 0):
            raise ValueError(f"fourier_scale must be a positive number; got "
                             f"{self.fourier_scale!r}.")
        positive_int("batch_size", 2)
        positive_int("n_grid_1d", 2)
        positive_int("n_grid_2d", 2)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}.")
        if not (isinstance(self.balance, numbers.Real) and self.balance >= 0):
            raise ValueError(f"balance must be a number >= 0; got {self.balance!r}.")
        if not (isinstance(self.lr, numbers.Real) and self.lr > 0):
            raise ValueError(f"lr must be a positive number; got {self.lr!r}.")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be in [0, 1); got {self.validation_fraction!r}.")
        if self.prior is not None and not isinstance(self.prior, Prior):
            raise TypeError(f"prior must be a sklearn_tmnre.Prior or None; got "
                            f"{type(self.prior).__name__}.")

    # ------------------------------------------------------------ validation
    def _parameter_names(self, y):
        """Names of the parameters in ``y`` and y as a float array in that order."""
        if isinstance(y, pd.Series):
            y = y.to_frame()
        if isinstance(y, pd.DataFrame):
            names = [str(c) for c in y.columns]
            y = y.set_axis(names, axis=1)
            if len(set(names)) != len(names):
                raise ValueError(f"y has duplicate column names {names}.")
            if self.prior is not None:
                unknown = sorted(set(names) - set(self.prior.names))
                missing = [n for n in self.prior.names if n not in names]
                if unknown:
                    raise ValueError(f"y has columns {unknown} that are not in the prior's "
                                     f"parameters {self.prior.names}.")
                if missing:
                    raise ValueError(f"y lacks the prior's parameters {missing}.")
                names = list(self.prior.names)
                y = y[names]
            return names, y
        if y is None:
            raise ValueError("TMNREEstimator requires y to be passed, but the target y is None: "
                             "pass the parameters theta the data were simulated from.")
        arr = np.asarray(y)
        if arr.ndim not in (1, 2):
            raise ValueError(f"y must have shape (n,) or (n, D); got shape {arr.shape}.")
        n_params = 1 if arr.ndim == 1 else arr.shape[1]
        if self.prior is not None:
            if n_params != self.prior.ndim:
                raise ValueError(f"y has {n_params} parameter column(s) but the prior has "
                                 f"{self.prior.ndim} ({self.prior.names}).")
            return list(self.prior.names), y
        return [f"theta_{i}" for i in range(max(n_params, 1))], y

    def _resolve_marginals(self, names):
        spec = self.marginals
        if isinstance(spec, str):
            table = {
                "1d": [(n,) for n in names],
                "2d": list(itertools.combinations(names, 2)),
                "1d+2d": [(n,) for n in names] + list(itertools.combinations(names, 2)),
            }
            if spec not in table:
                raise ValueError(f"marginals={spec!r} is unknown; use '1d', '2d', '1d+2d' or a "
                                 "list of tuples of parameter names.")
            out = table[spec]
            if not out:
                raise ValueError(f"marginals={spec!r} needs at least two parameters; there is "
                                 f"only {names}.")
            return out
        out = []
        for m in spec:
            m = (m,) if isinstance(m, str) else tuple(m)
            unknown = [n for n in m if n not in names]
            if unknown:
                raise ValueError(f"marginal {m} names unknown parameters {unknown}; the "
                                 f"parameters are {names}.")
            if len(set(m)) != len(m) or not m:
                raise ValueError(f"marginal {m} must name distinct parameters.")
            if m in out:
                raise ValueError(f"marginal {m} is listed twice.")
            out.append(m)
        if not out:
            raise ValueError("marginals is an empty list.")
        return out

    def _validate_X(self, X, reset):
        X = validate_data(self, X, reset=reset, allow_nd=True, dtype=(np.float64, np.float32),
                          ensure_min_samples=1)
        if np.abs(X).max(initial=0.0) > _FLOAT32_MAX:
            raise ValueError("X has values beyond float32's range (the network computes in "
                             "float32); rescale the data.")
        if reset:
            self.event_shape_ = tuple(X.shape[1:])
        elif tuple(X.shape[1:]) != self.event_shape_:
            raise ValueError(f"X has event shape {tuple(X.shape[1:])} but the estimator was "
                             f"fitted on {self.event_shape_}.")
        return X

    def _validate_theta(self, theta, n, argname="theta"):
        """Parameters as float array (n, D) in ``names_`` order, checked against the prior."""
        if isinstance(theta, pd.Series):
            theta = theta.to_frame()
        if isinstance(theta, pd.DataFrame):
            theta = theta.set_axis([str(c) for c in theta.columns], axis=1)
            dups = sorted(set(theta.columns[theta.columns.duplicated()]))
            if dups:
                raise ValueError(f"{argname} has duplicate column names {dups}.")
            missing = [c for c in self.names_ if c not in theta.columns]
            if missing:
                raise ValueError(f"{argname} lacks columns {missing}; expected {self.names_}.")
            theta = theta[self.names_]
        arr = np.asarray(theta)
        try:
            if arr.dtype.kind not in "biuf" and arr.dtype != object:
                raise TypeError
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{argname} must hold numeric parameter values; got dtype "
                            f"{arr.dtype} (Unknown label type for a ratio estimator).") from None
        if arr.ndim == 1 and len(self.names_) == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != len(self.names_):
            raise ValueError(f"{argname} must have shape (n, {len(self.names_)}) for parameters "
                             f"{self.names_}; got {arr.shape}.")
        if len(arr) != n:
            raise ValueError(f"X and {argname} have different numbers of rows ({n} and "
                             f"{len(arr)}).")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{argname} contains NaN or infinite values.")
        if np.abs(arr).max(initial=0.0) > _FLOAT32_MAX:
            raise ValueError(f"{argname} has values beyond float32's range (the network "
                             "computes in float32); rescale the parameters.")
        return arr

    def _check_support(self, theta, argname):
        """With a known prior, parameters outside its support are an error."""
        if self.prior is not None:
            outside = ~self.prior_.contains(theta)
            if outside.any():
                raise ValueError(
                    f"{argname} has {int(outside.sum())} row(s) outside the prior's support "
                    f"(first: row {int(np.flatnonzero(outside)[0])}); the ratio is undefined "
                    "there.")

    # ----------------------------------------------------------------- fit
    def fit(self, X, y):
        """Train the ratio network on simulations.

        Parameters
        ----------
        X : array-like of shape (n, *event_shape)
            Simulated data (vectors, spectra, images).
        y : DataFrame, array-like of shape (n, D) or (n,)
            The parameters each row was simulated from.

        Returns
        -------
        self : TMNREEstimator
        """
        self._check_hyperparameters()
        # Like scikit-learn regressors: a 1-d target gives 1-d predictions.
        y_1d = isinstance(y, pd.Series) or (
            y is not None and not isinstance(y, pd.DataFrame) and np.asarray(y).ndim == 1)
        names, y = self._parameter_names(y)
        X = self._validate_X(X, reset=True)
        self.names_ = names
        self._y_1d = y_1d
        theta = self._validate_theta(y, len(X), argname="y")
        if len(X) < 2:
            raise ValueError(f"TMNREEstimator needs at least 2 samples to form contrastive "
                             f"pairs; got {len(X)} sample (n_samples = 1).")
        if self.prior is not None:
            self.prior_ = self.prior
            self._check_support(theta, "y")
        else:
            self.prior_ = _histogram_prior(theta, names)
        self.marginals_ = self._resolve_marginals(names)
        self.log_ratio_columns_ = [_marginal_label(m) for m in self.marginals_]

        rng = check_random_state(self.random_state)
        seed = int(rng.randint(2**31 - 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net_ = self._build_net(X, theta, seed)
            self.net_.fit(PairData(_float_tensor(X), _float_tensor(theta)), None)
        self.net_.module_.eval()
        return self

    def _build_net(self, X, theta, seed):
        x32 = X.astype(np.float32)
        if self.embedding in ("cnn1d", "cnn2d"):
            # Images and spectra keep their spatial structure: one global scale.
            x_mean, x_std = x32.mean(), x32.std()
        else:
            x_mean, x_std = x32.mean(axis=0), x32.std(axis=0)
        x_std = np.where(x_std > 0, x_std, 1.0)
        t_mean, t_std = theta.mean(axis=0), theta.std(axis=0)
        t_std = np.where(t_std > 0, t_std, 1.0)
        indices = [tuple(self.names_.index(n) for n in m) for m in self.marginals_]
        module, _ = build_ratio_network(self, self.event_shape_, indices, x_mean, x_std,
                                        t_mean, t_std)
        split = ValidationSplit(self.validation_fraction, seed)
        # Tiny data sets get no validation split; then the training loss is watched.
        monitor = "valid_loss" if split.n_valid(len(X)) else "train_loss"
        callbacks = [
            ("early_stopping", EarlyStopping(monitor=monitor, patience=self.patience,
                                             load_best=True,
                                             sink=print if self.verbose else _silent)),
            ("lr_schedule", LRScheduler(policy="ReduceLROnPlateau", monitor=monitor,
                                        factor=0.2, patience=max(1, self.patience // 3))),
        ]
        if self.verbose > 1:
            callbacks.append(("progress_bar", ProgressBar()))
        callbacks += list(self.callbacks or [])
        return RatioNet(
            module,
            criterion=RatioLoss,
            criterion__balance=self.balance,
            optimizer=torch.optim.AdamW,
            optimizer__weight_decay=self.weight_decay,
            lr=self.lr,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            train_split=split,
            callbacks=callbacks,
            device=self.device,
            verbose=max(0, int(self.verbose)),
            iterator_seed=seed,
            n_negatives=self.n_negatives,
        )

    # ------------------------------------------------------------ inference
    def _observations(self, X, argname="X", allow_single=False):
        """Validate observations to float32 (n, *event_shape); an event-shaped X is one row."""
        check_is_fitted(self)
        if allow_single:
            arr = np.asarray(X)
            if arr.shape == self.event_shape_:
                X = arr[None]
            elif arr.ndim == len(self.event_shape_):
                raise ValueError(f"{argname} has shape {arr.shape}; one observation must have "
                                 f"the event shape {self.event_shape_} of the training data "
                                 f"(several: shape (n, *{self.event_shape_})).")
        return self._validate_X(X, reset=False)

    @torch.no_grad()
    def _embed(self, X):
        net = self.net_.module_
        device = self.net_.device
        chunks = [net.embed(_float_tensor(X[i:i + 4096]).to(device))
                  for i in range(0, len(X), 4096)]
        return torch.cat(chunks)

    @torch.no_grad()
    def log_ratio(self, X, theta):
        """Log ratio ``log p(theta_m | x) / p(theta_m)`` of every marginal for matched rows.

        Parameters
        ----------
        X : array-like of shape (n, *event_shape)
        theta : DataFrame or array-like of shape (n, D)

        Returns
        -------
        DataFrame of shape (n, n_marginals); columns as ``log_ratio_columns_``.
        """
        X = self._observations(X)
        th = self._validate_theta(theta, len(X))
        self._check_support(th, "theta")
        net = self.net_.module_
        out = []
        for i in range(0, len(X), 4096):
            s = self._embed(X[i:i + 4096])
            t = torch.as_tensor(th[i:i + 4096, None, :], dtype=torch.float32, device=s.device)
            out.append(net.logits_from_embedding(s, t)[:, 0].cpu().numpy())
        return pd.DataFrame(np.concatenate(out).astype(np.float64),
                            columns=self.log_ratio_columns_)

    def _grid_marginals(self):
        return [m for m in self.marginals_ if len(m) <= 2]

    def _grid_logits(self, X, dims=(1, 2)):
        """Logits on the grids; see :func:`sklearn_tmnre._grids.grid_logits`."""
        return grid_logits(self, X, dims=dims)

    def _grid_masses(self, X, dims=(1, 2)):
        """Normalized cell masses on the grids; see :func:`sklearn_tmnre._grids.grid_masses`."""
        return grid_masses(self, X, dims=dims)

    def posterior(self, X):
        """Marginal posteriors of one observation, or a list of them for several.

        Parameters
        ----------
        X : array-like of shape event_shape, (1, *event_shape) or (n, *event_shape)
            All grids of all observations are evaluated in one vectorized pass.

        Returns
        -------
        MarginalPosterior or list of MarginalPosterior
        """
        arr = np.asarray(X)
        single = (arr.shape == getattr(self, "event_shape_", None)
                  or (arr.ndim > 0 and len(arr) == 1))
        X = self._observations(X, allow_single=True)
        axes, masses = self._grid_masses(X)
        posts = [MarginalPosterior(self._grid_marginals(), axes,
                                   {m: v[i] for m, v in masses.items()}, estimator=self, x=X[i])
                 for i in range(len(X))]
        return posts[0] if single else posts

    def _one_d_summaries(self, X, fn):
        axes, masses = self._grid_masses(self._observations(X), dims=(1,))
        missing = [n for n in self.names_ if (n,) not in masses]
        if missing:
            raise ValueError(f"parameters {missing} have no 1-d or 2-d marginal; add them to "
                             "`marginals` to predict them.")
        return fn(axes, masses)

    def predict(self, X):
        """Posterior means of every parameter from its 1-d marginal.

        Parameters
        ----------
        X : array-like of shape (n, *event_shape)

        Returns
        -------
        ndarray of shape (n, D), or (n,) if fitted with a 1-d ``y``
        """
        def means(axes, masses):
            return np.column_stack([masses[(n,)] @ axes[(n,)][0][0] for n in self.names_])

        out = self._one_d_summaries(X, means)
        return out[:, 0] if getattr(self, "_y_1d", False) else out

    def predict_interval(self, X, coverage=0.9, kind="central"):
        """Credible intervals of every parameter.

        Parameters
        ----------
        X : array-like of shape (n, *event_shape)
        coverage : float, default=0.9
            Credibility level in (0, 1).
        kind : {"central", "hpd"}
            Equal-tailed intervals, or the extent of the highest-density region.

        Returns
        -------
        DataFrame of shape (n, 2 D), columns ``(parameter, "lower"/"upper")``
        """
        if not 0 < coverage < 1:
            raise ValueError(f"coverage must be in (0, 1); got {coverage!r}.")
        if kind not in ("central", "hpd"):
            raise ValueError(f"kind must be 'central' or 'hpd'; got {kind!r}.")

        def intervals(axes, masses):
            cols = {}
            for n in self.names_:
                (c, w), = axes[(n,)]
                m = masses[(n,)]
                if kind == "central":
                    edges = np.concatenate([[c[0] - w / 2], c + w / 2])
                    cdf = np.concatenate([np.zeros((len(m), 1)), np.cumsum(m, axis=1)], axis=1)
                    lo = [np.interp((1 - coverage) / 2, cdf_i, edges) for cdf_i in cdf]
                    hi = [np.interp((1 + coverage) / 2, cdf_i, edges) for cdf_i in cdf]
                else:
                    order = np.argsort(-m, axis=1)
                    sorted_m = np.take_along_axis(m, order, axis=1)
                    k = (np.cumsum(sorted_m, axis=1) < coverage).sum(axis=1) + 1
                    keep = np.arange(m.shape[1])[None] < k[:, None]
                    chosen = np.where(keep, c[order], np.nan)
                    lo, hi = np.nanmin(chosen, axis=1) - w / 2, np.nanmax(chosen, axis=1) + w / 2
                cols[(n, "lower")], cols[(n, "upper")] = lo, hi
            return pd.DataFrame(cols)

        return self._one_d_summaries(X, intervals)

    def score(self, X, y):
        """Mean normalized log posterior density of the true parameters (higher is better).

        For each pair and each 1-d marginal (2-d ones if there are no 1-d heads):
        ``log r(x, theta*) - log E_prior[r(x, theta)]``, plus ``log p(theta*)``
        when a prior was given, so it is the log density of ``theta*`` under the
        estimated marginal posterior.

        Parameters
        ----------
        X : array-like of shape (n, *event_shape)
        y : DataFrame or array-like of shape (n, D)

        Returns
        -------
        float
        """
        X = self._observations(X)
        theta = self._validate_theta(y, len(X), argname="y")
        self._check_support(theta, "y")
        has_1d = any(len(m) == 1 for m in self.marginals_)
        axes, logits, log_prior = self._grid_logits(X, dims=(1,) if has_1d else (2,))
        use = list(logits)
        lr = self.log_ratio(X, theta)
        terms = []
        for m in use:
            volume = np.prod([w for _, w in axes[m]])
            lg = (logits[m] + log_prior[m]).reshape(len(X), -1)
            log_z = logsumexp(lg, axis=1) + np.log(volume)
            value = lr[_marginal_label(m)].to_numpy() - log_z
            if self.prior is not None:
                idx = [self.names_.index(n) for n in m]
                value = value + self.prior_.marginal(list(m)).log_prob(theta[:, idx])
            terms.append(value)
        return float(np.mean(terms))


    # ---------------------------------------------------------- persistence
    def save(self, path, *, overwrite=False):
        """Save the fitted estimator to a directory, without pickle.

        Hyperparameters, prior and fitted metadata go to JSON; weights to a
        tensor file loaded with ``weights_only=True``. See
        :func:`sklearn_tmnre.persistence.save_estimator`.

        Parameters
        ----------
        path : str or Path
            Directory to create.
        overwrite : bool, default=False
            Replace an existing model directory at ``path`` (refused otherwise,
            so a saved model is never clobbered by accident).

        Returns
        -------
        pathlib.Path
            The model directory.
        """
        from .persistence import save_estimator

        return save_estimator(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path, *, device="cpu", trust_embedding=False):
        """Load an estimator saved by :meth:`save` (no code runs from the files).

        Parameters
        ----------
        path : str or Path
        device : str, default="cpu"
            Where to place the weights (a CUDA-trained model loads on a
            machine without CUDA with the default).
        trust_embedding : bool, default=False
            Allow importing a custom embedding class recorded in the files
            (importing a module runs its code).

        Returns
        -------
        TMNREEstimator
        """
        from .persistence import load_estimator

        return load_estimator(path, cls=cls, device=device, trust_embedding=trust_embedding)


def _float_tensor(a):
    """A float32 tensor of ``a``, sharing memory where it can.

    A read-only array (a memory-mapped file, a broadcast view) is copied first:
    torch cannot share memory with it without warning that writes would be
    undefined behaviour.
    """
    a = np.asarray(a, dtype=np.float32)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(np.ascontiguousarray(a))


def _silent(*args, **kwargs):
    """A print sink that prints nothing (skorch callbacks' ``sink``)."""


def _histogram_prior(theta, names):
    """A Prior of per-parameter histograms of the training parameters (``prior=None``)."""
    dists = {}
    for j, name in enumerate(names):
        col = theta[:, j]
        lo, hi = col.min(), col.max()
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        bins = int(np.clip(np.sqrt(len(col)), 4, 100))
        # Called with no arguments: a frozen distribution, like every prior component.
        dists[name] = stats.rv_histogram(np.histogram(col, bins=bins, range=(lo, hi)),
                                         density=True)()
    return Prior(dists)


def build_ratio_network(estimator, event_shape, indices, x_mean, x_std, theta_mean, theta_std):
    """The (untrained) network of an estimator's hyperparameters.

    One :class:`~sklearn_tmnre.networks.RatioNetwork`, or a
    :class:`~sklearn_tmnre.networks.RatioEnsemble` of ``n_ensemble`` of them,
    each with its own embedding. Used by ``fit`` and by model loading.

    Parameters
    ----------
    estimator : TMNREEstimator
        Its hyperparameters (embedding, heads, ``n_ensemble``) shape the network.
    event_shape : tuple of int
        Shape of one observation.
    indices : list of tuple of int
        Parameter columns of each marginal, in output order.
    x_mean, x_std, theta_mean, theta_std : array-like
        Standardization of data and parameters.

    Returns
    -------
    module : torch.nn.Module
    embedding_features : int
        Width of one member's embedding.
    """
    members = []
    for _ in range(estimator.n_ensemble):
        embedding, n_features = make_embedding(estimator.embedding, event_shape,
                                               estimator.embedding_dim,
                                               **estimator._embedding_params())
        members.append(RatioNetwork(
            embedding, n_features, indices, x_mean, x_std, theta_mean, theta_std,
            hidden_features=estimator.hidden_features, num_blocks=estimator.num_blocks,
            dropout=estimator.dropout, fourier_features=estimator.fourier_features,
            fourier_scale=estimator.fourier_scale))
    module = members[0] if len(members) == 1 else RatioEnsemble(members)
    return module, n_features
