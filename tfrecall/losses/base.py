"""The shared base of every tfrecall loss: per-list values, mean over scorable lists.

Every loss first computes one value per list, ``(B,)``, and a ``(B,)`` bool telling
which lists have something to score (a positive, or a valid pair). The batch loss
is the weighted mean over the scorable lists only::

    loss = sum_i w_i * scorable_i * l_i / sum_i w_i * scorable_i     (0 when nothing scores)

Keras' ``SUM_OVER_BATCH_SIZE`` would divide by ``B`` including lists that score
nothing (a list whose only positive was padded away), so the loss scale would drift
with the share of such lists; hence ``ListLoss`` overrides ``Loss.__call__`` (the one
deliberate exception to "let ``Loss`` reduce").

Distribution: under a ``tf.distribute`` strategy with more than one replica the
denominator is summed over all replicas (``all_reduce``), and the value is multiplied
by ``num_replicas_in_sync`` because ``Model.compile``'s loss container divides an
``AUTO`` / ``SUM_OVER_BATCH_SIZE`` loss by that number before the per-replica
gradients are summed. The summed gradient is then the gradient of the global
weighted mean. In a custom training loop under a strategy, divide the value by
``strategy.num_replicas_in_sync`` yourself (as Keras does), or use
``reduction="none"``/``"sum"`` and scale as you see fit.
"""

from __future__ import annotations

from typing import Optional, Tuple

from tfrecall._backend import keras, tf

Reduction = keras.losses.Reduction
_MEAN_REDUCTIONS = (Reduction.AUTO, Reduction.SUM_OVER_BATCH_SIZE)


def as_float(x: tf.Tensor) -> tf.Tensor:
    """Converts to a float tensor; half precision is computed in float32.

    Losses are computed in at least float32 (as Keras' mixed-precision guide asks):
    ``MIN_FLOAT`` overflows float16 to ``-inf``, and ``0 * -inf`` is NaN.
    """
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating or x.dtype in (tf.float16, tf.bfloat16):
        x = tf.cast(x, tf.float32)
    return x


def check_lists(labels: tf.Tensor, logits: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Returns ``(labels, logits)`` as float ``(B, L)`` tensors of the logits' dtype.

    Raises:
      ValueError: a statically known rank other than 2, or mismatched static shapes.
    """
    logits = as_float(logits)
    labels = tf.cast(tf.convert_to_tensor(labels), logits.dtype)
    for name, tensor in (("labels", labels), ("logits", logits)):
        if tensor.shape.rank is not None and tensor.shape.rank != 2:
            raise ValueError(f"{name} must be (B, L) lists of candidates, got shape {tensor.shape}")
    if not labels.shape.is_compatible_with(logits.shape):
        raise ValueError(
            f"labels and logits must have the same (B, L) shape, got labels {labels.shape} "
            f"and logits {logits.shape}"
        )
    return labels, logits


def _list_weights(sample_weight: Optional[tf.Tensor], batch: tf.Tensor, dtype) -> tf.Tensor:
    """``(B,)`` per-list weights from ``None``, a scalar, ``(B,)`` or ``(B, 1)``."""
    if sample_weight is None:
        return tf.ones([batch], dtype)
    weights = tf.cast(tf.convert_to_tensor(sample_weight), dtype)
    rank = weights.shape.rank
    if rank == 0:
        return tf.fill([batch], weights)
    if rank == 2 and weights.shape[-1] not in (1, None):
        raise ValueError(
            "sample_weight weighs lists and must be (B,) or (B, 1), got shape "
            f"{weights.shape}; per-item weights belong in the labels (grades) or the mask"
        )
    if rank is not None and rank > 2:
        raise ValueError(f"sample_weight must be (B,) or (B, 1), got shape {weights.shape}")
    return tf.reshape(weights, [batch])


def reduce_lists(
    per_list: tf.Tensor,
    scorable: tf.Tensor,
    sample_weight: Optional[tf.Tensor] = None,
    reduction: str = Reduction.AUTO,
) -> tf.Tensor:
    """Reduces per-list losses over the lists that have something to score.

    Args:
      per_list: ``(B,)`` float per-list loss (any value where not scorable).
      scorable: ``(B,)`` bool, the lists that take part.
      sample_weight: optional ``(B,)``, ``(B, 1)`` or scalar list weights.
      reduction: ``AUTO``/``SUM_OVER_BATCH_SIZE``: weighted mean over scorable lists
        (0 when none); ``SUM``: ``sum(w * l)``; ``NONE``: ``(B,)`` ``w * l`` with 0
        for unscorable lists.

    Returns:
      A float scalar, or ``(B,)`` for ``NONE``.
    """
    batch = tf.shape(per_list)[0]
    weights = _list_weights(sample_weight, batch, per_list.dtype)
    weights = tf.where(scorable, weights, tf.zeros_like(weights))
    # `where`, not `* weights`: an unscorable list's value is arbitrary (possibly
    # inf), and 0 * inf would be NaN.
    weighted = tf.where(scorable, per_list * weights, tf.zeros_like(per_list))
    if reduction == Reduction.NONE:
        return weighted
    total = tf.reduce_sum(weighted)
    if reduction == Reduction.SUM:
        return total
    denominator = tf.stop_gradient(tf.reduce_sum(weights))
    replicas = 1
    context = tf.distribute.get_replica_context()
    if tf.distribute.has_strategy() and context is not None:
        replicas = context.num_replicas_in_sync
        if replicas > 1:
            denominator = context.all_reduce(tf.distribute.ReduceOp.SUM, denominator)
    return tf.math.divide_no_nan(total * tf.cast(replicas, total.dtype), denominator)


class ListLoss(keras.losses.Loss):
    """Base of tfrecall losses: ``(B, L)`` lists in, mean over scorable lists out.

    Subclasses implement `per_list` and return ``(loss (B,), scorable (B,) bool)``.
    ``call`` returns the per-list loss with 0 for unscorable lists (what
    ``reduction="none"`` gives with unit weights); ``__call__`` reduces as described
    in `reduce_lists`.

    Args:
      reduction: see `reduce_lists`.
      name: the loss name.
      jit_compile: compute the per-list losses with XLA (faster for wide lists, e.g.
        the (B, B) in-batch matrix; each new batch shape compiles once).

    Attributes:
      requires_log_q: True for losses whose logits must already be corrected by
        ``-log Q(item)`` (sampled losses); models refuse to train such a loss on a
        batch without ``log_q``.
    """

    requires_log_q = False

    def __init__(
        self,
        reduction: str = Reduction.AUTO,
        name: Optional[str] = None,
        jit_compile: bool = False,
        **kwargs,
    ):
        super().__init__(reduction=reduction, name=name, **kwargs)
        # XLA fuses the chain of elementwise (B, L) ops (mask, log-softmax, targets) into
        # a few passes; with in-batch negatives L = B and this is most of a step's time.
        self.jit_compile = bool(jit_compile)
        self._per_list_fn = (
            tf.function(self.per_list, jit_compile=True) if self.jit_compile else self.per_list
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config["jit_compile"] = self.jit_compile
        return config

    def per_list(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """Returns ``(per-list loss (B,), scorable (B,) bool)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement per_list")

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        per_list, scorable = self.per_list(y_true, y_pred)
        return tf.where(scorable, per_list, tf.zeros_like(per_list))

    def __call__(self, y_true, y_pred, sample_weight=None):
        with tf.name_scope(self._name_scope):
            per_list, scorable = self._per_list_fn(y_true, y_pred)
            return reduce_lists(per_list, scorable, sample_weight, self.reduction)
