"""Sampled losses: a positive scored against sampled (or in-batch) negatives.

Negatives drawn with probability ``Q(item)`` (popularity, or in-batch, where an item
appears in proportion to its frequency) bias a softmax towards penalizing popular
items. The correction (Yi et al., RecSys 2019, eq. 3; Bengio & Senecal 2008) scores
``s - log Q(item)`` during training only.

Inside a tfrecall model the batch carries ``log_q`` ``(B, L)``; the MODEL subtracts
it and marks accidental hits (a "negative" that is the row's own positive) as label
-1 before calling the loss. The Keras classes here therefore receive corrected
logits, and carry ``requires_log_q = True`` so that a model refuses to train them on
a batch without ``log_q``. The functional cores take optional ``log_q``,
``candidate_ids`` and ``positive_ids`` to do both steps themselves when used alone.
"""

from __future__ import annotations

from typing import Optional, Tuple

from tfrecall._backend import register, tf
from tfrecall.losses import lists
from tfrecall.losses.base import ListLoss, Reduction, check_lists
from tfrecall.losses.listwise import SoftmaxLoss, _softmax

_Pair = Tuple[tf.Tensor, tf.Tensor]


def _prepare(labels, logits, log_q, candidate_ids, positive_ids) -> _Pair:
    """Applies the log Q correction and accidental-hit removal; ``(labels, logits)``."""
    labels, logits = check_lists(labels, logits)
    if (candidate_ids is None) != (positive_ids is None):
        raise ValueError(
            "candidate_ids and positive_ids go together (accidental-hit removal needs "
            f"both), got candidate_ids={'None' if candidate_ids is None else 'given'} and "
            f"positive_ids={'None' if positive_ids is None else 'given'}"
        )
    if candidate_ids is not None:
        labels = lists.remove_accidental_hits(labels, candidate_ids, positive_ids)
    return labels, lists.correct_log_q(logits, log_q)


def _negative_sampling(labels, logits, mask=None) -> _Pair:
    labels, logits = check_lists(labels, logits)
    valid = lists.valid_mask(labels, mask)
    logits = tf.where(valid, logits, tf.zeros_like(logits))
    positive = labels > 0
    # -log sigmoid(s) = softplus(-s); -log(1 - sigmoid(s)) = softplus(s): stable.
    terms = tf.where(positive, tf.nn.softplus(-logits), tf.nn.softplus(logits))
    terms = tf.where(valid, terms, tf.zeros_like(terms))
    scorable = tf.reduce_any(tf.logical_and(valid, positive), axis=-1)
    return tf.reduce_sum(terms, axis=-1), scorable


def negative_sampling_loss(labels, logits, mask=None) -> tf.Tensor:
    """Per-list negative-sampling (NEG) loss.

    Definition (word2vec NEG, Mikolov et al. NeurIPS 2013, eq. 4, negated):
    ``l = sum_{pos} log(1 + exp(-s)) + sum_{neg} log(1 + exp(s))`` over valid items
    (a SUM within the list: every sampled negative adds a term).

    Args:
      labels: ``(B, L)`` float labels; ``> 0`` positive, ``0`` negative, ``< 0`` padding.
      logits: ``(B, L)`` float scores.
      mask: optional ``(B, L)`` bool AND-ed with ``labels >= 0``.

    Returns:
      ``(B,)`` float per-list loss; 0 for lists without a positive.
    """
    per_list, scorable = _negative_sampling(labels, logits, mask)
    return tf.where(scorable, per_list, tf.zeros_like(per_list))


def nce_loss(
    labels,
    logits,
    mask=None,
    log_q: Optional[tf.Tensor] = None,
    candidate_ids: Optional[tf.Tensor] = None,
    positive_ids: Optional[tf.Tensor] = None,
) -> tf.Tensor:
    """Per-list NCE-style loss: `negative_sampling_loss` on ``s - log Q(item)``.

    Definition (Gutmann & Hyvarinen 2010; Mnih & Teh ICML 2012 with the noise term
    folded into ``log Q``): ``l = sum_{pos} softplus(-(s - log Q)) + sum_{neg}
    softplus(s - log Q)``.

    Args:
      labels: ``(B, L)`` float labels; ``> 0`` positive, ``0`` negative, ``< 0`` padding.
      logits: ``(B, L)`` float raw (uncorrected) scores.
      mask: optional ``(B, L)`` bool AND-ed with ``labels >= 0``.
      log_q: optional ``(B, L)`` or ``(L,)`` log sampling probability of each
        candidate; subtracted from ``logits``.
      candidate_ids: optional ``(B, L)`` or ``(L,)`` candidate ids; with
        ``positive_ids`` ``(B,)``, non-positive candidates equal to the row's positive
        are dropped (accidental hits).
      positive_ids: optional ``(B,)`` id of each row's positive.

    Returns:
      ``(B,)`` float per-list loss; 0 for lists without a positive.

    Raises:
      ValueError: only one of ``candidate_ids`` / ``positive_ids`` given.
    """
    labels, logits = _prepare(labels, logits, log_q, candidate_ids, positive_ids)
    return negative_sampling_loss(labels, logits, mask)


def sampled_softmax_loss(
    labels,
    logits,
    mask=None,
    log_q: Optional[tf.Tensor] = None,
    candidate_ids: Optional[tf.Tensor] = None,
    positive_ids: Optional[tf.Tensor] = None,
) -> tf.Tensor:
    """Per-list sampled softmax: softmax cross-entropy on ``s - log Q(item)``.

    Definition (Jean et al. ACL 2015; Yi et al. RecSys 2019, eq. 3): with one positive
    ``l = -log [exp(s+ - log Q+) / sum_j exp(s_j - log Q_j)]`` over the positive and
    the valid negatives, accidental hits removed. With several positives the target
    is ``y+ / sum(y+)`` (as `softmax_loss`; for 0/1 labels this is
    ``tf.nn.sampled_softmax_loss`` with ``num_true > 1``).

    In-batch example (the TFRS retrieval task): ``logits = q @ c^T`` ``(B, B)``,
    ``labels = eye(B)``, ``log_q`` ``(B,)`` per candidate column,
    ``candidate_ids = positive_ids`` = the batch's item ids ``(B,)``.

    Args:
      labels: ``(B, L)`` float labels; ``> 0`` positive, ``0`` negative, ``< 0`` padding.
      logits: ``(B, L)`` float raw (uncorrected) scores.
      mask: optional ``(B, L)`` bool AND-ed with ``labels >= 0``.
      log_q: optional ``(B, L)`` or ``(L,)`` log sampling probability of each
        candidate; subtracted from ``logits``.
      candidate_ids: optional ``(B, L)`` or ``(L,)`` candidate ids (with ``positive_ids``).
      positive_ids: optional ``(B,)`` id of each row's positive.

    Returns:
      ``(B,)`` float per-list loss; 0 for lists without a positive.

    Raises:
      ValueError: only one of ``candidate_ids`` / ``positive_ids`` given.
    """
    labels, logits = _prepare(labels, logits, log_q, candidate_ids, positive_ids)
    per_list, scorable = _softmax(labels, logits, mask)
    return tf.where(scorable, per_list, tf.zeros_like(per_list))


@register
class NegativeSamplingLoss(ListLoss):
    """NEG: ``sum_pos softplus(-s) + sum_neg softplus(s)`` per list (Mikolov et al. 2013).

    Logits are used as given (no ``log Q`` correction; see `NCELoss` for that). A list
    scores when it has a positive. See `negative_sampling_loss`.

    Args:
      reduction: Keras reduction; ``AUTO`` is the mean over lists with a positive.
      name: loss name.
    """

    def __init__(
        self, reduction: str = Reduction.AUTO, name: str = "negative_sampling_loss", **kwargs
    ):
        super().__init__(reduction=reduction, name=name, **kwargs)

    def per_list(self, y_true, y_pred):
        return _negative_sampling(y_true, y_pred)


@register
class NCELoss(NegativeSamplingLoss):
    """NEG on logits already corrected by ``-log Q(item)`` (the model applies it).

    ``requires_log_q = True``: the model subtracts the batch's ``log_q`` from the
    training logits and marks accidental hits -1 before calling this loss. For
    standalone use with raw logits call `nce_loss` with ``log_q``.

    Args:
      reduction: Keras reduction; ``AUTO`` is the mean over lists with a positive.
      name: loss name.
    """

    requires_log_q = True  # the only difference from NegativeSamplingLoss

    def __init__(self, reduction: str = Reduction.AUTO, name: str = "nce_loss", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)


@register
class SampledSoftmaxLoss(SoftmaxLoss):
    """Sampled softmax over the positive and sampled negatives, on corrected logits.

    ``requires_log_q = True``: the model subtracts the batch's ``log_q`` from the
    training logits and marks accidental hits -1 before calling this loss, so the
    math is `SoftmaxLoss`'s. For standalone use with raw logits call
    `sampled_softmax_loss` with ``log_q``, ``candidate_ids`` and ``positive_ids``.

    Args:
      reduction: Keras reduction; ``AUTO`` is the mean over lists with a positive.
      name: loss name.
    """

    requires_log_q = True  # the only difference from SoftmaxLoss

    def __init__(
        self, reduction: str = Reduction.AUTO, name: str = "sampled_softmax_loss", **kwargs
    ):
        super().__init__(reduction=reduction, name=name, **kwargs)


__all__ = [
    "NCELoss",
    "NegativeSamplingLoss",
    "SampledSoftmaxLoss",
    "nce_loss",
    "negative_sampling_loss",
    "sampled_softmax_loss",
]
