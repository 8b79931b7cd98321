"""`TFRSRetrievalLoss`: any tfrecall loss as the loss of `tfrs.tasks.Retrieval`.

`tfrs.tasks.Retrieval.call` scores queries against candidates, divides by its
temperature, subtracts ``log clip(candidate_sampling_probability, 1e-6, 1)``, and
calls ``loss(y_true=eye(B, B + S), y_pred=scores, sample_weight=w)``: tfrecall's list
convention with B lists of the B in-batch (+ S extra) candidates and the identity as
labels. Two conventions differ, and the adapter bridges or documents each:

- **Masked slots.** TFRS removes accidental hits (`tfrs.layers.loss.
  RemoveAccidentalHits`) and applies ``score_mask`` by setting the LOGIT to about
  ``MIN_FLOAT = finfo(float32).min / 100`` (the same constant as tfrecall's) and keeps
  the label 0. A softmax gives such a slot no mass, so softmax losses are unaffected,
  but every other loss still counts it: a pairwise loss averages over one pair too
  many, NEG adds a zero term, ListNet / KL targets put mass on it and meet a
  ``-3e36`` log-probability. tfrecall marks padding by LABEL (-1), so the adapter
  turns every slot whose logit is at or below ``MIN_FLOAT / 2`` into label -1, and the
  wrapped loss then ignores it as it would inside a tfrecall model.
- **Reduction.** TFRS' default loss, ``CategoricalCrossentropy(reduction=SUM)``, sums
  the per-row losses, so the loss scale grows with the batch size (TFRS #177). The
  adapter keeps the wrapped loss' reduction: tfrecall's default is the weighted MEAN
  over rows, ``sum_i w_i l_i / sum_i w_i``; wrap ``SoftmaxLoss(reduction="sum")`` for
  TFRS' scale (then equal to TFRS' default loss). ``sample_weight`` weighs rows (lists)
  in both.

Log Q: pass ``candidate_sampling_probability`` (TFRS does the subtraction with its
`SamplingProbablityCorrection`; `tfrecall.sampling.frequency` gives the probability, see
its note on the clipping and on the ``log B`` that only softmax losses ignore).

Also reused, not rewritten: inside TFRS the task's own accidental-hit removal, log Q
correction and hard-negative mining run before this loss. tfrecall's models keep
their own (`tfrecall.losses.lists`): they take ``(B, L)`` candidate ids and graded
labels, which the TFRS layers (one-hot labels, ``(L,)`` ids) do not. `tfrs.metrics.
FactorizedTopK` is not used for evaluation: it cannot exclude each user's training
items from the ranking, which tfrecall's held-out protocol requires.
"""

from __future__ import annotations

from typing import Optional

from tfrecall._backend import keras, register, tf
from tfrecall.losses.base import ListLoss, as_float
from tfrecall.losses.lists import MIN_FLOAT


def tfrs_labels(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """TFRS' labels with its masked slots (logit <= ``MIN_FLOAT / 2``) marked -1 (padding).

    Args:
      y_true: ``(B, L)`` labels (TFRS: the identity).
      y_pred: ``(B, L)`` logits as TFRS passes them.

    Returns:
      ``(B, L)`` labels in the logits' float dtype.
    """
    y_pred = as_float(y_pred)
    labels = tf.cast(y_true, y_pred.dtype)
    masked = y_pred <= tf.cast(MIN_FLOAT / 2, y_pred.dtype)
    return tf.where(masked, -tf.ones_like(labels), labels)


@register
class TFRSRetrievalLoss(keras.losses.Loss):
    """A tfrecall loss for ``tfrs.tasks.Retrieval(loss=...)`` (see the module docstring).

    Args:
      loss: the tfrecall loss (a `ListLoss` instance, or its Keras serialization).
      name: the loss name (default ``"tfrs_" + loss.name``).

    Call arguments:
      y_true: ``(B, L)`` labels (TFRS: ``eye(B, L)``).
      y_pred: ``(B, L)`` logits, masked slots at about ``MIN_FLOAT``.
      sample_weight: optional ``(B,)`` row weights.

    Returns:
      The wrapped loss' value on the labels with masked slots as padding (a scalar
      for the mean and sum reductions).

    Raises:
      ValueError: `loss` is not a tfrecall `ListLoss`.

    Example:
      >>> task = tfrs.tasks.Retrieval(
      ...     loss=TFRSRetrievalLoss(tfrecall.losses.SampledSoftmaxLoss()),
      ...     remove_accidental_hits=True)
      >>> task(q, c, candidate_sampling_probability=p, candidate_ids=ids)
    """

    def __init__(self, loss, name: Optional[str] = None, **kwargs):
        if isinstance(loss, dict):
            loss = keras.losses.deserialize(loss)
        if not isinstance(loss, ListLoss):
            raise ValueError("loss must be a tfrecall loss (a tfrecall.losses.ListLoss such as "
                             f"SoftmaxLoss()), got {loss!r}")
        kwargs.pop("reduction", None)  # the wrapped loss reduces
        super().__init__(reduction=loss.reduction, name=name or f"tfrs_{loss.name}", **kwargs)
        self.loss = loss

    @property
    def requires_log_q(self) -> bool:
        """Whether the wrapped loss expects corrected logits (pass TFRS the probability)."""
        return self.loss.requires_log_q

    def call(self, y_true, y_pred):
        return self.loss.call(tfrs_labels(y_true, y_pred), y_pred)

    def __call__(self, y_true, y_pred, sample_weight=None):
        return self.loss(tfrs_labels(y_true, y_pred), y_pred, sample_weight)

    def get_config(self) -> dict:
        return {"loss": keras.losses.serialize(self.loss), "name": self.name}


__all__ = ["TFRSRetrievalLoss", "tfrs_labels"]
