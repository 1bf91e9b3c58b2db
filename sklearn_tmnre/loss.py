"""The ratio losses: binary cross-entropy (with balancing) and contrastive.

Every loss reads the logits of one batch: ``f_joint`` of shape (B, M), the
joint pairs :math:`(x_i, \\theta_i)` of B rows for M marginals, and
``f_marginal`` of shape (B, K, M), K marginal pairs per row
:math:`(x_i, \\theta_{\\pi_k(i)})`, each :math:`\\pi_k` a fresh random
derangement of the batch at every step (``n_negatives``). Both converge to
:math:`f_m(x, \\theta_m) = \\log p(\\theta_m \\mid x) / p(\\theta_m)`.

**Binary cross-entropy** (NRE, Hermans et al. 2020; Miller et al. 2021),
``loss="bce"``:

.. math:: \\mathcal{L} = \\sum_m \\frac{1}{B} \\sum_i
          \\Big[\\operatorname{softplus}(-f_m(x_i, \\theta_i))
          + \\frac{1}{K} \\sum_k \\operatorname{softplus}(f_m(x_i, \\theta_{\\pi_k(i)}))\\Big]
          + \\lambda \\sum_m \\big(\\overline{\\sigma(f_m^{joint})}
          + \\overline{\\sigma(f_m^{marg})} - 1\\big)^2 ,

summed over marginals, plus the balancing term of balanced NRE (Delaunoy et
al. 2022) with weight :math:`\\lambda` (``balance``). At its optimum the
classifier's logit is the log ratio itself.

**Contrastive** (NRE-C, Miller et al. 2022), ``loss="contrastive"``: a
classifier over K + 1 classes reads a set of K parameters: class 0 if all
were drawn from the marginal, class k if the k-th was the row's own. With
:math:`\\gamma` the odds of any joint class against class 0 (1 here, as sbi),

.. math:: q_0 = \\frac{K}{K + \\gamma \\sum_k e^{f_k}}, \\qquad
          q_k = \\frac{\\gamma e^{f_k}}{K + \\gamma \\sum_j e^{f_j}},

.. math:: \\mathcal{L} = -\\sum_m \\frac{1}{B} \\sum_i \\Big[
          \\frac{\\gamma}{1 + \\gamma} \\log q_1(x_i; \\theta_i, \\theta_{\\pi_1(i)}, \\dots,
          \\theta_{\\pi_{K-1}(i)}) + \\frac{1}{1 + \\gamma}
          \\log q_0(x_i; \\theta_{\\pi_1(i)}, \\dots, \\theta_{\\pi_K(i)})\\Big] .

The joint set is the row's own parameter and the first K - 1 negatives, the
marginal set all K negatives: the same logits as the cross-entropy, so the
network does the same work per step under both losses. Each term normalizes
over its set; it converges to the exact log ratio too.

**Field cells** (:mod:`sklearn_tmnre.fields`) have losses of their own
(``field_loss``); ``loss`` and ``balance`` apply to the other marginals.

* ``field_loss="posterior"`` (:class:`CellPosteriorLoss`, the default): the
  cross-entropy of each cell's posterior
  :math:`q = \\sigma(\\operatorname{logit} p + f(x, 1) - f(x, 0))` against the
  cell's own value :math:`o`, divided by the binary entropy
  :math:`H(p) = -p \\log p - (1 - p) \\log(1 - p)` of the cell's prior, the
  cross-entropy of the prior itself:

  .. math:: \\mathcal{L}_{\\rm cell} = \\frac{1}{H(p)} \\frac{1}{B} \\sum_i
            \\Big[-o_i \\log q_i - (1 - o_i) \\log(1 - q_i)\\Big] .

  A bin's loss is 1 for the prior and 0 for a perfect map. It is a proper
  score of :math:`q`, so its optimum is the posterior, and the log ratios
  :math:`\\log q/p` and :math:`\\log (1 - q)/(1 - p)` follow from it; only the
  difference :math:`f(x, 1) - f(x, 0)` is identified, and only it is used.
* ``field_loss="ratio"``: the cross-entropy above with the cell as a binary
  parameter, the marginal term being exact, the mean over the cell's two
  values weighted by their prior frequencies (``negative_weight``), not a set
  of drawn negatives that a contrastive set could classify. Same optimum, but
  badly conditioned for rare values: near the optimum the loss's curvature in
  :math:`f(x, 1)` is :math:`P p / (P + p)` (P the posterior), at most the prior
  frequency :math:`p` (about :math:`10^{-3}` to :math:`10^{-5}` for subhalo
  bins), and a cell whose :math:`f(x, 1)` overshoots is pulled back with a
  gradient of at most :math:`p` per image, against :math:`q` under the
  posterior loss. On the lensing example the ratio form left the rare, heavy
  bins overconfident and barely better than the prior (see the user guide's
  segmentation page for the measurements).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FIELD_LOSSES", "LOSSES", "CellPosteriorLoss", "ContrastiveRatioLoss",
           "RatioLoss"]


class RatioLoss(nn.Module):
    """Binary cross-entropy of joint against marginal pairs, summed over marginals.

    Parameters
    ----------
    balance : float, default=0
        Weight of the balancing penalty (0 = plain NRE; larger is more conservative).
    """

    def __init__(self, balance: float = 0.0):
        super().__init__()
        self.balance = float(balance)

    def forward(self, f_joint: torch.Tensor, f_marginal: torch.Tensor,
                weight: torch.Tensor | None = None,
                negative_weight: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of one batch.

        Parameters
        ----------
        f_joint : Tensor of shape (B, M)
            Logits of the joint pairs.
        f_marginal : Tensor of shape (B, K, M) or (B, M)
            Logits of K marginal pairs per joint pair.
        weight : Tensor of shape (M,), optional
            Each column's weight in the sum (None: one each).
        negative_weight : Tensor of shape (K, M), optional
            Each negative's weight in its column's marginal term, summing to one
            over K (None: 1 / K each, their mean).

        Returns
        -------
        Tensor
            A scalar.
        """
        if f_marginal.dim() == 2:
            f_marginal = f_marginal[:, None]

        def negatives(values):
            # Each class keeps weight one half: the negatives' term is their (weighted) mean.
            if negative_weight is None:
                return values.mean((0, 1))
            return (values.mean(0) * negative_weight).sum(0)

        terms = F.softplus(-f_joint).mean(0) + negatives(F.softplus(f_marginal))
        if self.balance > 0:
            gap = torch.sigmoid(f_joint).mean(0) + negatives(torch.sigmoid(f_marginal)) - 1.0
            terms = terms + self.balance * gap**2
        return (terms if weight is None else terms * weight).sum()


class ContrastiveRatioLoss(nn.Module):
    """Contrastive NRE (NRE-C) over the K negatives of each row, summed over marginals.

    Terms with per-negative weights (field cells) fall back to the binary
    cross-entropy (see the module docstring).

    Parameters
    ----------
    gamma : float, default=1
        Odds of the joint classes against the all-marginal class.
    """

    def __init__(self, gamma: float = 1.0):
        super().__init__()
        self.gamma = float(gamma)
        self._bce = RatioLoss()

    def forward(self, f_joint: torch.Tensor, f_marginal: torch.Tensor,
                weight: torch.Tensor | None = None,
                negative_weight: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of one batch; the arguments are those of :meth:`RatioLoss.forward`."""
        if negative_weight is not None:
            return self._bce(f_joint, f_marginal, weight, negative_weight)
        if f_marginal.dim() == 2:
            f_marginal = f_marginal[:, None]
        k = f_marginal.shape[1]
        log_gamma, log_k = math.log(self.gamma), math.log(k)

        def log_normalizer(logits):
            # log(K + gamma * sum_k exp f_k) over the set's axis 1, stably.
            constant = torch.full_like(logits[:, :1], log_k)
            return torch.logsumexp(torch.cat([log_gamma + logits, constant], dim=1), dim=1)

        joint_set = torch.cat([f_joint[:, None], f_marginal[:, :k - 1]], dim=1)
        log_q_joint = log_gamma + f_joint - log_normalizer(joint_set)
        log_q_marginal = log_k - log_normalizer(f_marginal)
        terms = -(self.gamma * log_q_joint + log_q_marginal).mean(0) / (1.0 + self.gamma)
        return (terms if weight is None else terms * weight).sum()


class CellPosteriorLoss(nn.Module):
    """Cross-entropy of binary cells' posteriors, each in units of its prior's.

    See the module docstring (``field_loss="posterior"``).
    """

    def forward(self, logits: torch.Tensor, values: torch.Tensor, frequency: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of one batch.

        Parameters
        ----------
        logits : Tensor of shape (B, 2, C)
            Log ratios :math:`f(x, 0)` and :math:`f(x, 1)` of C cells.
        values : Tensor of shape (B, C)
            The rows' own cell values (0/1).
        frequency : Tensor of shape (C,)
            Prior probability :math:`p` of value 1 of each cell, in (0, 1).
        weight : Tensor of shape (C,), optional
            Each cell's weight in the sum (None: one each).

        Returns
        -------
        Tensor
            A scalar.
        """
        prior_logit = torch.log(frequency) - torch.log1p(-frequency)
        posterior_logit = prior_logit + logits[:, 1] - logits[:, 0]
        cross_entropy = F.binary_cross_entropy_with_logits(
            posterior_logit, values.to(posterior_logit.dtype), reduction="none").mean(0)
        prior_entropy = -(frequency * torch.log(frequency)
                          + (1.0 - frequency) * torch.log1p(-frequency))
        terms = cross_entropy / prior_entropy
        return (terms if weight is None else terms * weight).sum()


#: The losses by their ``loss`` hyperparameter.
LOSSES = {"bce": RatioLoss, "contrastive": ContrastiveRatioLoss}
#: The field cells' losses by the ``field_loss`` hyperparameter (``"ratio"``: that of
#: ``loss``, fed both values of each cell as exact negatives).
FIELD_LOSSES = {"posterior": CellPosteriorLoss}
