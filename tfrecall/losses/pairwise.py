"""Pairwise losses: every valid pair ``(i, j)`` with ``y_i > y_j`` in a list.

A pair is valid when both items are valid (label >= 0, AND the optional mask) and
``y_i > y_j``. The per-list loss is the MEAN over its valid pairs, so long lists do
not outweigh short ones; a list without a valid pair scores nothing. Costs
``O(B L^2)`` memory.
"""

from __future__ import annotations

from typing import Callable, Tuple

from tfrecall._backend import register, tf
from tfrecall.losses import lists
from tfrecall.losses.base import ListLoss, Reduction, check_lists

_Pair = Tuple[tf.Tensor, tf.Tensor]


def _pairwise(labels, logits, mask, pair_loss: Callable[[tf.Tensor], tf.Tensor]) -> _Pair:
    """Mean of ``pair_loss(s_i - s_j)`` over valid pairs; ``(per_list, scorable)``."""
    labels, logits = check_lists(labels, logits)
    valid = lists.valid_mask(labels, mask)
    # Padded logits are zeroed first: they may be garbage (inf, NaN) and must get
    # no gradient; tf.where alone would pass NaN * 0 back through the pair terms.
    logits = tf.where(valid, logits, tf.zeros_like(logits))
    pairs = tf.logical_and(valid[:, :, tf.newaxis], valid[:, tf.newaxis, :])
    pairs = tf.logical_and(pairs, labels[:, :, tf.newaxis] > labels[:, tf.newaxis, :])
    margins = logits[:, :, tf.newaxis] - logits[:, tf.newaxis, :]  # (B, L, L): s_i - s_j
    terms = tf.where(pairs, pair_loss(margins), tf.zeros_like(margins))
    count = tf.reduce_sum(tf.cast(pairs, logits.dtype), axis=[1, 2])
    per_list = tf.math.divide_no_nan(tf.reduce_sum(terms, axis=[1, 2]), count)
    return per_list, count > 0


def _hinge(margin: float) -> Callable[[tf.Tensor], tf.Tensor]:
    return lambda d: tf.nn.relu(tf.cast(margin, d.dtype) - d)


def _logistic(sigma: float) -> Callable[[tf.Tensor], tf.Tensor]:
    # log(1 + exp(sigma (s_j - s_i))) = softplus(-sigma d), stable for any d.
    return lambda d: tf.nn.softplus(-tf.cast(sigma, d.dtype) * d)


def triplet_hinge_loss(labels, logits, mask=None, margin: float = 1.0) -> tf.Tensor:
    """Per-list mean over valid pairs of ``max(0, margin - (s_i - s_j))``.

    Definition (triplet / margin ranking loss, e.g. Weston et al. WSABIE, IJCAI 2011).

    Args:
      labels: ``(B, L)`` float graded labels, ``< 0`` for padding.
      logits: ``(B, L)`` float scores.
      mask: optional ``(B, L)`` bool AND-ed with ``labels >= 0``.
      margin: the score gap below which a pair is penalized.

    Returns:
      ``(B,)`` float per-list loss; 0 for lists without a valid pair.
    """
    return _pairwise(labels, logits, mask, _hinge(margin))[0]


def triplet_logistic_loss(labels, logits, mask=None, sigma: float = 1.0) -> tf.Tensor:
    """Per-list mean over valid pairs of ``log(1 + exp(sigma (s_j - s_i)))``.

    Definition (RankNet, Burges et al. ICML 2005, eq. 3 with target probability 1).

    Args:
      labels: ``(B, L)`` float graded labels, ``< 0`` for padding.
      logits: ``(B, L)`` float scores.
      mask: optional ``(B, L)`` bool AND-ed with ``labels >= 0``.
      sigma: the slope of the logistic.

    Returns:
      ``(B,)`` float per-list loss; 0 for lists without a valid pair.
    """
    return _pairwise(labels, logits, mask, _logistic(sigma))[0]


def bpr_loss(labels, logits, mask=None) -> tf.Tensor:
    """Per-list mean over valid pairs of ``-log sigmoid(s_i - s_j)``.

    Definition (BPR-Opt, Rendle et al. UAI 2009, eq. 7, without the L2 term):
    ``-log sigmoid(d) = softplus(-d)``.

    Args:
      labels: ``(B, L)`` float graded labels, ``< 0`` for padding.
      logits: ``(B, L)`` float scores.
      mask: optional ``(B, L)`` bool AND-ed with ``labels >= 0``.

    Returns:
      ``(B,)`` float per-list loss; 0 for lists without a valid pair.
    """
    return _pairwise(labels, logits, mask, _logistic(1.0))[0]


@register
class TripletHingeLoss(ListLoss):
    """Mean over valid pairs of ``max(0, margin - (s_i - s_j))``. See `triplet_hinge_loss`.

    Args:
      margin: the score gap below which a pair is penalized (>= 0).
      reduction: Keras reduction; ``AUTO`` is the mean over lists with a valid pair.
      name: loss name.

    Raises:
      ValueError: a negative margin.
    """

    def __init__(
        self,
        margin: float = 1.0,
        reduction: str = Reduction.AUTO,
        name: str = "triplet_hinge_loss",
        **kwargs,
    ):
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, got {margin!r}")
        super().__init__(reduction=reduction, name=name, **kwargs)
        self.margin = float(margin)

    def per_list(self, y_true, y_pred):
        return _pairwise(y_true, y_pred, None, _hinge(self.margin))

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin})
        return config


@register
class TripletLogisticLoss(ListLoss):
    """Mean over valid pairs of ``log(1 + exp(sigma (s_j - s_i)))``. See `triplet_logistic_loss`.

    Args:
      sigma: the slope of the logistic (> 0).
      reduction: Keras reduction; ``AUTO`` is the mean over lists with a valid pair.
      name: loss name.

    Raises:
      ValueError: ``sigma <= 0``.
    """

    def __init__(
        self,
        sigma: float = 1.0,
        reduction: str = Reduction.AUTO,
        name: str = "triplet_logistic_loss",
        **kwargs,
    ):
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        super().__init__(reduction=reduction, name=name, **kwargs)
        self.sigma = float(sigma)

    def per_list(self, y_true, y_pred):
        return _pairwise(y_true, y_pred, None, _logistic(self.sigma))

    def get_config(self):
        config = super().get_config()
        config.update({"sigma": self.sigma})
        return config


@register
class BPRLoss(ListLoss):
    """Bayesian personalized ranking: mean over valid pairs of ``-log sigmoid(s_i - s_j)``.

    With ``L = 2`` (positive first, one sampled negative) this is BPR-Opt (Rendle et
    al. 2009). See `bpr_loss`.

    Args:
      reduction: Keras reduction; ``AUTO`` is the mean over lists with a valid pair.
      name: loss name.
    """

    def __init__(self, reduction: str = Reduction.AUTO, name: str = "bpr_loss", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)

    def per_list(self, y_true, y_pred):
        return _pairwise(y_true, y_pred, None, _logistic(1.0))


__all__ = [
    "BPRLoss",
    "TripletHingeLoss",
    "TripletLogisticLoss",
    "bpr_loss",
    "triplet_hinge_loss",
    "triplet_logistic_loss",
]
