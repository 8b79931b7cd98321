"""The one list convention shared by every loss and metric.

- ``labels`` and ``logits`` are ``(B, L)``: B lists of L candidates.
- ``labels < 0`` marks padding: a padded slot takes part in nothing.
- an optional boolean ``mask`` ``(B, L)`` is AND-ed with the label test.
- masked logits are set to ``MIN_FLOAT`` (``finfo(float32).min / 100``), which
  ``exp`` sends to exactly 0 and which stays finite when a few are summed, never a
  tiny additive constant (adding 1e-40 to a float32 logit changes nothing).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from tfrecall._backend import tf

MIN_FLOAT = float(np.finfo(np.float32).min / 100.0)


def valid_mask(labels: tf.Tensor, mask: Optional[tf.Tensor] = None) -> tf.Tensor:
    """``(B, L)`` bool: the slots that take part (label >= 0, AND the optional mask)."""
    valid = tf.greater_equal(labels, tf.zeros_like(labels))
    if mask is not None:
        valid = tf.logical_and(valid, tf.cast(mask, tf.bool))
    return valid


def mask_logits(logits: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Replaces invalid logits by ``MIN_FLOAT`` so they get no softmax mass."""
    return tf.where(valid, logits, tf.cast(MIN_FLOAT, logits.dtype))


def remove_accidental_hits(
    labels: tf.Tensor, candidate_ids: tf.Tensor, positive_ids: tf.Tensor
) -> tf.Tensor:
    """Marks as padding (-1) every non-positive candidate equal to the row's positive.

    With sampled or in-batch negatives a "negative" can be the very item the row's
    user interacted with; scoring it as a negative pushes the positive down. Such
    slots are masked, not counted (the slot with label > 0 is kept).

    Args:
      labels: ``(B, L)`` float labels.
      candidate_ids: ``(B, L)`` or ``(L,)`` ids of the candidates (any dtype).
      positive_ids: ``(B,)`` id of each row's positive.

    Returns:
      ``(B, L)`` labels with accidental hits set to -1.
    """
    candidate_ids = tf.convert_to_tensor(candidate_ids)
    if candidate_ids.shape.rank == 1:
        candidate_ids = candidate_ids[tf.newaxis, :]
    hit = tf.equal(candidate_ids, tf.expand_dims(positive_ids, -1))
    accidental = tf.logical_and(hit, tf.less_equal(labels, tf.zeros_like(labels)))
    return tf.where(accidental, -tf.ones_like(labels), labels)


def correct_log_q(logits: tf.Tensor, log_q: Optional[tf.Tensor]) -> tf.Tensor:
    """Sampling-bias correction (Yi et al., RecSys 2019, eq. 3): ``s - log Q(item)``.

    ``log_q`` broadcasts against ``logits`` (``(B, L)``, or ``(L,)`` for in-batch
    candidates shared by every row). Applied to training logits only.
    """
    if log_q is None:
        return logits
    return logits - tf.cast(log_q, logits.dtype)
