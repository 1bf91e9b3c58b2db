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

import warnings

import numpy as np
import pandas as pd
import torch
from scipy import stats
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from ._build import float_tensor, make_ratio_net
from ._checks import (
    FLOAT32_MAX,
    PARAMETER_CONSTRAINTS,
    check_hyperparameters,
    check_support,
    int_seed,
    marginal_label,
    parameter_names,
    resolve_marginals,
    validate_theta,
)
from ._grids import (
    check_grid_marginals,
    grid_masses,
    row_axes,
    zoomed_grid_masses,
    zoomed_log_densities,
)
from ._streaming import store_training_data
from ._threads import torch_compute
from ._training import PairData, check_training
from .fields import check_field_values, field_probabilities
from .objects import check_object_data, resolve_object_marginals
from .posterior import MarginalPosterior, class_quantile, class_set_extent, hpd_extent
from .prior import Prior
from .sets import check_padding, is_set_embedding
from .store import SimulationStore

__all__ = ["TMNREEstimator"]

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
        With a prior of per-object parameters (:meth:`Prior.with_objects
        <sklearn_tmnre.Prior.with_objects>`), every object's 1-d marginal is
        learned by one shared-weight head per block (:mod:`sklearn_tmnre.objects`);
        ``("z[*]",)`` in a list stands for all of block ``z``'s 1-d marginals,
        and ``"2d"`` / ``"1d+2d"`` add the 2-d marginals of the global
        parameters only (per-object parameters have 1-d marginals only).
    embedding : str or torch.nn.Module class, default="mlp"
        ``"identity"``, ``"linear"``, ``"mlp"``, ``"cnn1d"``, ``"cnn2d"``,
        ``"deepset"`` (a fixed number of exchangeable draws), ``"set"`` (sets of
        any element embedding, of varying size: see :mod:`sklearn_tmnre.sets`),
        ``"unet"`` (per-pixel features of images or signals, as field
        parameters need: see :mod:`sklearn_tmnre.unet`), or a module class. Its
        own arguments are given as ``embedding__<arg>=value`` (tunable by
        GridSearchCV), e.g. ``embedding__channels=(16, 32)`` or
        ``embedding__pooling="avg"`` for the CNNs (see
        :func:`sklearn_tmnre.networks.make_embedding`).
    embedding_dim : int, default=32
        Width of the embedding's output (not used by ``"identity"``).
    hidden_features : int or "auto", default="auto"
        Width of each marginal head. ``"auto"`` scales it with the number of
        marginals M so that the heads cost about the same whatever M:
        ``64 * sqrt(3 / M)`` rounded to a multiple of 8, between 16 and 64 (64
        for the three marginals of two parameters, 32 for the 15 of five, 16
        for 55 or more). Every object's marginal counts: a shared object head
        costs per object what a dense head costs, only its weights are shared.
        Wider heads sharpen curved 2-d posteriors, at a cost that grows as
        ``M * hidden_features**2``.
    num_blocks : int, default=2
        Residual blocks per head.
    dropout : float, default=0.0
        Dropout inside the heads.
    balance : float, default=0.0
        Weight of the balancing penalty (balanced NRE); larger is more
        conservative (``loss="bce"`` only).
    loss : {"bce", "contrastive"}, default="bce"
        The ratio loss (:mod:`sklearn_tmnre.loss`). ``"bce"``: binary
        cross-entropy of each row's own parameters against its ``n_negatives``
        shuffled ones. ``"contrastive"``: NRE-C (Miller et al. 2022, sbi's
        ``NRE_C``), which classifies sets of ``n_negatives`` parameters by
        which one, if any, is the row's own; it reads the same logits, so a
        step costs about the same. Field cells have their own (``field_loss``).
    field_loss : {"posterior", "ratio"}, default="posterior"
        The loss of field cells (:meth:`Prior.with_field
        <sklearn_tmnre.Prior.with_field>`; :mod:`sklearn_tmnre.loss`).
        ``"posterior"``: the cross-entropy of each cell's posterior probability,
        in units of its prior's. ``"ratio"``: the binary ratio loss with both
        values of the cell as exact negatives; same optimum, but slow to learn
        rare values (on the subhalo example, a third of the Brier skill at the
        same cost). Ignored without fields.
    lr : float, default=5e-3
        Peak AdamW learning rate (see ``lr_schedule``).
    weight_decay : float, default=0.0
        AdamW weight decay.
    batch_size : int, default=256
        Joint pairs per training step.
    max_epochs : int or "auto", default="auto"
        The epoch budget, over which the ``"cosine"`` schedule runs. ``"auto"``
        derives it from the data: about 3,000 training steps at 10^4 training
        pairs, growing as the square root of their number, between 10 and 300
        epochs (79 epochs for 10^4 simulations with the default batches and
        validation split, 225 for 10^3, 26 for 10^5). What counts for accuracy
        is the number of steps: more data need fewer passes over them.
    patience : int, default=20
        Early stopping: training ends after ``patience`` epochs without a
        better validation loss, and the best weights are restored at the end.
        With ``lr_schedule="plateau"`` the learning rate is also divided by 5
        after ``patience // 3`` such epochs.
    max_time : float or None, default=None
        A wall-clock budget for training, in seconds: training stops at the
        end of an epoch when another epoch as long as the mean so far would
        end past it (so it overruns only when one epoch alone is longer), and
        the best weights are restored as after early stopping (the epoch is
        marked ``time_budget`` in ``net_.history``). It caps a fit in a grid search or on a busy
        machine; the schedule is not shortened, so a fit stopped this way ends
        at a higher learning rate than one that runs its budget (weight
        averaging smooths that). None: no budget.
    lr_schedule : {"cosine", "plateau"}, default="cosine"
        ``"cosine"``: a one-cycle schedule over the epoch budget, stepped every
        batch (a warm-up from ``lr / 10`` over the first 5 % of the steps, then
        a cosine decay to ``lr / 1000``). ``"plateau"``: constant ``lr``, divided
        by 5 whenever the validation loss stalls (the schedule before 0.2).
        See *Cost* in ``docs/benchmarks.md`` for the time-to-accuracy
        comparison that chose the defaults.
    ema_decay : float in [0, 1) or "auto", default="auto"
        Weight averaging: the weights that are validated, that early stopping
        keeps and restores, and that the fitted model ends with are an
        exponential moving average of the training weights, updated every
        step with this decay (0: no averaging). ``"auto"`` sets the average's
        time constant to 1/30 of the step budget (a decay of 0.99 for 10^4
        simulations). It removes the noise of the last steps from a model
        early-stopped at a high learning rate: on the ten-parameter Gaussian
        task at 10^4 simulations it lowers the C2ST from 0.55 to 0.53 (1-d)
        and from 0.57 to 0.55 (2-d) at the same cost (*Weight averaging* in
        ``docs/benchmarks.md``).
    n_threads : int or None, default=None
        Torch threads used by ``fit`` and by posterior evaluation (restored
        afterwards). None chooses: one thread for the vector embeddings
        (``"identity"``, ``"linear"``, ``"mlp"``, ``"deepset"``), whose small
        matrix products gain little from more (7 % faster for twice the CPU
        time with two on the two-moons benchmark); for convolutional and custom
        embeddings, the cores that are free when the call starts (the cores
        this process may use less the one-minute load average, at least one).
        More threads than free cores slows training many-fold on a shared
        machine.
    validation_fraction : float, default=0.1
        Held-out fraction for early stopping (0 disables validation).
    n_negatives : int, default=2
        Marginal (shuffled) pairs per joint pair in each step, each from a
        fresh derangement of the batch; more negatives lower the gradient
        noise, at a cost that grows as ``1 + n_negatives`` (at most 1,024).
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
        Grid cells per parameter for 1-d posteriors (at most 65,536).
    n_grid_2d : int, default=128
        Grid cells per parameter for 2-d posteriors (at most 4,096).
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
    field_prior_ : dict of str to ndarray of shape (n_bins,)
        Only with field parameters: each bin's prior frequency of value 1 (the
        training frequency over all pixels, plus half a count per outcome), the
        :math:`p_k` of :meth:`predict_field`; read from the network, so a
        loaded model has it too.
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

    _parameter_constraints: dict = dict(PARAMETER_CONSTRAINTS)

    def __init__(
        self,
        prior=None,
        marginals="1d",
        embedding="mlp",
        embedding_dim=32,
        hidden_features="auto",
        num_blocks=2,
        dropout=0.0,
        balance=0.0,
        loss="bce",
        field_loss="posterior",
        lr=5e-3,
        weight_decay=0.0,
        batch_size=256,
        max_epochs="auto",
        patience=20,
        max_time=None,
        lr_schedule="cosine",
        ema_decay="auto",
        n_threads=None,
        validation_fraction=0.1,
        n_negatives=2,
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
        self.loss = loss
        self.field_loss = field_loss
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.max_time = max_time
        self.lr_schedule = lr_schedule
        self.ema_decay = ema_decay
        self.n_threads = n_threads
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
        # Every keyword is stored, a misspelled one too: it stays among get_params, so
        # that clone keeps it and fit reports it (scikit-learn estimators never raise in
        # __init__), instead of a clone training silently with the default.
        for key, value in embedding_params.items():
            setattr(self, key, value)

    # ----------------------------------------------------- sklearn plumbing
    def _keyword_params(self):
        """Names of the keyword arguments stored beyond the signature's parameters."""
        declared = set(self._get_param_names())
        return [k for k in vars(self) if not k.startswith("_") and not k.endswith("_")
                and k not in declared]

    def get_params(self, deep=True):
        params = super().get_params(deep=deep)
        params.update({k: getattr(self, k) for k in self._keyword_params()})
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

    def _torch_compute(self):
        """Torch threads and denormal flushing of this estimator's fits and evaluations."""
        return torch_compute(self.n_threads, self.embedding)

    # ------------------------------------------------------------ validation
    def _validate_X(self, X, reset):
        # embedding="set" takes sets of varying size padded with all-NaN elements; NaN
        # anywhere else (and for every other embedding) stays an error.
        padded = is_set_embedding(self.embedding)
        X = validate_data(self, X, reset=reset, allow_nd=True, dtype=(np.float64, np.float32),
                          ensure_min_samples=1,
                          ensure_all_finite="allow-nan" if padded else True)
        if padded:
            check_padding(X)
        if np.nanmax(np.abs(X), initial=0.0) > FLOAT32_MAX:
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
        return validate_theta(theta, self.names_, n, argname)

    # ----------------------------------------------------------------- fit
    def fit(self, X, y=None, **fields):
        """Train the ratio network on simulations.

        Parameters
        ----------
        X : array-like of shape (n, *event_shape) or SimulationStore
            Simulated data (vectors, spectra, images). With a prior of N
            objects, shape (n, N, k) or (n, N): object i's k features in
            ``X[:, i]`` (the embedding still reads the whole observation).
            A :class:`~sklearn_tmnre.SimulationStore` trains on its
            successful rows, streamed a few chunks at a time
            (:meth:`SimulationStore.batches <sklearn_tmnre.SimulationStore.batches>`),
            so a campaign larger than memory trains in the memory of a few
            batches (and of ``theta``); the prior's parameters must be the
            store's columns.
        y : DataFrame, array-like of shape (n, D) or (n,)
            The parameters each row was simulated from (left out with a store).
        **fields : array-like of shape (n, *field_shape)
            The values (0/1 or bool) of the prior's field parameters
            (:meth:`Prior.with_field <sklearn_tmnre.Prior.with_field>`), one
            keyword per field, e.g. ``occupancy=occ``; see :meth:`predict_field`.

        Returns
        -------
        self : TMNREEstimator
        """
        check_hyperparameters(self)
        x_stats = None
        if isinstance(X, SimulationStore):
            # Campaigns larger than memory stream from the store (sklearn_tmnre._streaming).
            X, y, names, self.event_shape_, x_stats = store_training_data(self, X, y, fields)
            self.n_features_in_, y_1d = self.event_shape_[0], False
        else:
            # Like scikit-learn regressors: a 1-d target gives 1-d predictions.
            y_1d = isinstance(y, pd.Series) or (
                y is not None and not isinstance(y, pd.DataFrame) and np.asarray(y).ndim == 1)
            names, y = parameter_names(y, self.prior)
            X = self._validate_X(X, reset=True)
        self.names_ = names
        self._y_1d = y_1d
        theta = self._validate_theta(y, len(X), argname="y")
        if len(X) < 2:
            raise ValueError(f"TMNREEstimator needs at least 2 samples to form contrastive "
                             f"pairs; got {len(X)} sample (n_samples = 1).")
        if self.prior is not None:
            self.prior_ = self.prior
            check_support(self.prior, theta, "y")
        else:
            self.prior_ = _histogram_prior(theta, names)
        if self.prior is not None and self.prior.object_blocks:
            check_object_data(self.prior, self.event_shape_)
            self.marginals_ = resolve_object_marginals(self.marginals, self.prior, names)
        else:
            self.marginals_ = resolve_marginals(self.marginals, names)
        check_grid_marginals(self.prior, self.marginals_)
        self.log_ratio_columns_ = [marginal_label(m) for m in self.marginals_]
        field_values = check_field_values(self.prior, fields, len(X))

        seed = int_seed(self.random_state)
        with torch.random.fork_rng(devices=[]), self._torch_compute():
            torch.manual_seed(seed)
            self.net_ = make_ratio_net(self, X, theta, seed, fields=field_values,
                                       x_stats=x_stats)
            if x_stats is None:  # arrays (a store's rows stream as they are)
                X = PairData(float_tensor(X), float_tensor(theta), None if field_values
                             is None else torch.from_numpy(field_values))
            self.net_.fit(X, None)
        self.net_.module_.eval()
        check_training(self.net_.history)
        return self

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
        chunks = [net.embed(float_tensor(X[i:i + 4096]).to(device))
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
        check_support(self.prior, th, "theta")
        net = self.net_.module_
        out = []
        with self._torch_compute():
            for i in range(0, len(X), 4096):
                s = self._embed(X[i:i + 4096])
                t = torch.as_tensor(th[i:i + 4096, None, :], dtype=torch.float32,
                                    device=s.device)
                out.append(net.logits_from_embedding(s, t)[:, 0].cpu().numpy())
        return pd.DataFrame(np.concatenate(out).astype(np.float64),
                            columns=self.log_ratio_columns_)

    @property
    def field_prior_(self) -> dict:
        """Each field bin's prior frequency of value 1 (see the class's Attributes)."""
        check_is_fitted(self)
        net = self.net_.module_
        layout = getattr(net, "fields", None)
        if not layout:
            raise AttributeError("field_prior_: this estimator has no field parameters "
                                 "(declare one with Prior.with_field).")
        return {f["name"]: head.frequency.cpu().numpy().astype(np.float64)
                for f, head in zip(layout["fields"], net.field_heads)}

    @torch.no_grad()
    def predict_field(self, X, name: str | None = None) -> np.ndarray:
        """Posterior probability of value 1 in every cell of a field parameter.

        :math:`P(o_{k,p} = 1 \\mid x) = \\sigma(\\operatorname{logit} p_k + f_{k,p}(x, 1)
        - f_{k,p}(x, 0))`, with :math:`p_k` the training frequency of bin k (see
        :mod:`sklearn_tmnre.fields`).

        Parameters
        ----------
        X : array-like of shape (n, *event_shape)
        name : str, optional
            The field (a key of the prior's ``fields``); may be left out when
            there is only one.

        Returns
        -------
        ndarray of shape (n, *field_shape)
            Probabilities, e.g. (n, n_bins, H, W) occupancy maps (computed in
            double precision; only log-odds beyond about 37 round to 0 or 1).
        """
        X = self._observations(X)
        net = self.net_.module_
        layout = getattr(net, "fields", None)
        names = [f["name"] for f in layout["fields"]] if layout else []
        if name is None and len(names) == 1:
            name = names[0]
        if name not in names:
            raise ValueError(f"predict_field: {name!r} is not a field parameter of this "
                             f"estimator; its fields are {names} (declare one with "
                             "Prior.with_field).")
        k = names.index(name)
        head, shape = net.field_heads[k], layout["fields"][k]["shape"]
        out = []
        with self._torch_compute():
            for i in range(0, len(X), 256):
                s = self._embed(X[i:i + 256])
                pixels = s[:, net.embedding_features:].reshape(len(s), layout["pixel_features"],
                                                               -1)
                logits = head(s[:, :net.embedding_features], pixels)
                out.append(field_probabilities(logits, head.frequency).cpu().numpy())
        return np.concatenate(out).reshape(len(X), *shape)  # float64 already

    def _grid_marginals(self):
        return [m for m in self.marginals_ if len(m) <= 2]

    def _grid_masses(self, X, dims=(1, 2), zoom=True):
        """Normalized cell masses of validated observations on the posterior grids.

        Every reader of a fitted model's posterior (``posterior``, ``predict``,
        ``predict_interval``, the coverage metrics) comes through here, so all
        of them see the same grids: zoomed onto each observation's posterior
        (:func:`sklearn_tmnre._grids.zoomed_grid_masses`, axes of shape (n, G)),
        or over the prior's range with ``zoom=False``
        (:func:`sklearn_tmnre._grids.grid_masses`, axes shared by all rows).
        """
        with self._torch_compute():
            if zoom:
                return zoomed_grid_masses(self, X, dims=dims)
            return grid_masses(self, X, dims=dims)

    def posterior(self, X, zoom=True):
        """Marginal posteriors of one observation, or a list of them for several.

        Parameters
        ----------
        X : array-like of shape event_shape, (1, *event_shape) or (n, *event_shape)
            All grids of all observations are evaluated in one vectorized pass.
        zoom : bool, default=True
            Fit each observation's grids to its posterior: after a first pass
            over the prior's range, every parameter's grid is narrowed to the
            range that holds all but 1e-6 of its 1-d posterior mass on each side
            (plus two cells), and all marginals are evaluated again there with
            ``n_grid_1d`` / ``n_grid_2d`` cells (see
            :func:`sklearn_tmnre._grids.zoomed_grid_masses`). A posterior much
            narrower than the prior then still gets fine cells. ``False`` keeps
            grids over the prior's range, the same for every observation.

        Returns
        -------
        MarginalPosterior or list of MarginalPosterior
        """
        arr = np.asarray(X)
        single = (arr.shape == getattr(self, "event_shape_", None)
                  or (arr.ndim > 0 and len(arr) == 1))
        X = self._observations(X, allow_single=True)
        axes, masses = self._grid_masses(X, zoom=zoom)
        posts = [MarginalPosterior(self._grid_marginals(), row_axes(axes, i),
                                   {m: v[i] for m, v in masses.items()}, estimator=self, x=X[i])
                 for i in range(len(X))]
        return posts[0] if single else posts

    def _one_d_posteriors(self, X, what):
        """Zoomed 1-d grids of the parameters that have one, warning about the others."""
        axes, masses = self._grid_masses(self._observations(X), dims=(1,))
        names = [n for n in self.names_ if (n,) in masses]
        missing = [n for n in self.names_ if (n,) not in masses]
        if missing:
            warnings.warn(f"{what}: parameters {missing} have no 1-d or 2-d marginal and are "
                          f"left out (the result covers {names}); add them to `marginals` to "
                          "estimate them.", UserWarning, stacklevel=3)
        return names, axes, masses

    def predict(self, X):
        """Posterior means of every parameter from its 1-d marginal (modes for discrete ones).

        Parameters
        ----------
        X : array-like of shape (n, *event_shape)

        Returns
        -------
        ndarray of shape (n, D), or (n,) if fitted with a 1-d ``y``
            The means of ``posterior(x).mean()``, on the same zoomed grids;
            for a discrete parameter, its most probable class (the posterior
            mode, a class value, as a classifier's ``predict``).
            Parameters without a 1-d or 2-d marginal are left out, with a
            warning that names them.
        """
        names, axes, masses = self._one_d_posteriors(X, "predict")
        cols = []
        for n in names:
            mass, centres = masses[(n,)], axes[(n,)][0][0]
            if self.prior_.is_discrete(n):
                best = np.argmax(mass, axis=1)[:, None]
                cols.append(np.take_along_axis(np.broadcast_to(centres, mass.shape), best,
                                               axis=1)[:, 0])
            else:
                cols.append(np.sum(mass * centres, axis=1))
        out = np.column_stack(cols)
        return out[:, 0] if getattr(self, "_y_1d", False) else out

    def _has_discrete(self):
        """Whether the prior has a discrete parameter (``predict_proba`` exists then)."""
        return isinstance(self.prior, Prior) and any(self.prior.is_discrete(n)
                                                     for n in self.prior.names)

    @available_if(_has_discrete)
    def predict_proba(self, X, name: str | None = None) -> pd.DataFrame:
        """Posterior class probabilities of a discrete parameter.

        Only available when the prior has a discrete parameter. Unlike a
        scikit-learn classifier's, it covers one parameter at a time (the
        estimator predicts all parameters, continuous ones included), and
        returns a DataFrame whose columns are the class values, the order
        a classifier's ``classes_`` would give them.

        Parameters
        ----------
        X : array-like of shape (n, *event_shape)
        name : str, optional
            The discrete parameter; may be left out when there is only one.

        Returns
        -------
        DataFrame of shape (n, n_classes)
            Rows sum to one; the same probabilities as
            ``posterior(x).probabilities(name)``.

        Examples
        --------
        >>> est.predict_proba(X_test, name="model")       # doctest: +SKIP
        """
        check_is_fitted(self)
        discrete = [n for n in self.names_ if self.prior_.is_discrete(n)
                    and (n,) in self.marginals_]
        if name is None:
            if len(discrete) != 1:
                raise ValueError(f"predict_proba: name the discrete parameter; the estimator "
                                 f"has the discrete 1-d marginals {discrete}.")
            name = discrete[0]
        if name not in discrete:
            raise ValueError(f"predict_proba: {name!r} is not a discrete parameter with a 1-d "
                             f"marginal; those are {discrete}.")
        axes, masses = self._grid_masses(self._observations(X), dims=(1,))
        mass = masses[(name,)]
        classes = np.asarray(axes[(name,)][0][0])
        classes = classes if classes.ndim == 1 else classes[0]
        return pd.DataFrame(mass / mass.sum(axis=1, keepdims=True),
                            columns=pd.Index(classes, name=name))

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
            The intervals of ``posterior(x).interval(coverage)`` or the extent
            of ``posterior(x).hpd(coverage)``, on the same zoomed grids (for a
            discrete parameter, class values: quantiles of its class table, or
            the extent of its highest-probability set).
            Parameters without a 1-d or 2-d marginal are left out, with a
            warning that names them.
        """
        if not 0 < coverage < 1:
            raise ValueError(f"coverage must be in (0, 1); got {coverage!r}.")
        if kind not in ("central", "hpd"):
            raise ValueError(f"kind must be 'central' or 'hpd'; got {kind!r}.")
        names, axes, masses = self._one_d_posteriors(X, "predict_interval")
        n_obs = len(next(iter(masses.values())))
        rows = [row_axes({(n,): axes[(n,)] for n in names}, i) for i in range(n_obs)]
        cols = {}
        for n in names:
            m = masses[(n,)]
            lo, hi = np.empty(len(m)), np.empty(len(m))
            for i, row in enumerate(rows):
                (c, w), = row[(n,)]
                if self.prior_.is_discrete(n):  # class values: quantiles, probable sets
                    lo[i], hi[i] = (class_quantile(m[i], c, [(1 - coverage) / 2,
                                                             (1 + coverage) / 2])
                                    if kind == "central"
                                    else class_set_extent(m[i], c, coverage)[:2])
                elif kind == "central":
                    edges = np.concatenate([[c[0] - w / 2], c + w / 2])
                    cdf = np.concatenate([[0.0], np.cumsum(m[i]) / m[i].sum()])
                    lo[i], hi[i] = np.interp([(1 - coverage) / 2, (1 + coverage) / 2],
                                             cdf, edges)
                else:
                    lo[i], hi[i], _ = hpd_extent(m[i], c, w, coverage)
            cols[(n, "lower")], cols[(n, "upper")] = lo, hi
        return pd.DataFrame(cols)

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
        check_support(self.prior, theta, "y")
        has_1d = any(len(m) == 1 for m in self.marginals_)
        # The normalizer on the same zoomed grids as the posterior: a posterior far
        # narrower than the prior is integrated over fine cells, not a handful.
        with self._torch_compute():
            axes, log_density = zoomed_log_densities(self, X, dims=(1,) if has_1d else (2,))
        lr = self.log_ratio(X, theta)
        terms = []
        for m, lg in log_density.items():
            log_volume = np.sum([np.log(w) for _, w in axes[m]], axis=0)
            log_z = logsumexp(lg.reshape(len(X), -1), axis=1) + log_volume
            value = lr[marginal_label(m)].to_numpy() - log_z
            if self.prior is not None:
                idx = [self.names_.index(n) for n in m]
                value = value + self.prior_.marginal(list(m)).log_prob(theta[:, idx])
            terms.append(value)
        return float(np.mean(terms))


    # ---------------------------------------------------------- persistence
    def save(self, path, *, overwrite=False):
        """Save the fitted estimator to a directory, without pickle.

        Hyperparameters, prior and fitted metadata go to JSON, weights to a
        safetensors file (tensors only), the training history to JSON. See
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
