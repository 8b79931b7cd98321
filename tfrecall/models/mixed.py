"""Mixed negative sampling in ONE softmax: in-batch, per-row and shared negatives.

In-batch negatives alone only ever contrast a user with items that are someone's
positive, so rarely-clicked items are never pushed down (the popularity bias of the
in-batch softmax); adding negatives drawn from the whole catalogue fixes that (Mixed
Negative Sampling, Yang et al., WWW 2020). The logits of one row ``i`` are::

    [ u_i . p_j / T  for the B in-batch positives j      (B, B), label 1 on the diagonal
    | u_i . h_ik / T for the H row's own negatives k      (B, H), labels 0 (-1 = padding)
    | u_i . s_m / T  for the S negatives shared by all     (B, S), labels 0 ]

each column minus its ``log Q`` (``log_q[:, 0]`` per in-batch column j, ``log_q[:, 1:]``
per row slot, ``shared_log_q`` per shared column; Yi et al., RecSys 2019, eq. 3), and
every non-diagonal column whose item is the row's positive (an accidental hit, from
any of the three blocks) is masked (label -1), never counted as a negative.

The batch layout is the one `tfrecall.sampling.dataset` emits for the in_batch view:
``x["items"]`` ``(B, 1 + H)`` (the positive first), ``x["log_q"]`` ``(B, 1 + H)``,
``x["negatives"]`` ``{name: (S,)}``, ``x["negatives_log_q"]`` ``(S,)``.
"""

from __future__ import annotations

from typing import Optional, Tuple

from tfrecall._backend import tf
from tfrecall.losses.lists import remove_accidental_hits


def mixed_negatives_logits(
    user_embeddings: tf.Tensor,
    positive_embeddings: tf.Tensor,
    positive_ids: Optional[tf.Tensor] = None,
    *,
    row_embeddings: Optional[tf.Tensor] = None,
    row_ids: Optional[tf.Tensor] = None,
    row_labels: Optional[tf.Tensor] = None,
    shared_embeddings: Optional[tf.Tensor] = None,
    shared_ids: Optional[tf.Tensor] = None,
    log_q: Optional[tf.Tensor] = None,
    shared_log_q: Optional[tf.Tensor] = None,
    temperature: float = 1.0,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """Logits and labels of the mixed softmax (see the module docstring).

    Args:
      user_embeddings: ``(B, D)`` float.
      positive_embeddings: ``(B, D)`` float, each row's positive (the in-batch block).
      positive_ids: optional ``(B,)`` ids of the positives (accidental-hit masking; no
        masking when None).
      row_embeddings: optional ``(B, H, D)`` per-row negatives (e.g. hard ones).
      row_ids: optional ``(B, H)`` their ids.
      row_labels: optional ``(B, H)`` labels of the row negatives (0, or -1 for slots
        the sampler gave up on); default 0.
      shared_embeddings: optional ``(S, D)`` negatives shared by every row.
      shared_ids: optional ``(S,)`` their ids.
      log_q: optional ``(B, 1 + H)``: column 0 the positives' log Q (applied per in-batch
        column), then the row negatives'.
      shared_log_q: optional ``(S,)`` log Q of the shared negatives.
      temperature: logits are dot products / temperature (> 0).

    Returns:
      ``(logits, labels)``, both ``(B, B + H + S)`` float; logits already corrected by
      log Q, labels 1 (the row's positive), 0 (negative), -1 (masked).

    Raises:
      ValueError: ``temperature <= 0``.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    dtype = user_embeddings.dtype
    t = tf.cast(temperature, dtype)
    logits = [tf.matmul(user_embeddings, positive_embeddings, transpose_b=True) / t]
    batch = tf.shape(logits[0])[0]
    labels = [tf.eye(batch, dtype=dtype)]
    if positive_ids is not None:
        labels[0] = remove_accidental_hits(labels[0], positive_ids, positive_ids)
    if log_q is not None:
        log_q = tf.cast(log_q, dtype)
        logits[0] -= log_q[tf.newaxis, :, 0]
    if row_embeddings is not None:
        block = tf.einsum("bd,bhd->bh", user_embeddings, row_embeddings) / t
        if log_q is not None:
            block -= log_q[:, 1:]
        lab = tf.zeros_like(block) if row_labels is None else tf.minimum(
            tf.cast(row_labels, dtype), 0.0)
        if positive_ids is not None and row_ids is not None:
            lab = remove_accidental_hits(lab, row_ids, positive_ids)
        logits.append(block)
        labels.append(lab)
    if shared_embeddings is not None:
        block = tf.matmul(user_embeddings, shared_embeddings, transpose_b=True) / t
        if shared_log_q is not None:
            block -= tf.cast(shared_log_q, dtype)[tf.newaxis, :]
        lab = tf.zeros_like(block)
        if positive_ids is not None and shared_ids is not None:
            lab = remove_accidental_hits(lab, shared_ids, positive_ids)
        logits.append(block)
        labels.append(lab)
    return tf.concat(logits, axis=1), tf.concat(labels, axis=1)


def mixed_logits_and_labels(model, x, y=None, training=None) -> Tuple[tf.Tensor, tf.Tensor]:
    """`mixed_negatives_logits` for a `TwoTowerModel`-like model and one batch.

    Reads ``model.user_tower``, ``model.item_tower``, ``model.temperature`` and
    ``model.item_id_feature``. With a plain in-batch batch (items ``(B, 1)``, no
    ``"negatives"``) it computes exactly the model's in-batch logits and labels.

    Args:
      model: the two-tower model.
      x: the batch: ``{"user": {f: (B,)}, "items": {f: (B, 1 + H)}, "log_q"?: (B, 1 + H),
        "negatives"?: {f: (S,)}, "negatives_log_q"?: (S,)}``.
      y: optional ``(B, 1 + H)`` labels; ``y[:, 1:]`` marks row negatives to mask (-1).
      training: passed to the towers.

    Returns:
      ``(logits, labels)`` ``(B, B + H + S)``.
    """
    items = x["items"]
    ids = items.get(model.item_id_feature)
    users = model.user_tower(x["user"], training=training)  # (B, D)
    cands = model.item_tower(items, training=training)  # (B, 1 + H, D)
    width = cands.shape[1]
    extra = {}
    if width is None or width > 1:
        extra.update(row_embeddings=cands[:, 1:], row_ids=None if ids is None else ids[:, 1:],
                     row_labels=None if y is None else y[:, 1:])
    negatives = x.get("negatives")
    if negatives is not None:
        extra.update(shared_embeddings=model.item_tower(negatives, training=training),
                     shared_ids=negatives.get(model.item_id_feature),
                     shared_log_q=x.get("negatives_log_q"))
    return mixed_negatives_logits(
        users, cands[:, 0], None if ids is None else ids[:, 0], log_q=x.get("log_q"),
        temperature=model.temperature, **extra)
