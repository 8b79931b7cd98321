"""Item frequencies for sampling-bias correction: exact counts and a streaming estimate.

In-batch negatives are the other rows' positives, so an item is a candidate about as
often as it is a positive: ``Q(item)`` is its frequency in the training stream, and the
model subtracts ``log Q`` from its logits (Yi et al., RecSys 2019, eq. 3).

- `positive_frequencies`: the exact share of each item among the training positives
  (one pass over a log that fits in memory); `FrequencyTable` looks the same shares up
  inside a graph (a TFRS `compute_loss`, a `tf.data` map).
- `StreamingFrequencyEstimator`: Yi et al.'s Algorithm 2 for streams too large to
  count, or whose distribution drifts. Hashed arrays ``A`` (the step an item was last
  seen) and ``B`` (the estimated gap between its occurrences, in steps) are updated
  every batch::

      B[h(y)] <- (1 - alpha) * B[h(y)] + alpha * (t - A[h(y)])
      A[h(y)] <- t

  and ``1 / B[h(y)]`` estimates how often ``y`` occurs per step. Two extensions:

  * An item seen ``c`` times in one batch makes ``c`` updates whose gaps share the
    ``t - A`` steps since it was last seen: ``B <- (1 - alpha)^c B + (1 - (1 -
    alpha)^c) (t - A) / c`` (for ``c = 1`` exactly Algorithm 2). So ``1 / B``
    estimates the EXPECTED COUNT per batch (``batch_size * q``), not the probability
    of appearing at least once, which saturates at 1 for popular items.
  * Several hash functions (Yi et al., sec. 4, "multiple hashings"): a collision
    only makes an item look more frequent (its slot is hit by others too), so the
    estimate takes the LARGEST gap over the hash arrays.

The estimator is a `tf.Module` of `tf.Variable`s, usable eagerly, inside a
`tf.function` (a model's ``train_step``) or inside a sequential ``tf.data`` map.

TFRS: ``tfrs.tasks.Retrieval(candidate_sampling_probability=p)`` subtracts
``log clip(p, 1e-6, 1)``, so it wants the per-draw probability ``q`` (at most 1), not
tfrecall's expected count per batch ``B q`` (over 1 for popular items, and clipped
there): `FrequencyTable.sampling_probability` and
`StreamingFrequencyEstimator.sampling_probability` give ``q``. The constant ``log B``
between the two cancels in softmax losses (TFRS' default, `SoftmaxLoss`,
`SampledSoftmaxLoss`) but not in per-item sigmoid losses (`NCELoss`). Items rarer than
``1e-6`` are clipped by TFRS: their correction saturates at ``log 1e-6``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from tfrecall._backend import tf
from tfrecall.ids import catalogue_index
from tfrecall.io.schema import RecallData


def positive_frequencies(train: RecallData, item_ids: Sequence[str]) -> np.ndarray:
    """Share of the training positives held by each of ``item_ids``.

    Args:
      train: the training log; rows with ``positive`` count.
      item_ids: ``(N,)`` ids to report (any order; ids never positive get 0).

    Returns:
      ``(N,)`` float64 ``count(item) / number of positives``.

    Raises:
      ValueError: ``train`` has no positive row.
    """
    inter = train.interactions
    pos = np.asarray(inter["item_id"], dtype=object)[np.asarray(inter["positive"], bool)]
    if len(pos) == 0:
        raise ValueError(f"{train.name!r} has no positive interactions to count frequencies of")
    query = np.asarray(item_ids, dtype=object).reshape(-1)
    first = catalogue_index(query, query)  # a repeated id reports its first copy's share
    at = catalogue_index(query, pos)  # by dict: no sort of the positives' strings
    return np.bincount(at[at >= 0], minlength=len(query))[first] / len(pos)


def item_shares(positive_ids) -> Tuple[np.ndarray, np.ndarray]:
    """The distinct ids of a list of positives and the share of the list each holds.

    Args:
      positive_ids: `(N,)` ids of the training positives (one per positive; strings,
        bytes or integers), repeats counted.

    Returns:
      `(ids, shares)`: `(U,)` sorted distinct ids and `(U,)` float64 ``count / N``.

    Raises:
      ValueError: no ids.
    """
    ids, counts = np.unique(np.asarray(positive_ids), return_counts=True)
    if len(ids) == 0:
        raise ValueError("positive_ids is empty: no frequencies to count")
    return ids, counts.astype(np.float64) / counts.sum()


class FrequencyTable(tf.Module):
    """Exact share of each item among the training positives, looked up in a graph.

    For TFRS: ``task(q, c, candidate_sampling_probability=table.sampling_probability(
    features["movie_title"]))`` inside ``compute_loss`` (a ``tf.lookup`` table, so it
    runs in ``model.fit``'s graph and saves with the model).

    Args:
      positive_ids: `(N,)` ids of the training positives (strings, bytes or integers;
        the lookups take the same kind), repeats counted (`item_shares`).
      name: module name.

    Raises:
      ValueError: no ids.
    """

    def __init__(self, positive_ids, name: Optional[str] = None):
        super().__init__(name=name)
        ids, shares = item_shares(positive_ids)
        integer = ids.dtype.kind in "iu"
        keys = tf.constant(ids.astype(np.int64) if integer else ids)
        self.key_dtype = keys.dtype
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.constant(shares, tf.float32)),
            default_value=0.0)

    def sampling_probability(self, ids) -> tf.Tensor:
        """float32 share of each id (0 for ids never positive), shaped like `ids`."""
        return self.table.lookup(tf.cast(tf.convert_to_tensor(ids), self.key_dtype))

    def log_q(self, ids) -> tf.Tensor:
        """``log sampling_probability(ids)`` (-inf for ids never positive)."""
        return tf.math.log(self.sampling_probability(ids))


class StreamingFrequencyEstimator(tf.Module):
    """Per-item expected count per step, estimated online (Yi et al., RecSys 2019, Alg. 2).

    Call `update` once per training batch with the batch's candidate ids; `log_q`
    then gives ``log(expected count per batch)``, the in-batch sampling-bias
    correction (the constant ``log batch_size`` between count and probability cancels
    in a softmax).

    Args:
      num_buckets: size H of each hashed array (collisions grow as the number of
        distinct items approaches H).
      num_hashes: number of independent hash arrays (>= 1); the estimate takes the
        largest gap over them.
      alpha: learning rate of the moving average of gaps, in (0, 1]; smaller is
        smoother and slower to follow drift (about ``1 / alpha`` occurrences).
      initial_gap: ``B`` before an item is first seen (> 0): the estimate for unseen
        items is ``1 / initial_gap`` occurrences per step.
      name: module name.

    Raises:
      ValueError: a bad argument (named in the message).

    Example:
      >>> est = StreamingFrequencyEstimator(num_buckets=1 << 16)
      >>> est.update(tf.constant(["a", "b", "a"]))  # step 1
      >>> est.log_q(tf.constant(["a"]))  # log of about 2 occurrences per step
    """

    def __init__(
        self,
        num_buckets: int = 1 << 20,
        num_hashes: int = 2,
        alpha: float = 0.01,
        initial_gap: float = 1000.0,
        name: Optional[str] = None,
    ):
        super().__init__(name=name)
        for arg, value in (("num_buckets", num_buckets), ("num_hashes", num_hashes)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{arg} must be an integer >= 1, got {value!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        if not initial_gap > 0.0:
            raise ValueError(f"initial_gap must be > 0, got {initial_gap!r}")
        self.num_buckets = int(num_buckets)
        self.num_hashes = int(num_hashes)
        self.alpha = float(alpha)
        self.initial_gap = float(initial_gap)
        size = self.num_hashes * self.num_buckets
        # One flat array per quantity; hash function h owns slots [h*H, (h+1)*H).
        self.last_step = tf.Variable(tf.zeros([size], tf.int64), trainable=False,
                                     name="last_step")
        self.gap = tf.Variable(tf.fill([size], tf.constant(self.initial_gap, tf.float32)),
                               trainable=False, name="gap")
        self.step = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="step")

    def _slots(self, ids: tf.Tensor) -> tf.Tensor:
        """``(num_hashes, n)`` int64 slots of flat string ids (keyed SipHash per array)."""
        if ids.dtype != tf.string:
            ids = tf.strings.as_string(ids)
        slots = [
            tf.strings.to_hash_bucket_strong(ids, self.num_buckets, key=[h + 1, 0x9E3779B9])
            + h * self.num_buckets
            for h in range(self.num_hashes)
        ]
        return tf.stack(slots)

    def update(self, ids) -> tf.Tensor:
        """Advances one step with the ids seen in this batch (any shape, any repeats).

        Args:
          ids: tf.string (or integer) ids of any shape; ``""`` padding is ignored.

        Returns:
          The new step number (int64 scalar).
        """
        ids = tf.reshape(tf.convert_to_tensor(ids), [-1])
        if ids.dtype == tf.string:
            ids = tf.boolean_mask(ids, tf.not_equal(ids, ""))
        t = self.step.assign_add(1)
        unique, _, counts = tf.unique_with_counts(ids, out_idx=tf.int64)
        slots = tf.reshape(self._slots(unique), [-1])
        counts = tf.tile(counts, [self.num_hashes])
        # Distinct ids sharing a slot (a collision) are one stream for that slot.
        slot_ids, position = tf.unique(slots, out_idx=tf.int64)
        slot_counts = tf.math.unsorted_segment_sum(counts, position, tf.size(slot_ids))
        last = tf.gather(self.last_step, slot_ids)
        gap = tf.gather(self.gap, slot_ids)
        a = tf.constant(self.alpha, tf.float32)
        c = tf.cast(slot_counts, tf.float32)
        # c occurrences share the t - A steps since the slot was last seen: c moving-
        # average updates with the gap (t - A) / c each (see module docstring).
        decay = tf.pow(1.0 - a, c)
        new_gap = decay * gap + (1.0 - decay) * tf.cast(t - last, tf.float32) / c
        self.gap.scatter_update(tf.IndexedSlices(new_gap, slot_ids))
        self.last_step.scatter_update(tf.IndexedSlices(tf.fill(tf.shape(slot_ids), t), slot_ids))
        return t

    def expected_count(self, ids) -> tf.Tensor:
        """Estimated occurrences per step (batch) of each id: ``1 / max_h B[h(id)]``.

        Args:
          ids: tf.string (or integer) ids of any shape S.

        Returns:
          float32 tensor of shape S.
        """
        ids = tf.convert_to_tensor(ids)
        flat = tf.reshape(ids, [-1])
        gaps = tf.gather(self.gap, self._slots(flat))  # (num_hashes, n)
        gap = tf.maximum(tf.reduce_max(gaps, axis=0), 1e-6)
        return tf.reshape(1.0 / gap, tf.shape(ids))

    def log_q(self, ids) -> tf.Tensor:
        """``log expected_count(ids)``, the in-batch log Q of each id (shape of ``ids``)."""
        return tf.math.log(self.expected_count(ids))

    def sampling_probability(self, ids, batch_size: int) -> tf.Tensor:
        """Per-draw probability ``q = expected_count / batch_size`` (TFRS'
        ``candidate_sampling_probability``), shaped like `ids`.

        Args:
          ids: tf.string (or integer) ids of any shape.
          batch_size: ids passed to `update` per step (the in-batch candidates, B).
        """
        valid = isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool)
        if not valid or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        return self.expected_count(ids) / float(batch_size)
