"""One entry point from a training log to ``model.fit`` batches: `make_training_dataset`.

A `SamplingConfig` names the view and the negative sources; `TrainingSamples` turns
the log into a ``tf.data.Dataset`` whose every iteration is one epoch with a new
order and FRESH negatives (stateless random ops seeded by ``(seed, epoch, batch)``:
the same seed gives the same epochs), plus counts of every fallback (`describe`).

Views (the batch layouts of `tfrecall.sampling.requests`; y ``(B, L)``, -1 = padding):

- ``in_batch``: one row per positive. items ``(B, 1 + H)``: the positive, then H
  per-row hard negatives when "hard" is a source. With "uniform"/"popularity" the
  batch also carries S = ``num_negatives`` negatives SHARED by all rows:
  ``x["negatives"]`` ``{name: (S,)}`` and ``x["negatives_log_q"]`` ``(S,)`` (mixed
  negative sampling, Yang et al., WWW 2020; the model needs
  `tfrecall.models.mixed.mixed_logits_and_labels` to use them).
- ``pointwise``: each positive and ``num_negatives`` negatives as separate rows, L = 1.
- ``pairwise``: ``(positive, negative)``, L = 2, by ``pairwise_mode``: ``random``
  (negative from the sources), ``not_exposed`` (an item the ranker listed for the
  request but did not show; the sources are the fallback), ``head_tail`` (a head vs a
  tail item of a request's ranked list), ``segments`` (items of two different score
  segments; the better-ranked one is the positive).
- ``listwise``: ``sampled`` (the positive then L - 1 negatives) or ``graded`` (the
  logged graded labels of each request, see `samples.graded_lists`).
- ``distill``: per request, the ranker's top ``distill_top_n`` split into L segments,
  one item sampled per segment; labels are the ranker scores shifted so the list's
  lowest is 0 (KLLoss/ListNetLoss take a softmax of them, which the shift leaves
  unchanged, and label < 0 stays padding).

log Q (``x["log_q"]``, ``(B, L)``, when ``log_q=True`` and the view samples) is the log
of the EXPECTED NUMBER of copies of the item among the candidates its row is scored
against: ``k * Q(item)`` for k per-row draws from ``Q``, ``B * q(item)`` for the
in-batch candidates (q = its share of the training positives, exact or streaming),
and for a mix the sum over sources (the balance heuristic of multiple importance
sampling, Veach & Guibas 1995): ``B q(j) + S Q_easy(j) [+ H / |pool|]``. A constant
factor cancels in a softmax, so with in-batch negatives alone this is the usual
``log q`` correction (Yi et al., RecSys 2019, eq. 3).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Dict, List, Optional, Tuple

import numpy as np

from tfrecall._backend import tf
from tfrecall.ids import catalogue_index, positive_counts, vocab_codes
from tfrecall.io.schema import RecallData
from tfrecall.sampling import negatives as neg
from tfrecall.sampling.config import EASY_SOURCES, SamplingConfig
from tfrecall.sampling.epochs import epoch_batches
from tfrecall.sampling.features import FeatureRows, FeatureStore
from tfrecall.sampling.frequency import StreamingFrequencyEstimator
from tfrecall.sampling.requests import RankerLists, graded_lists, ranked_requests

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class SamplingInfo:
    """What one epoch holds and every fallback taken, for logs and run summaries.

    Attributes:
      view: the config's view.
      negatives: the resolved sources.
      rows_per_epoch: examples (lists) per epoch.
      batches_per_epoch: batches per epoch.
      counts: named counts (positives, users, each fallback; see `describe`).
      notes: sentences about choices a reader should know.
    """

    view: str
    negatives: Tuple[str, ...]
    rows_per_epoch: int
    batches_per_epoch: int
    counts: Dict[str, int] = dataclasses.field(default_factory=dict)
    notes: List[str] = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        lines = [f"samples: view={self.view} negatives={','.join(self.negatives) or '-'} "
                 f"rows/epoch={self.rows_per_epoch} batches/epoch={self.batches_per_epoch}"]
        lines += [f"  {name}: {value}" for name, value in self.counts.items()]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


_Batch = Tuple[dict, tf.Tensor]


class TrainingSamples:
    """The training dataset of one `SamplingConfig`, with its `SamplingInfo`.

    Args:
      train: the training log.
      catalogue: ``(N,)`` str ids negatives are drawn from (distinct; order kept).
      user_store: user features (`FeatureStore` keyed by ``user_id``).
      item_store: item features (keyed by ``item_id``).
      config: the `SamplingConfig`.
      batch_size: rows (lists) per batch.
      ranker_lists: optional `RankerLists` (hard ranker windows, not_exposed pairs,
        head_tail/segments pairs, distill); without them ranker views use the log's
        ``ranker_score`` and hard negatives use exposures (counted fallbacks).
      hard_negatives: optional `negatives.NegativePool` overriding the hard source
        (e.g. `negatives.mine_hard_negatives` from the current model).
      shard: ``(num_shards, index)``: only batches ``index, index + num_shards, ...``
        of each epoch (one permutation for all shards: disjoint, together one epoch),
        one pipeline per worker; `info` counts this shard's batches and rows.

    Attributes:
      dataset: ``tf.data.Dataset`` of ``(x, y)``; each iteration is one epoch.
      info: `SamplingInfo`.
      frequency_estimator: the `StreamingFrequencyEstimator` (frequency="streaming").

    Raises:
      ValueError: an empty log or catalogue, no positives where the view needs them,
        a catalogue smaller than the negatives requested, or missing columns.
    """

    def __init__(
        self,
        train: RecallData,
        catalogue: np.ndarray,
        user_store: FeatureStore,
        item_store: FeatureStore,
        config: SamplingConfig,
        batch_size: int,
        *,
        ranker_lists: Optional[RankerLists] = None,
        hard_negatives: Optional[neg.NegativePool] = None,
        shard: Tuple[int, int] = (1, 0),
    ):
        num_shards, shard_index = shard = tuple(int(v) for v in shard)
        if num_shards < 1 or not 0 <= shard_index < num_shards:
            raise ValueError(f"shard must be (num_shards >= 1, 0 <= index < num_shards): {shard}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or \
                batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if train.num_interactions == 0:
            raise ValueError(f"{train.name!r} has no interactions: nothing to train on")
        cat = np.asarray(list(dict.fromkeys(np.asarray(catalogue, dtype=object).reshape(-1)
                                            .tolist())), dtype=object)
        if len(cat) == 0:
            raise ValueError("catalogue is empty: no item to train or sample negatives from")
        if hard_negatives is not None and "hard" not in config.negatives:
            raise ValueError(f"hard_negatives were given, but the config's negatives "
                             f"{config.negatives} do not include 'hard', so they would go "
                             "unused; add 'hard' to SamplingConfig.negatives")
        self.config = config
        self.batch_size = int(batch_size)
        self.train, self.catalogue = train, cat
        self.user_store, self.item_store = user_store, item_store
        self.ranker_lists, self.hard_pool = ranker_lists, hard_negatives
        self.frequency_estimator = None
        # Catalogue index -> id and feature row; index N (for -1) is the padding id "".
        self._cat = FeatureRows(item_store, np.append(cat, ""))
        self._counts: Dict[str, int] = {}
        self._notes: List[str] = []
        build = {"in_batch": self._in_batch, "pointwise": self._pointwise,
                 "pairwise": self._pairwise, "listwise": self._listwise,
                 "distill": self._distill}[config.view]
        num_rows, make_batch, post = build()
        self.dataset = epoch_batches(num_rows, self.batch_size, config, make_batch, post,
                                     shard)
        batches = num_rows // self.batch_size if config.drop_remainder else \
            -(-num_rows // self.batch_size)
        if num_shards > 1:
            own = np.arange(shard_index, batches, num_shards)
            if not len(own):
                raise ValueError(f"shard {shard}: no batch of {batches}; lower the batch size")
            num_rows = int(np.minimum(self.batch_size, num_rows - own * self.batch_size).sum())
            batches = len(own)
        self.info = SamplingInfo(config.view, config.negatives, num_rows, batches,
                                 self._counts, self._notes)

    def describe(self) -> str:
        return self.info.describe()

    # ------------------------------------------------------------------ pieces
    def _cat_ids_rows(self, idx: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """Catalogue indices -> (str ids, item-store rows); -1 -> ("", the missing row)."""
        return self._cat.ids_rows(tf.where(idx >= 0, idx, len(self.catalogue)))

    def _index(self, pos_side: FeatureRows, rows: tf.Tensor) -> tf.Tensor:
        """int64 catalogue index of the rows' positives (-1 off it): see `_positives`."""
        code = tf.cast(tf.gather(pos_side.code, rows), tf.int64)
        return tf.where(code < len(self.catalogue), code, -1)

    def _sides(self, p: "_Positives") -> Tuple[FeatureRows, FeatureRows]:
        """User and positive-item sides of the positive rows (distinct ids, row codes)."""
        return (FeatureRows(self.user_store, p.users, p.user_code),
                FeatureRows(self.item_store, p.items, p.item_code))

    def _positives(self) -> "_Positives":
        """The positive rows, users and items each coded once (no per-row str copy or sort)."""
        inter = self.train.interactions
        mask = np.asarray(inter["positive"], bool)
        if not mask.any():
            raise ValueError(f"{self.train.name!r} has no positive interactions (of "
                             f"{self.train.num_interactions} rows) to build samples from")
        users, code = vocab_codes(self.user_store.ids, inter["user_id"])
        in_log = np.count_nonzero(np.bincount(code, minlength=len(users)))
        code = code if mask.all() else code[mask]  # a log of positives only: no copy
        # Items: the catalogue, its padding id "" (N), then positives off it; idx = code < N.
        n = len(self.catalogue)
        items, item_code = vocab_codes(np.append(self.catalogue, ""), inter["item_id"], mask)
        idx = np.where(item_code < n, item_code, -1)
        with_positives = np.count_nonzero(np.bincount(code, minlength=len(users)))
        self._counts["positives"] = int(mask.sum())
        self._counts["users_with_positives"] = int(with_positives)
        self._counts["users_without_positives"] = int(in_log - with_positives)
        self._counts["positives_off_catalogue"] = int(np.sum(idx < 0))
        requests = (np.asarray(inter["request_id"], dtype=object)[mask]
                    if "request_id" in inter else None)
        heavy = np.bincount(code, minlength=len(users)) - np.bincount(  # on the catalogue
            code[idx < 0], minlength=len(users)) >= n
        if heavy.any():
            # Each such user's per-row negatives can only be masked (label -1).
            ok = (idx >= 0) & heavy[code]  # only users with >= N positives can cover it
            full = np.unique(code[ok] * n + idx[ok]) // n
            covering = np.bincount(full, minlength=len(users)) >= n
            self._counts["users_covering_catalogue"] = int(covering.sum())
        # int32 where they fit, one array at a time: `FeatureRows` copies them into tensors
        # while they are held (20M positives: 229 MiB instead of 459).
        small = max(len(users), len(items)) < 2 ** 31
        code = code.astype(np.int32) if small else code
        item_code = item_code.astype(np.int32) if small else item_code
        idx = idx.astype(np.int32) if small else idx
        return _Positives(users, code, items, item_code, idx, requests)

    def _easy(self) -> neg.CategoricalSampler:
        """The easy mixture of the configured sources (uniform when none: the fallback)."""
        samplers = []
        for source in self.config.negatives:
            if source == "uniform":
                samplers.append(neg.CategoricalSampler.uniform(len(self.catalogue)))
            elif source == "popularity":
                counts = positive_counts(self.train, self.catalogue)
                samplers.append(neg.CategoricalSampler.popularity(counts,
                                                                  self.config.popularity_alpha))
        if not samplers:
            samplers = [neg.CategoricalSampler.uniform(len(self.catalogue))]
        return neg.CategoricalSampler.mixture(samplers)

    def _check_catalogue(self, wanted: int, what: str) -> None:
        if len(self.catalogue) < wanted:
            raise ValueError(f"catalogue has {len(self.catalogue)} distinct items, fewer than "
                             f"the {wanted} {what} requested")

    def _hard(self, p: "_Positives", pool: Optional[neg.NegativePool] = None):
        """Pool sampler and per-row group for hard negatives, with fallback counts."""
        candidates = []  # (pool, count name), tried in order; rows keyed by its key_kind
        pool = pool if pool is not None else self.hard_pool
        if pool is not None:
            candidates.append((pool, f"rows_with_pool: {pool.source}"))
        else:
            if self.ranker_lists is not None and p.requests is not None:
                candidates.append((neg.ranker_window_pool(
                    self.ranker_lists, self.catalogue, self.config.hard_negative_window),
                    "hard_rows_from_ranker_window"))
            if p.requests is not None:
                candidates.append((neg.exposure_pool(self.train, self.catalogue, "request"),
                                   "hard_rows_from_request_exposures"))
            candidates.append((neg.exposure_pool(self.train, self.catalogue, "user"),
                               "hard_rows_from_user_exposures"))
        group = np.full(len(p.user_code), -1, np.int64)
        offsets, items, base_group, base_item = [], [], 0, 0
        for cand, name in candidates:
            if cand.key_kind == "user":  # each distinct user looked up once
                g = cand.group_of(p.users)[p.user_code]
            elif p.requests is not None:
                g = cand.group_of(p.requests)
            elif len(cand.keys):
                raise ValueError(f"hard negatives keyed by {cand.key_kind} need a "
                                 f"'{cand.key_kind}_id' column in {self.train.name!r}")
            else:
                g = np.full(len(group), -1)
            take = (group < 0) & (g >= 0)
            group[take] = g[take] + base_group
            self._counts[name] = int(take.sum())
            offsets.append(cand.offsets[:-1] + base_item)
            items.append(cand.items)
            base_group += len(cand.keys)
            base_item += len(cand.items)
        self._counts["hard_rows_fallback_easy"] = int(np.sum(group < 0))
        merged = neg.NegativePool(np.arange(base_group).astype(object), "request",
                                  np.concatenate(offsets + [[base_item]]).astype(np.int64),
                                  np.concatenate(items).astype(np.int64), "hard")
        return neg.PoolSampler(merged), group

    def _row_mix(self, p: "_Positives", hard: bool, pool: Optional[neg.NegativePool] = None,
                 hard_fraction=None):
        """`NegativeMix` for per-row negatives and each row's pool group."""
        positives = neg.PositiveSet(p.user_code, p.idx, len(self.catalogue))
        if hard:
            sampler, group = self._hard(p, pool)
            fraction = self.config.hard_fraction if hard_fraction is None else hard_fraction
            if not any(s in EASY_SOURCES for s in self.config.negatives):
                fraction = 1.0  # "hard" alone: every slot hard where the row has a pool
        else:
            sampler, group, fraction = None, np.full(len(p.user_code), -1, np.int64), 0.0
        mix = neg.NegativeMix(self._easy(), sampler, fraction, positives)
        return mix, tf.constant(group, tf.int64)

    # ------------------------------------------------------------------- views
    def _in_batch(self):
        cfg = self.config
        p = self._positives()
        hard = "hard" in cfg.negatives
        shared = [s for s in cfg.negatives if s in EASY_SOURCES]
        num_shared = cfg.num_negatives if shared else 0
        if shared:
            self._check_catalogue(num_shared, "shared negatives per batch (num_negatives)")
        # EBR's easy:hard ratio: the easy negatives of a row are the B - 1 other
        # positives plus the S shared ones.
        num_hard = max(1, int(round((self.batch_size - 1 + num_shared) / max(
            cfg.easy_hard_ratio, 1e-9)))) if hard else 0
        if hard:
            num_hard = min(num_hard, 4 * self.batch_size)
            self._counts["hard_negatives_per_row"] = num_hard
            mix, group = self._row_mix(p, True, hard_fraction=1.0)
        easy = self._easy()
        user_side, pos_side = self._sides(p)
        streaming = cfg.log_q and cfg.frequency == "streaming"
        # Each item's share of the positives (`frequency.positive_frequencies`), by code.
        freq = tf.constant(np.bincount(p.item_code, minlength=len(p.items)) / len(p.item_code),
                           tf.float64)
        if cfg.log_q:
            self._notes.append(
                f"log_q = log(B q(item){' + S Q_easy(item)' if shared else ''}"
                f"{' [+ H/|pool| on hard columns]' if hard else ''}), q from "
                f"{cfg.frequency} positive frequencies")
        if shared or hard:
            self._notes.append("mixed negatives: batches carry x['negatives'], which "
                               "TwoTowerModel scores beside the in-batch candidates "
                               "(tfrecall.models.mixed)")

        def make_batch(rows, seed) -> _Batch:
            s = neg.split_seed(seed, 2)
            b = tf.cast(tf.shape(rows)[0], tf.float64)
            pos_idx = self._index(pos_side, rows)
            pos_ids, pos_rows = pos_side.ids_rows(rows)
            cols, feature_rows = [pos_ids[:, None]], [pos_rows[:, None]]
            labels = [tf.ones_like(pos_rows[:, None], tf.float32)]
            static = [float(num_shared) * easy.prob(pos_idx)[:, None]]
            in_batch = [b * tf.gather(freq, tf.gather(pos_side.code, rows))[:, None]]
            if hard:
                draw = mix.sample(num_hard, tf.gather(user_side.code, rows),
                                  tf.gather(group, rows), s[0])
                hard_ids, hard_rows = self._cat_ids_rows(draw.items)
                cols.append(hard_ids)
                feature_rows.append(hard_rows)
                labels.append(tf.where(draw.valid, 0.0, -1.0))
                static.append(float(num_shared) * easy.prob(draw.items) + draw.expected_count)
                in_batch.append(b * tf.gather(freq, tf.maximum(draw.items, 0)))
            x = {"user": user_side.features(rows),
                 "items": self.item_store.lookup_rows(tf.concat(feature_rows, 1),
                                                      tf.concat(cols, 1))}
            static, in_batch = tf.concat(static, 1), tf.concat(in_batch, 1)
            if shared:
                drawn = easy.sample([num_shared], s[1])
                shared_ids, shared_rows = self._cat_ids_rows(drawn)
                x["negatives"] = self.item_store.lookup_rows(shared_rows, shared_ids)
                neg_static = float(num_shared) * easy.prob(drawn)
                neg_in_batch = b * tf.gather(freq, drawn)
            if cfg.log_q:
                # Streaming: the in-batch term is added by the sequential `post` map.
                x["log_q"] = static if streaming else _log(static + in_batch)
                if shared:
                    x["negatives_log_q"] = neg_static if streaming else _log(
                        neg_static + neg_in_batch)
            return x, tf.concat(labels, 1)

        post = None
        if streaming:
            est = self.frequency_estimator = StreamingFrequencyEstimator()

            def post(x, y):
                ids = x["items"]["item_id"]
                est.update(ids[:, 0])
                x = dict(x)
                x["log_q"] = _log(x["log_q"] + tf.cast(est.expected_count(ids), tf.float64))
                if "negatives" in x:
                    counts = est.expected_count(x["negatives"]["item_id"])
                    x["negatives_log_q"] = _log(x["negatives_log_q"] + tf.cast(counts,
                                                                                 tf.float64))
                return x, y

        return len(p.user_code), make_batch, post

    def _pointwise(self):
        cfg = self.config
        k = cfg.num_negatives
        self._check_catalogue(k, "negatives per positive (num_negatives)")
        p = self._positives()
        mix, group = self._row_mix(p, "hard" in cfg.negatives)
        user_side, pos_side = self._sides(p)

        def make_batch(rows, seed) -> _Batch:
            pos, slot = rows // (k + 1), rows % (k + 1)
            groups = tf.gather(group, pos)
            draw = mix.sample(1, tf.gather(user_side.code, pos), groups, seed)
            is_pos = (slot == 0)[:, None]
            pos_ids, pos_rows = pos_side.ids_rows(pos)
            neg_ids, neg_rows = self._cat_ids_rows(draw.items)
            labels = tf.where(is_pos, 1.0, tf.where(draw.valid, 0.0, -1.0))
            x = {"user": user_side.features(pos),
                 "items": self.item_store.lookup_rows(
                     tf.where(is_pos, pos_rows[:, None], neg_rows),
                     tf.where(is_pos, pos_ids[:, None], neg_ids))}
            if cfg.log_q:
                pos_count = mix.expected_count(self._index(pos_side, pos)[:, None], groups, k)
                x["log_q"] = _log(tf.where(is_pos, pos_count, float(k) * draw.expected_count))
            return x, labels

        return len(p.user_code) * (k + 1), make_batch, None

    def _sampled_lists(self, num: int, pool=None):
        """Rows = positives; items ``(B, 1 + num)``: the positive then ``num`` negatives."""
        cfg = self.config
        self._check_catalogue(num, "negatives per positive")
        p = self._positives()
        hard = "hard" in cfg.negatives or pool is not None
        mix, group = self._row_mix(p, hard, pool, hard_fraction=1.0 if pool is not None else None)
        user_side, pos_side = self._sides(p)

        def make_batch(rows, seed) -> _Batch:
            groups = tf.gather(group, rows)
            draw = mix.sample(num, tf.gather(user_side.code, rows), groups, seed)
            pos_ids, pos_rows = pos_side.ids_rows(rows)
            neg_ids, neg_rows = self._cat_ids_rows(draw.items)
            labels = tf.concat([tf.ones_like(pos_rows[:, None], tf.float32),
                                tf.where(draw.valid, 0.0, -1.0)], 1)
            x = {"user": user_side.features(rows),
                 "items": self.item_store.lookup_rows(tf.concat([pos_rows[:, None], neg_rows], 1),
                                                      tf.concat([pos_ids[:, None], neg_ids], 1))}
            if cfg.log_q:
                pos_count = mix.expected_count(self._index(pos_side, rows)[:, None], groups, num)
                x["log_q"] = _log(tf.concat([pos_count, draw.expected_count], 1))
            return x, labels

        return len(p.user_code), make_batch, None

    def _pairwise(self):
        mode = self.config.pairwise_mode
        if mode == "random":
            return self._sampled_lists(1)
        if mode == "not_exposed":
            return self._sampled_lists(1, pool=self._not_exposed_pool())
        return self._ranker_pairs(head_tail=mode == "head_tail")

    def _not_exposed_pool(self) -> Optional[neg.NegativePool]:
        """Per request: the ranker's listed items that the log does not show."""
        if self.ranker_lists is None or "request_id" not in self.train.interactions:
            self._notes.append("not_exposed pairs without ranker lists: every negative is "
                               "drawn from the fallback sources")
            return neg.NegativePool(np.zeros(0, object), "request", np.zeros(1, np.int64),
                                    np.zeros(0, np.int64), "none")
        rl = self.ranker_lists
        inter = self.train.interactions
        to_cat = catalogue_index(self.catalogue, rl.item_vocab)
        listed = np.where(rl.items >= 0, to_cat[np.maximum(rl.items, 0)], -1)
        req_code = catalogue_index(rl.request_ids, inter["request_id"])
        shown = catalogue_index(self.catalogue, inter["item_id"])
        n = len(self.catalogue)
        ok = (req_code >= 0) & (shown >= 0)
        shown_keys = np.unique(req_code[ok] * n + shown[ok])
        rows = np.arange(len(listed), dtype=np.int64)[:, None]
        keep = (listed >= 0) & ~np.isin(rows * n + listed, shown_keys)
        # Request ids are unique and lists have no repeats: the CSR is the mask.
        offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int64)
        return neg.NegativePool(np.asarray(rl.request_ids, object), "request", offsets,
                                listed[keep].astype(np.int64), "ranked, not shown")

    def _ranked(self, top_n=None):
        ranked = ranked_requests(self.train, self.catalogue, self.ranker_lists, top_n)
        self._counts["requests_from_ranker_lists"] = ranked.num_from_ranker
        self._counts["requests_from_logged_scores"] = ranked.num_from_log
        self._counts["requests_without_ranking"] = ranked.num_skipped
        if ranked.num_items_off_catalogue:
            self._counts["ranked_items_off_catalogue"] = ranked.num_items_off_catalogue
        return (ranked, FeatureRows.coded(self.user_store, ranked.user_ids),
                tf.constant(ranked.offsets), tf.constant(ranked.items), tf.constant(ranked.scores))

    def _ranker_pairs(self, head_tail: bool):
        """One (better, worse) pair of a request's ranked list per request and epoch."""
        m_max = self.config.pairwise_segments
        ranked, user_side, offsets_t, items_t, _ = self._ranked()

        def make_batch(rows, seed) -> _Batch:
            u = tf.random.stateless_uniform([tf.shape(rows)[0], 4], seed, dtype=tf.float64)
            start = tf.gather(offsets_t, rows)
            n = tf.gather(offsets_t, rows + 1) - start
            m = tf.minimum(n, m_max)
            if head_tail:
                a, b = tf.zeros_like(m), m - 1
            else:  # two distinct segments, uniformly
                a = tf.cast(u[:, 0] * tf.cast(m, tf.float64), tf.int64)
                b = tf.cast(u[:, 1] * tf.cast(m - 1, tf.float64), tf.int64)
                b = b + tf.cast(b >= a, tf.int64)
                a, b = tf.minimum(a, b), tf.maximum(a, b)
            ranks = tf.stack([_in_segment(a, m, n, u[:, 2]), _in_segment(b, m, n, u[:, 3])], 1)
            ids, feature_rows = self._cat_ids_rows(tf.gather(items_t, start[:, None] + ranks))
            x = {"user": user_side.features(rows),
                 "items": self.item_store.lookup_rows(feature_rows, ids)}
            return x, tf.tile(tf.constant([[1.0, 0.0]]), [tf.shape(rows)[0], 1])

        self._notes.append("ranker pairs carry no log_q (their Q is not a catalogue "
                           "distribution)")
        return len(ranked.request_ids), make_batch, None

    def _listwise(self):
        if self.config.list_mode == "sampled":
            return self._sampled_lists(self.config.list_size - 1)
        lists = graded_lists(self.train, self.config.list_size)
        self._counts["requests_without_positive_dropped"] = lists.num_dropped_requests
        self._counts["requests_truncated"] = lists.num_truncated_requests
        user_side = FeatureRows.coded(self.user_store, lists.user_ids)
        item_side = FeatureRows.coded(self.item_store, lists.item_ids)
        labels_t = tf.constant(lists.labels)

        def make_batch(rows, seed) -> _Batch:
            x = {"user": user_side.features(rows), "items": item_side.features(rows)}
            return x, tf.gather(labels_t, rows)

        return len(lists.user_ids), make_batch, None

    def _distill(self):
        L = self.config.list_size  # noqa: N806 (the paper's L)
        ranked, user_side, offsets_t, items_t, scores_t = self._ranked(self.config.distill_top_n)
        short = int(np.sum(ranked.lengths < L))
        if short:
            self._counts["distill_lists_shorter_than_list_size"] = short
        self._notes.append("distill labels = ranker score - the list's lowest (softmax-"
                           "invariant); no log_q")
        seg = tf.range(L, dtype=tf.int64)[None, :]

        def make_batch(rows, seed) -> _Batch:
            start = tf.gather(offsets_t, rows)[:, None]
            n = tf.gather(offsets_t, rows + 1)[:, None] - start
            lo, hi = seg * n // L, (seg + 1) * n // L  # segment s: ranks [s n / L, (s+1) n / L)
            u = tf.random.stateless_uniform(tf.shape(lo), seed, dtype=tf.float64)
            rank = lo + tf.minimum(tf.cast(u * tf.cast(hi - lo, tf.float64), tf.int64),
                                   tf.maximum(hi - lo - 1, 0))
            valid = hi > lo
            at = tf.where(valid, start + rank, 0)
            ids, feature_rows = self._cat_ids_rows(tf.where(valid, tf.gather(items_t, at), -1))
            score = tf.gather(scores_t, at)
            lowest = tf.reduce_min(tf.where(valid, score, np.inf), axis=1, keepdims=True)
            labels = tf.where(valid, score - lowest, -1.0)
            x = {"user": user_side.features(rows),
                 "items": self.item_store.lookup_rows(feature_rows, ids)}
            return x, labels

        return len(ranked.request_ids), make_batch, None


# The positive rows (`TrainingSamples._positives`): ``users`` (U,) the user store's ids then
# the log's others, ``user_code`` (P,) into them; ``items`` the catalogue, "" then positives
# off it, ``item_code`` (P,) into them; ``idx`` (P,) catalogue index (-1 off it); requests.
# The (P,) arrays are int32 where the vocabularies allow.
_Positives = collections.namedtuple("_Positives", "users user_code items item_code idx requests")


def _in_segment(seg, m, n, u):
    """A uniform rank inside segment ``seg`` of ``m`` equal segments of ``n`` ranks."""
    lo, hi = seg * n // m, (seg + 1) * n // m
    return lo + tf.minimum(tf.cast(u * tf.cast(hi - lo, tf.float64), tf.int64), hi - lo - 1)


def _log(counts: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.math.log(counts), tf.float32)


def make_training_dataset(
    train: RecallData,
    catalogue: np.ndarray,
    user_store: FeatureStore,
    item_store: FeatureStore,
    config: SamplingConfig,
    batch_size: int,
    *,
    ranker_lists: Optional[RankerLists] = None,
    hard_negatives: Optional[neg.NegativePool] = None,
) -> tf.data.Dataset:
    """The training ``tf.data.Dataset`` of ``config``: one epoch per iteration.

    Logs `TrainingSamples.describe` (the counts of every fallback) at INFO; build a
    `TrainingSamples` with the same arguments to read them programmatically.

    Args: see `TrainingSamples`.

    Returns:
      A dataset of ``(x, y)`` batches; see the module docstring for each view.

    Example:
      >>> config = SamplingConfig(view="in_batch", negatives=("in_batch", "uniform"),
      ...                         num_negatives=512)
      >>> ds = make_training_dataset(train, catalogue, users, items, config, 1024)
      >>> model.fit(ds, epochs=5)  # fresh shared negatives every epoch
    """
    samples = TrainingSamples(train, catalogue, user_store, item_store, config, batch_size,
                              ranker_lists=ranker_lists, hard_negatives=hard_negatives)
    _LOG.info("%s", samples.describe())
    return samples.dataset


__all__ = ["SamplingInfo", "TrainingSamples", "make_training_dataset"]
