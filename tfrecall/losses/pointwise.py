"""Pointwise losses: every valid item is scored on its own against ``1[y > 0]``."""

from __future__ import annotations

from typing import Tuple

from tfrecall._backend import register, tf
from tfrecall.losses import lists
from tfrecall.losses.base import ListLoss, Reduction, check_lists

_Pair = Tuple[tf.Tensor, tf.Tensor]


def _bce(labels, logits, mask=None, positive_weight=1.0, negative_weight=1.0) -> _Pair:
    labels, logits = check_lists(labels, logits)
    valid = lists.valid_mask(labels, mask)
    # Padded logits are zeroed so garbage there (inf, NaN) cannot reach the gradient.
    logits = tf.where(valid, logits, tf.zeros_like(logits))
    targets = tf.cast(labels > 0, logits.dtype)
    # sigmoid_cross_entropy_with_logits is max(s, 0) - s z + log(1 + exp(-|s|)): stable.
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    weights = tf.where(
        labels > 0,
        tf.cast(positive_weight, logits.dtype) * tf.ones_like(logits),
        tf.cast(negative_weight, logits.dtype) * tf.ones_like(logits),
    )
    terms = tf.where(valid, weights * ce, tf.zeros_like(ce))
    count = tf.reduce_sum(tf.cast(valid, logits.dtype), axis=-1)
    return tf.math.divide_no_nan(tf.reduce_sum(terms, axis=-1), count), count > 0


def pointwise_bce_loss(
    labels, logits, mask=None, positive_weight: float = 1.0, negative_weight: float = 1.0
) -> tf.Tensor:
    """Per-list mean over valid items of the class-weighted sigmoid cross-entropy.

    Definition: ``l = (1 / n_valid) sum_i w_{z_i} [-z_i log sigmoid(s_i)
    - (1 - z_i) log(1 - sigmoid(s_i))]`` with ``z_i = 1[y_i > 0]`` and ``w_1``/``w_0``
    the positive/negative weights (the averaging count is the number of valid items,
    not the sum of weights).

    Args:
      labels: ``(B, L)`` float graded labels, ``< 0`` for padding.
      logits: ``(B, L)`` float scores (logits of the click probability).
      mask: optional ``(B, L)`` bool AND-ed with ``labels >= 0``.
      positive_weight: weight of items with ``y > 0``.
      negative_weight: weight of items with ``y == 0``.

    Returns:
      ``(B,)`` float per-list loss; 0 for lists with no valid item.
    """
    return _bce(labels, logits, mask, positive_weight, negative_weight)[0]


@register
class PointwiseBCELoss(ListLoss):
    """Sigmoid cross-entropy per item against ``1[y > 0]``, averaged within each list.

    A list scores when it has at least one valid item (a list of negatives only still
    teaches "score these low"). See `pointwise_bce_loss`.

    Args:
      positive_weight: weight of positive items (>= 0).
      negative_weight: weight of non-positive items (>= 0).
      reduction: Keras reduction; ``AUTO`` is the mean over lists with a valid item.
      name: loss name.

    Raises:
      ValueError: a negative weight.
    """

    def __init__(
        self,
        positive_weight: float = 1.0,
        negative_weight: float = 1.0,
        reduction: str = Reduction.AUTO,
        name: str = "pointwise_bce_loss",
        **kwargs,
    ):
        for arg, value in (
            ("positive_weight", positive_weight),
            ("negative_weight", negative_weight),
        ):
            if not value >= 0:
                raise ValueError(f"{arg} must be >= 0, got {value!r}")
        super().__init__(reduction=reduction, name=name, **kwargs)
        self.positive_weight = float(positive_weight)
        self.negative_weight = float(negative_weight)

    def per_list(self, y_true, y_pred):
        return _bce(y_true, y_pred, None, self.positive_weight, self.negative_weight)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"positive_weight": self.positive_weight, "negative_weight": self.negative_weight}
        )
        return config


__all__ = ["PointwiseBCELoss", "pointwise_bce_loss"]
