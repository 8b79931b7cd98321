"""Listwise losses: the whole list of L candidates is scored at once.

All take ``labels``/``logits`` ``(B, L)`` with ``label < 0`` as padding (see
`tfrecall.losses.lists`), and return per-list losses ``(B,)``; the classes reduce
them with the mean over scorable lists (`tfrecall.losses.base`).
"""

from __future__ import annotations

from typing import Optional, Tuple

from tfrecall._backend import register, tf
from tfrecall.losses import lists
from tfrecall.losses.base import ListLoss, Reduction, check_lists

_Pair = Tuple[tf.Tensor, tf.Tensor]


def _cross_entropy(targets: tf.Tensor, logits: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """``-sum_i t_i log softmax(s)_i`` over valid items, ``(B,)``; t must be 0 off ``valid``.

    TensorFlow's fused softmax cross-entropy kernel: a few passes over ``(B, L)`` where
    the unfused log-softmax, product and mask take about ten, which dominates a step
    when the list is the whole batch (in-batch negatives, L = B). A padded slot's
    logit is MIN_FLOAT, so its probability is exactly 0 and, with a 0 target, it gets
    neither loss nor gradient.
    """
    # Callers give targets that are 0 off `valid` (a target there would meet MIN_FLOAT).
    targets = tf.stop_gradient(targets)
    return tf.nn.softmax_cross_entropy_with_logits(
        labels=targets, logits=lists.mask_logits(logits, valid), axis=-1)


def _masked_softmax(values: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Softmax over the valid slots, exactly 0 elsewhere."""
    probs = tf.nn.softmax(lists.mask_logits(values, valid), axis=-1)
    return tf.where(valid, probs, tf.zeros_like(probs))


def _has_positive(labels: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    return tf.reduce_any(tf.logical_and(valid, labels > 0), axis=-1)


def _softmax(labels, logits, mask=None) -> _Pair:
    """Softmax cross-entropy with graded targets; returns ``(per_list, scorable)``.

    Definition (DSSM, Huang et al. CIKM 2013; listwise top-1 cross-entropy):
    ``l = -sum_i t_i log softmax(s)_i`` with ``t = y+ / sum(y+)``, ``y+ = max(y, 0)``,
    both over valid items. A list scores when it has a positive.
    """
    labels, logits = check_lists(labels, logits)
    valid = lists.valid_mask(labels, mask)
    # relu already zeroes padding (label < 0); only an explicit mask needs a `where`. Every
    # (B, L) pass counts: with in-batch negatives L = B.
    positive = tf.nn.relu(labels)
    if mask is not None:
        positive = tf.where(valid, positive, tf.zeros_like(positive))
    total = tf.reduce_sum(positive, axis=-1, keepdims=True)
    targets = tf.math.divide_no_nan(positive, total)
    return _cross_entropy(targets, logits, valid), total[:, 0] > 0


def softmax_loss(labels: tf.Tensor, logits: tf.Tensor, mask: Optional[tf.Tensor] = None):
    """Per-list softmax (DSSM) loss.

    Definition: ``l = -sum_i t_i log softmax(s)_i``, ``t = y+ / sum(y+)`` over valid
    items, ``y+ = max(y, 0)``; with one positive this is ``-log p(positive)``.

    Args:
      labels: ``(B, L)`` float graded labels, ``< 0`` for padding.
      logits: ``(B, L)`` float scores.
      mask: optional ``(B, L)`` bool AND-ed with ``labels >= 0``.

    Returns:
      ``(B,)`` float per-list loss; 0 for lists without a positive.

    Example:
      >>> softmax_loss([[1., 0., -1.]], [[2., 1., 5.]])  # -log(e^2 / (e^2 + e^1))
    """
    per_list, scorable = _softmax(labels, logits, mask)
    return tf.where(scorable, per_list, tf.zeros_like(per_list))


def _kl(labels, logits, mask=None, label_temperature=1.0) -> _Pair:
    labels, logits = check_lists(labels, logits)
    valid = lists.valid_mask(labels, mask)
    scaled = labels / tf.cast(label_temperature, labels.dtype)
    log_t = tf.nn.log_softmax(lists.mask_logits(scaled, valid), axis=-1)
    log_p = tf.nn.log_softmax(lists.mask_logits(logits, valid), axis=-1)
    terms = tf.where(valid, tf.exp(log_t) * (log_t - log_p), tf.zeros_like(log_p))
    return tf.reduce_sum(terms, axis=-1), _has_positive(labels, valid)


def kl_loss(labels, logits, mask=None, label_temperature: float = 1.0) -> tf.Tensor:
    """Per-list ``KL(softmax(y / T) || softmax(s))`` over valid items.

    Definition (knowledge distillation, Hinton et al. 2015, with labels as the
    teacher's logits): ``l = sum_i t_i (log t_i - log p_i)``, ``t = softmax(y / T)``,
    ``p = softmax(s)``, both over valid items. Differs from `listnet_loss` by the
    constant entropy of ``t`` (and by ``T``), so ``l = 0`` when ``s`` matches ``y/T``.

    Args:
      labels: ``(B, L)`` float graded labels, ``< 0`` for padding.
      logits: ``(B, L)`` float scores.
      mask: optional ``(B, L)`` bool AND-ed with ``labels >= 0``.
      label_temperature: ``T > 0``; larger flattens the target distribution.

    Returns:
      ``(B,)`` float per-list loss; 0 for lists without a positive.
    """
    per_list, scorable = _kl(labels, logits, mask, label_temperature)
    return tf.where(scorable, per_list, tf.zeros_like(per_list))


def _listnet(labels, logits, mask=None) -> _Pair:
    labels, logits = check_lists(labels, logits)
    valid = lists.valid_mask(labels, mask)
    targets = _masked_softmax(labels, valid)
    return _cross_entropy(targets, logits, valid), _has_positive(labels, valid)


def listnet_loss(labels, logits, mask=None) -> tf.Tensor:
    """Per-list top-1 ListNet loss.

    Definition (Cao et al., ICML 2007, top-1 probability, eq. 5):
    ``l = -sum_i softmax(y)_i log softmax(s)_i`` over valid items.

    Args:
      labels: ``(B, L)`` float graded labels, ``< 0`` for padding.
      logits: ``(B, L)`` float scores.
      mask: optional ``(B, L)`` bool AND-ed with ``labels >= 0``.

    Returns:
      ``(B,)`` float per-list loss; 0 for lists without a positive.
    """
    per_list, scorable = _listnet(labels, logits, mask)
    return tf.where(scorable, per_list, tf.zeros_like(per_list))


def _list_mle(labels, logits, mask=None, top_k=None, seed=None) -> _Pair:
    labels, logits = check_lists(labels, logits)
    valid = lists.valid_mask(labels, mask)
    # Ties broken at random: shuffle every list, then sort stably by label
    # descending; padding goes last (sort key -inf).
    noise = tf.random.uniform(tf.shape(labels), seed=seed)
    shuffle = tf.argsort(noise, axis=-1, stable=True)
    lowest_key = tf.fill(tf.shape(labels), tf.cast(float("-inf"), labels.dtype))
    keys = tf.where(valid, labels, lowest_key)
    order = tf.argsort(
        tf.gather(keys, shuffle, batch_dims=1), axis=-1, direction="DESCENDING", stable=True
    )
    perm = tf.gather(shuffle, order, batch_dims=1)
    sorted_logits = tf.gather(logits, perm, batch_dims=1)
    sorted_valid = tf.gather(valid, perm, batch_dims=1)
    # Plackett-Luce NLL (Xia et al., ICML 2008, eq. 8): sum_i [lse(s_pi(i..n)) - s_pi(i)];
    # the reverse cumulative log-sum-exp is stable for logits of any magnitude.
    masked = lists.mask_logits(sorted_logits, sorted_valid)
    tail_lse = tf.math.cumulative_logsumexp(masked, axis=-1, reverse=True)
    contributes = sorted_valid
    if top_k is not None:
        positions = tf.range(tf.shape(labels)[-1])
        contributes = tf.logical_and(contributes, (positions < top_k)[tf.newaxis, :])
    terms = tf.where(contributes, tail_lse - masked, tf.zeros_like(masked))
    # A list scores when it orders something: two valid items with different labels.
    # (An all-tied list would only learn a random permutation.)
    big = tf.fill(tf.shape(keys), tf.cast(float("inf"), keys.dtype))
    lowest = tf.reduce_min(tf.where(valid, keys, big), axis=-1)
    highest = tf.reduce_max(keys, axis=-1)
    return tf.reduce_sum(terms, axis=-1), highest > lowest


def list_mle_loss(labels, logits, mask=None, top_k: Optional[int] = None, seed=None):
    """Per-list ListMLE loss (Plackett-Luce negative log-likelihood).

    Definition (Xia et al., ICML 2008; top-k variant, Xia et al. NeurIPS 2009):
    ``l = sum_{i<k} [log sum_{j>=i} exp(s_pi(j)) - s_pi(i)]`` where ``pi`` sorts the
    valid items by label descending, ties broken uniformly at random on each call.

    Args:
      labels: ``(B, L)`` float graded labels, ``< 0`` for padding.
      logits: ``(B, L)`` float scores.
      mask: optional ``(B, L)`` bool AND-ed with ``labels >= 0``.
      top_k: only the first ``top_k`` positions contribute (None: all).
      seed: op seed of the tie-breaking shuffle.

    Returns:
      ``(B,)`` float per-list loss; 0 for lists with no two differently labelled
      valid items (in particular lists with fewer than 2 valid items).
    """
    per_list, scorable = _list_mle(labels, logits, mask, top_k, seed)
    return tf.where(scorable, per_list, tf.zeros_like(per_list))


@register
class SoftmaxLoss(ListLoss):
    """Softmax (DSSM / sampled-softmax style) cross-entropy over each list.

    Definition: ``l = -sum_i t_i log softmax(s)_i``, ``t = y+ / sum(y+)`` over valid
    items; one positive gives ``-log p(positive)``. The batch loss is the (weighted)
    mean over lists with a positive. See `softmax_loss`.

    Args:
      reduction: Keras reduction; ``AUTO`` is the mean over scorable lists.
      name: loss name.

    Example:
      >>> model.compile(optimizer="adam", loss=tfrecall.losses.SoftmaxLoss())
    """

    def __init__(self, reduction: str = Reduction.AUTO, name: str = "softmax_loss", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)

    def per_list(self, y_true, y_pred):
        return _softmax(y_true, y_pred)


@register
class KLLoss(ListLoss):
    """``KL(softmax(y / T) || softmax(s))`` per list, for graded labels or distillation.

    Args:
      label_temperature: ``T > 0`` applied to the labels before their softmax.
      reduction: Keras reduction; ``AUTO`` is the mean over scorable lists.
      name: loss name.

    Raises:
      ValueError: ``label_temperature <= 0``.
    """

    def __init__(
        self,
        label_temperature: float = 1.0,
        reduction: str = Reduction.AUTO,
        name: str = "kl_loss",
        **kwargs,
    ):
        if not label_temperature > 0:
            raise ValueError(f"label_temperature must be > 0, got {label_temperature!r}")
        super().__init__(reduction=reduction, name=name, **kwargs)
        self.label_temperature = float(label_temperature)

    def per_list(self, y_true, y_pred):
        return _kl(y_true, y_pred, label_temperature=self.label_temperature)

    def get_config(self):
        config = super().get_config()
        config.update({"label_temperature": self.label_temperature})
        return config


@register
class ListNetLoss(ListLoss):
    """Top-1 ListNet: ``-sum_i softmax(y)_i log softmax(s)_i`` per list (Cao et al. 2007).

    Args:
      reduction: Keras reduction; ``AUTO`` is the mean over scorable lists.
      name: loss name.
    """

    def __init__(self, reduction: str = Reduction.AUTO, name: str = "list_net_loss", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)

    def per_list(self, y_true, y_pred):
        return _listnet(y_true, y_pred)


@register
class ListMLELoss(ListLoss):
    """ListMLE: Plackett-Luce NLL of the label order (Xia et al. 2008). See `list_mle_loss`.

    Args:
      top_k: only the first ``top_k`` positions of the label order contribute.
      seed: op seed of the random tie breaking (ties are re-broken on every call).
      reduction: Keras reduction; ``AUTO`` is the mean over scorable lists.
      name: loss name.

    Raises:
      ValueError: ``top_k`` not a positive int.
    """

    def __init__(
        self,
        top_k: Optional[int] = None,
        seed: Optional[int] = None,
        reduction: str = Reduction.AUTO,
        name: str = "list_mle_loss",
        **kwargs,
    ):
        if top_k is not None and (
            isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1
        ):
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        super().__init__(reduction=reduction, name=name, **kwargs)
        self.top_k = top_k
        self.seed = seed

    def per_list(self, y_true, y_pred):
        return _list_mle(y_true, y_pred, top_k=self.top_k, seed=self.seed)

    def get_config(self):
        config = super().get_config()
        config.update({"top_k": self.top_k, "seed": self.seed})
        return config


__all__ = [
    "KLLoss",
    "ListMLELoss",
    "ListNetLoss",
    "SoftmaxLoss",
    "kl_loss",
    "list_mle_loss",
    "listnet_loss",
    "softmax_loss",
]
