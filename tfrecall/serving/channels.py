"""Multi-channel recall in one SavedModel: the two-tower index beside item2item
neighbours, an attribute inverted index and popularity, merged by per-channel quotas.

Each channel answers a batch of users with its best K catalogue rows (-1 = none), the
user's seen items excluded:

- ``two_tower``: the export's `Index` (`search(queries, K, exclude_rows)`), so whichever
  index kind was chosen serves it;
- ``item2item``: the user's recent items (the history feature, a `|`-joined string) ->
  their neighbours (`channel_tables.item2item_table`) -> each candidate's summed cosine;
- ``attribute``: the values of an item attribute in the user's history, counted; the
  `top_values` most frequent, each weighted by its share of the history -> that value's
  most popular items (the inverted index), scored share x popularity / max popularity;
- ``popularity``: training positives, the fallback that always has K items.

A channel with nothing to say (item2item and attribute for a user without history)
returns -1 rows, and the merge falls through to the next channel.

The merge (`merge_quotas`) walks the channels in their merge order: the first channel
gives its first q_1 items, the second its first q_2 items not already taken, and so on;
slots left (a channel with fewer than its quota) are filled by the items nobody took,
in channel order then list order. An item is returned once (deduplicated), tagged with
the channel that gave it. With a quota of K
for one channel, the merge returns exactly that channel's list (topped up by the others
where it has fewer than K): the quota grid of `tfrecall.recipe.channels` includes
these, so the merge chosen on the validation slice is at least the best single channel
there.

Everything is stock TensorFlow ops (gather, unsorted_segment_sum, top_k, cumsum), beside
the index's own ops. Scoring item2item, attribute and popularity is a dense `(B, n)`
scatter + `top_k`, O(n) per query like brute-force search.

Signatures of `ChannelModule` (beside ``user_embedding`` / ``item_embedding``):

- ``serving_default``: the user features -> the merge: ``item_ids`` `(B, K)`,
  ``scores`` (each item's score in its channel; channels' scales differ) and
  ``channels`` `(B, K)` string (the channel of each id, "" on empty slots); the items of
  the history feature are excluded (seen);
- ``serving_exclude``: the same plus ``exclude_item_ids`` `(B, M)` ("" pads);
- ``channel_<name>``: one channel alone, inputs of ``serving_exclude``, outputs
  ``item_ids`` and ``scores``.
"""

from __future__ import annotations

import itertools
from typing import Mapping, Optional, Sequence

import numpy as np

from tfrecall._backend import tf
from tfrecall.features.embeddings import strip_ids
from tfrecall.losses.lists import MIN_FLOAT
from tfrecall.serving.channel_tables import (
    HISTORY_CHANNELS,
    ChannelTables,
    check_channels,
)
from tfrecall.serving.export import EXCLUDE_INPUT, RecallModule, _open_rank, check_inputs
from tfrecall.serving.index_base import top_k_padded

CHANNEL_OUTPUT = "channels"
CHANNEL_PREFIX = "channel_"
MERGES = ("quotas", "fusion")
FUSION_OFFSET = 60.0  # reciprocal rank fusion's constant (Cormack et al., SIGIR 2009)


def positive_top_k(scores: tf.Tensor, exclude_rows: tf.Tensor, k: int):
    """The best `k` columns of `(B, n)` scores that are > 0 and not excluded.

    Returns `(rows, scores)` `(B, k)`: -1 and `MIN_FLOAT` where fewer qualify.
    """
    batch, n = tf.shape(scores)[0], tf.shape(scores)[1]
    valid = exclude_rows >= 0
    seg = tf.range(batch)[:, None] * n + exclude_rows
    hit = tf.math.unsorted_segment_max(
        tf.ones_like(tf.boolean_mask(seg, valid), tf.float32), tf.boolean_mask(seg, valid),
        batch * n)
    scores = tf.where(tf.reshape(hit, [batch, n]) > 0, 0.0, scores)
    top, rows = tf.math.top_k(scores, k=tf.minimum(k, n))
    keep = top > 0
    return top_k_padded(tf.where(keep, rows, -1), tf.where(keep, top, MIN_FLOAT), k)


def scatter_scores(rows: tf.Tensor, weights: tf.Tensor, num_items: int) -> tf.Tensor:
    """`(B, n)` sums of `weights` `(B, L)` at catalogue `rows` `(B, L)` (-1 and weight 0:
    ignored), by `unsorted_segment_sum` (one scatter for the batch)."""
    batch = tf.shape(rows)[0]
    valid = tf.logical_and(rows >= 0, weights > 0)
    seg = tf.range(batch)[:, None] * num_items + rows
    summed = tf.math.unsorted_segment_sum(tf.boolean_mask(weights, valid),
                                          tf.boolean_mask(seg, valid), batch * num_items)
    return tf.reshape(summed, [batch, num_items])


def first_positions(rows: tf.Tensor) -> tf.Tensor:
    """`(B, T)` int32: for each entry, the position of the first entry of its line that
    holds the same row (itself for a first occurrence and for -1)."""
    t = tf.shape(rows)[1]
    same = tf.logical_and(tf.equal(rows[:, :, None], rows[:, None, :]),
                          (rows >= 0)[:, :, None])
    same = tf.logical_or(same, tf.eye(t, dtype=tf.bool)[None])
    return tf.argmax(tf.cast(same, tf.int32), axis=-1, output_type=tf.int32)  # first max


def first_occurrence(rows: tf.Tensor) -> tf.Tensor:
    """`(B, T)` bool: the entry is a row (>= 0) that no earlier entry of its line holds."""
    own = tf.range(tf.shape(rows)[1])[None, :]
    return tf.logical_and(rows >= 0, tf.equal(first_positions(rows), own))


def fusion_positions(rows: tf.Tensor, first_pos: tf.Tensor, weights, k: int,
                     offset: float = FUSION_OFFSET):
    """Weighted reciprocal-rank fusion of the channel lists: `(B, k)` positions (of each
    item's first entry, -1 = empty) and `(B, k)` channel indices (the channel that
    contributed most; -1 = empty), best first.

    An item scores sum_c weights[c] / (offset + rank_c + 1) over the channels whose list
    holds it (rank_c from 0; Cormack et al., SIGIR 2009, with weights), compared on a
    2^-24 grid; ties and the items no weighted channel holds go in channel order, then
    list order, so a channel with nothing to say leaves its slots to the others. With one channel's
    weight 1 and the others 0 the result is that channel's list, topped up in order.

    Args:
      rows: `(B, m * k)` int32 concatenated channel lists (-1 = none).
      first_pos: `first_positions(rows)` (independent of the weights).
      weights: `(m,)` float32 channel weights (m static).
    """
    weights = tf.cast(weights, tf.float32)
    m = int(weights.shape[0])
    batch, t = tf.shape(rows)[0], m * k
    entry = tf.range(t)
    contrib = tf.gather(weights, entry // k) / (offset + tf.cast(entry % k, tf.float32) + 1.0)
    valid = rows >= 0
    contrib = tf.where(valid, contrib[None, :], 0.0)
    seg = tf.range(batch)[:, None] * t + first_pos
    total = tf.reshape(tf.math.unsorted_segment_sum(contrib, seg, batch * t), [batch, t])
    # Totals on a 2^-24 grid, so sums equal in exact arithmetic tie (0.2/61 + 0.3/61 and
    # 0.5/61); top_k puts the lower position, the earlier in merge order, first among
    # ties, which also orders the items no weighted channel holds (total 0).
    first = tf.logical_and(valid, tf.equal(first_pos, entry[None, :]))
    score = tf.where(first, tf.round(total * 2.0**24) / 2.0**24, -1.0)
    top, pos = tf.math.top_k(score, k=k)
    # The tag: the entry with the largest contribution in the item's group (first wins).
    best = tf.reshape(tf.math.unsorted_segment_max(contrib, seg, batch * t), [batch, t])
    is_best = tf.logical_and(valid, contrib >= tf.gather(best, first_pos, batch_dims=1))
    tag = tf.reshape(tf.math.unsorted_segment_min(
        tf.where(is_best, entry[None, :] // k, m), seg, batch * t), [batch, t])
    found = top >= 0
    return tf.where(found, pos, -1), tf.where(found, tf.gather(tag, pos, batch_dims=1), -1)


def quota_positions(rows: tf.Tensor, first: tf.Tensor, quotas, k: int) -> tf.Tensor:
    """`(B, k)` positions into the concatenated channel lists, merge order, -1 = empty.

    Pass 1 walks the channels in order: channel c takes its first `quotas[c]` rows that
    no earlier channel took. Pass 2 fills the slots left with the rows nobody took, in
    channel order then list order, each once. Output: pass 1's rows (channel order,
    then the channel's own order), then pass 2's.

    Args:
      rows: `(B, m * k)` int32, channel c's list at `[c * k, (c + 1) * k)`, -1 = none.
      first: `(B, m * k)` bool `first_occurrence(rows)` (it does not depend on the
        quotas, so a search over quotas computes it once).
      quotas: `(m,)` int32 items each channel gives first (m static).
      k: each list's and the merged list's length.
    """
    quotas = tf.cast(quotas, tf.int32)
    m = int(quotas.shape[0])
    big = 3 * m * k
    picked, keys = [], []
    for c in range(m):
        own = rows[:, c * k:(c + 1) * k]
        fresh = own >= 0
        if picked:
            before = tf.concat(picked, axis=1)
            fresh = tf.logical_and(fresh, tf.logical_not(tf.reduce_any(
                tf.equal(own[:, :, None], before[:, None, :]), axis=-1)))
        rank = tf.cumsum(tf.cast(fresh, tf.int32), axis=1, exclusive=True)
        take = tf.logical_and(fresh, rank < quotas[c])
        picked.append(tf.where(take, own, -1))
        keys.append(tf.where(take, c * k + rank, big))
    key1 = tf.concat(keys, axis=1)
    top, pos = tf.math.top_k(-key1, k=k)
    taken = tf.where(-top < big, tf.gather(rows, pos, batch_dims=1), -1)  # (B, k)
    in_taken = tf.reduce_any(tf.equal(rows[:, :, None], taken[:, None, :]), axis=-1)
    later = tf.logical_and(first, tf.logical_not(in_taken))
    key2 = m * k + tf.range(m * k)[None, :]  # channel order, then list order
    key = tf.where(key1 < big, key1, tf.where(later, key2, big))
    top, pos = tf.math.top_k(-key, k=k)
    return tf.where(-top < big, pos, -1)


def merge_quotas(rows: Sequence[tf.Tensor], quotas, k: int):
    """Merges channel lists `[(B, k) int32 rows]` (merge order): returns `(B, k)` positions
    into their concatenation (-1 = empty) and the merged rows."""
    cat = tf.concat(list(rows), axis=1)
    pos = quota_positions(cat, first_occurrence(cat), tf.constant(quotas, tf.int32), k)
    merged = tf.gather(cat, tf.maximum(pos, 0), batch_dims=1)
    return pos, tf.where(pos >= 0, merged, -1)


def quota_grid(num_channels: int, k: int, steps: int = 10) -> list:
    """Every split of `k` into `num_channels` quotas in multiples of `k / steps` (the last
    channel's share takes the rounding), one-channel splits included."""
    out = []
    for combo in itertools.product(range(steps + 1), repeat=num_channels):
        if sum(combo) == steps:
            q = [int(round(c * k / steps)) for c in combo]
            out.append(tuple(q))
    return out


class ChannelModule(RecallModule):
    """A `RecallModule` whose recommendation is the merge of several channels.

    Args:
      model: the trained `TwoTowerModel` (its user features must include the history
        feature when a history channel is served).
      item_ids: `(n,)` catalogue ids, row i = the tables' item i.
      index: the two-tower `Index` over the catalogue.
      k: items per list (each channel's and the merge's).
      tables: `ChannelTables` over the same catalogue.
      channels: names in merge order.
      quotas: `(len(channels),)` items each channel gives first (default: equal shares).
      merge: "quotas" (`quota_positions`) or "fusion" (`fusion_positions`).
      weights: `(len(channels),)` channel weights of the fusion (default: equal).
      history_feature, separator: the user feature holding the recent items.
      top_values: attribute values of the user's history kept as preferences.

    Raises:
      ValueError: unknown channels, quotas of another length, a history channel without
        the history feature, or tables of another catalogue.
    """

    def __init__(self, model, item_ids: np.ndarray, index, k: int, tables: ChannelTables,
                 channels: Sequence[str], quotas: Optional[Sequence[int]] = None,
                 merge: str = "quotas", weights: Optional[Sequence[float]] = None,
                 history_feature: str = "history", separator: str = "|",
                 top_values: int = 3):
        channels = check_channels(channels)
        if quotas is None:
            quotas = [k // len(channels)] * len(channels)
        if weights is None:
            weights = [1.0 / len(channels)] * len(channels)
        for name, values in (("quotas", quotas), ("weights", weights)):
            if len(values) != len(channels) or min(values) < 0:
                raise ValueError(f"{name} must give one number >= 0 per channel "
                                 f"({len(channels)}), got {list(values)}")
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        if tables.num_items != len(item_ids):
            raise ValueError(f"the channel tables cover {tables.num_items} items, the "
                             f"catalogue has {len(item_ids)}")
        user_features = model.user_tower.encoder.input_signature()
        needs = [c for c in channels if c in HISTORY_CHANNELS]
        if needs and history_feature not in user_features:
            raise ValueError(f"channels {needs} read the user feature {history_feature!r} "
                             "(the recent items), which the model does not have; train with "
                             "history_items > 0 or drop those channels")
        super().__init__(model, item_ids, index, k)
        self.channels = channels
        self.quotas = tf.constant(np.asarray(quotas, np.int32))
        self.weights = tf.constant(np.asarray(weights, np.float32))
        self.merge = merge
        self.channel_names = tf.constant(list(channels) + [""])
        self.history_feature, self.separator = history_feature, separator
        self.num_items = int(tables.num_items)
        var = lambda a: tf.Variable(a, trainable=False)  # noqa: E731
        self.popularity = var(tables.popularity.astype(np.float32))
        if "item2item" in channels:
            self.neighbors = var(tables.neighbors)
            self.neighbor_weights = var(tables.neighbor_weights)
        if "attribute" in channels:
            self.item_values = var(tables.item_values)
            self.value_items = var(tables.value_items)
            self.value_scores = var(tables.value_scores)
            self.top_values = min(int(top_values), len(tables.values))
            self.num_values = len(tables.values)
        spec = self.input_specs["serving_exclude"]
        for name in channels:
            self.input_specs[CHANNEL_PREFIX + name] = spec
            setattr(self, CHANNEL_PREFIX + name, self._channel_function(name, spec))

    def signatures(self) -> dict:
        out = super().signatures()
        out.update({CHANNEL_PREFIX + c: getattr(self, CHANNEL_PREFIX + c)
                    for c in self.channels})
        return out

    def _channel_function(self, name: str, spec: Mapping[str, tf.TensorSpec]):
        signature = CHANNEL_PREFIX + name

        @tf.function(input_signature=[_open_rank(spec)])
        def channel(features):
            features = dict(check_inputs(features, spec, signature))
            exclude = strip_ids(features.pop(EXCLUDE_INPUT))
            history, excluded = self._seen_rows(features, exclude)
            rows, scores = self._channel(name, features, history, excluded)
            return self._ids(rows, scores)

        return channel

    def _recommend(self, features, exclude_ids):
        history, excluded = self._seen_rows(features, exclude_ids)
        lists = [self._channel(c, features, history, excluded) for c in self.channels]
        cat_rows = tf.concat([r for r, _ in lists], axis=1)
        cat_scores = tf.concat([s for _, s in lists], axis=1)
        if self.merge == "fusion":
            pos, channel = fusion_positions(cat_rows, first_positions(cat_rows), self.weights,
                                            self.k)
        else:
            pos = quota_positions(cat_rows, first_occurrence(cat_rows), self.quotas, self.k)
            channel = tf.where(pos >= 0, pos // self.k, -1)
        safe = tf.maximum(pos, 0)
        rows = tf.where(pos >= 0, tf.gather(cat_rows, safe, batch_dims=1), -1)
        scores = tf.where(pos >= 0, tf.gather(cat_scores, safe, batch_dims=1), MIN_FLOAT)
        channel = tf.where(channel >= 0, channel, len(self.channels))
        out = self._ids(rows, scores)
        out[CHANNEL_OUTPUT] = tf.gather(self.channel_names, channel)
        return out

    def _ids(self, rows, scores):
        ids = tf.gather(self.item_ids, tf.maximum(rows, 0))
        return {"item_ids": tf.where(rows >= 0, ids, ""), "scores": scores}

    def _seen_rows(self, features, exclude_ids):
        """`(B, H)` history rows and `(B, H + M)` excluded rows (history + the list)."""
        batch = tf.shape(next(iter(features.values())))[0]
        if self.history_feature in features:
            tokens = tf.strings.split(features[self.history_feature], sep=self.separator)
            rows = tf.ragged.map_flat_values(
                lambda t: tf.cast(self.id_to_row.lookup(strip_ids(t)), tf.int32), tokens)
            history = rows.to_tensor(default_value=-1)
        else:
            history = tf.fill([batch, 0], -1)
        if exclude_ids is None:
            return history, history
        listed = tf.cast(self.id_to_row.lookup(exclude_ids), tf.int32)
        return history, tf.concat([history, listed], axis=1)

    def _channel(self, name, features, history, excluded):
        if name == "two_tower":
            return self.index.search(self.embed_query(features), self.k, excluded)
        if name == "popularity":
            scores = tf.tile(self.popularity[None], [tf.shape(history)[0], 1])
            return positive_top_k(scores, excluded, self.k)
        if name == "item2item":
            safe = tf.maximum(history, 0)
            rows = tf.gather(self.neighbors, safe)  # (B, H, N)
            weights = tf.gather(self.neighbor_weights, safe) * tf.cast(
                history >= 0, tf.float32)[..., None]
            batch = tf.shape(history)[0]
            scores = scatter_scores(tf.reshape(rows, [batch, -1]),
                                    tf.reshape(weights, [batch, -1]), self.num_items)
            return positive_top_k(scores, excluded, self.k)
        return self._attribute(history, excluded)

    def _attribute(self, history, excluded):
        batch = tf.shape(history)[0]
        values = tf.gather(self.item_values, tf.maximum(history, 0))  # (B, H, A)
        values = tf.where(history[..., None] >= 0, values, -1)
        flat = tf.reshape(values, [batch, -1])
        counts = scatter_scores(flat, tf.ones_like(flat, tf.float32), self.num_values)
        seen = tf.reduce_sum(tf.cast(history >= 0, tf.float32), axis=1, keepdims=True)
        share, top = tf.math.top_k(counts / tf.maximum(seen, 1.0), k=self.top_values)
        rows = tf.gather(self.value_items, top)  # (B, P, N)
        weights = share[..., None] * tf.gather(self.value_scores, top)
        scores = scatter_scores(tf.reshape(rows, [batch, -1]),
                                tf.reshape(weights, [batch, -1]), self.num_items)
        return positive_top_k(scores, excluded, self.k)


__all__ = ["CHANNEL_OUTPUT", "CHANNEL_PREFIX", "ChannelModule", "FUSION_OFFSET", "MERGES",
           "first_occurrence", "first_positions", "fusion_positions",
           "merge_quotas", "positive_top_k", "quota_grid", "quota_positions",
           "scatter_scores"]
