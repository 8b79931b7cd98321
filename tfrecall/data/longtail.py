"""A second built-in world of another character: an implicit, long-tail play log.

The default synthetic world (`tfrecall.data.synthetic`) is a feed with exposures, graded
events and rich features. Logs in the field often look nothing like it: a music or video
play log has no item features at all, a catalogue ten times the user count with Zipf
popularity, about fifty items per user and repeat counts as the only label. A default
decided on the feed alone does not carry over to such a log (the recall-quality issue
measured 0.85x ItemCF on one), so this world is a development log beside it.

How the world is made (numpy only, one seeded generator):

1. Tastes: ``num_tastes`` centres in ``latent_dim`` dimensions. An item belongs to one
   taste: ``v = centre + item_spread * noise``. A user mixes 1-3 tastes:
   ``u = mean(centres) + user_spread * noise``. ``affinity = u . v``, scaled to unit
   standard deviation.
2. Popularity: Zipf (``popularity_exponent``) over a random item order.
3. Activity: user u plays ``n_u`` distinct items, log-normal around
   ``items_per_user`` (at least ``min_items_per_user``), drawn without replacement from
   ``softmax(popularity_weight * log popularity + affinity_weight * affinity)``
   (Gumbel top-k; Kool et al., ICML 2019).
4. Repeat counts: ``plays = 1 + Poisson(exp(repeat_affinity * affinity + repeat_bias))``,
   the row's ``label``; every row is a positive. Timestamps are increasing per user
   and interleaved across users, so temporal splits work.

No user or item table: ids are the only features (``users`` and ``items`` are None).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfrecall.io.schema import RecallData

_START_TIME = 1_600_000_000


@dataclasses.dataclass(frozen=True)
class LongTailConfig:
    """Sizes and rates of the long-tail world (defaults: about 1.9k users x 17.6k items,
    about 95k interactions, like the play-count log of the recall-quality issue)."""

    num_users: int = 1900
    num_items: int = 17600
    num_tastes: int = 40
    latent_dim: int = 16
    items_per_user: float = 50.0
    activity_sigma: float = 0.8
    min_items_per_user: int = 5
    popularity_exponent: float = 1.0
    popularity_weight: float = 1.0
    affinity_weight: float = 2.0
    item_spread: float = 0.7
    user_spread: float = 0.5
    repeat_affinity: float = 0.5
    repeat_bias: float = -0.5
    seed: int = 0

    def __post_init__(self):
        for name in ("num_users", "num_items", "num_tastes", "latent_dim",
                     "min_items_per_user"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"LongTailConfig.{name} must be an integer >= 1, got {value!r}")
        if not self.items_per_user >= self.min_items_per_user:
            raise ValueError(f"LongTailConfig.items_per_user ({self.items_per_user}) must be "
                             f">= min_items_per_user ({self.min_items_per_user})")
        if self.min_items_per_user > self.num_items:
            raise ValueError("LongTailConfig.min_items_per_user exceeds num_items")


@dataclasses.dataclass(frozen=True, eq=False)
class LongTailWorld:
    """The generated log plus its hidden ground truth (as `SyntheticWorld`'s)."""

    data: RecallData
    user_ids: np.ndarray
    item_ids: np.ndarray
    user_vectors: np.ndarray
    item_vectors: np.ndarray
    popularity: np.ndarray
    config: LongTailConfig


def generate_longtail(config: LongTailConfig = LongTailConfig()) -> LongTailWorld:
    """Generates the long-tail world of `config` (deterministic by ``config.seed``)."""
    rng = np.random.default_rng(config.seed)
    d = config.latent_dim
    centres = rng.normal(0.0, 1.0 / np.sqrt(d), size=(config.num_tastes, d))
    item_taste = rng.integers(0, config.num_tastes, config.num_items)
    item_vec = centres[item_taste] + config.item_spread * rng.normal(
        0.0, 1.0 / np.sqrt(d), size=(config.num_items, d))
    tastes = np.zeros((config.num_users, config.num_tastes))
    n_tastes = rng.integers(1, 4, config.num_users)
    for k in range(3):
        pick = rng.integers(0, config.num_tastes, config.num_users)
        tastes[np.arange(config.num_users)[n_tastes > k], pick[n_tastes > k]] = 1.0
    user_vec = (tastes @ centres) / tastes.sum(axis=1, keepdims=True)
    user_vec += config.user_spread * rng.normal(0.0, 1.0 / np.sqrt(d), size=user_vec.shape)
    scale = 1.0 / np.sqrt(np.std(user_vec @ item_vec.T))
    user_vec, item_vec = (user_vec * scale).astype(np.float32), (item_vec * scale).astype(
        np.float32)

    ranks = rng.permutation(config.num_items) + 1
    popularity = ranks.astype(np.float64) ** -config.popularity_exponent
    popularity /= popularity.sum()
    mu = np.log(config.items_per_user) - config.activity_sigma**2 / 2
    counts = np.clip(np.rint(rng.lognormal(mu, config.activity_sigma, config.num_users)),
                     config.min_items_per_user, config.num_items).astype(np.int64)

    base = (config.popularity_weight * np.log(popularity)).astype(np.float32)
    users, items = [], []
    chunk = 512  # bounds memory at chunk x num_items float32
    for lo in range(0, config.num_users, chunk):
        rows = np.arange(lo, min(lo + chunk, config.num_users))
        logits = base + config.affinity_weight * (user_vec[rows] @ item_vec.T)
        with np.errstate(divide="ignore"):  # u = 0 gives key -inf: never drawn
            keys = logits - np.log(-np.log(rng.random(logits.shape, dtype=np.float32)))
        # Gumbel top-k: the n_u largest keys are a draw without replacement.
        most = int(counts[rows].max())
        top = np.argpartition(-keys, most - 1, axis=1)[:, :most]
        order = np.take_along_axis(
            top, np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1), axis=1)
        for r, u in enumerate(rows.tolist()):
            users.append(np.full(counts[u], u))
            items.append(order[r, :counts[u]])
    user = np.concatenate(users)
    item = np.concatenate(items)
    affinity = np.sum(user_vec[user] * item_vec[item], axis=1)
    plays = 1 + rng.poisson(np.exp(config.repeat_affinity * affinity + config.repeat_bias))
    # Interleave users on one timeline: each row gets a random time, rows sorted by it.
    timestamp = _START_TIME + np.sort(rng.integers(0, 365 * 86400, len(user)))
    shuffle = rng.permutation(len(user))
    user, item, plays = user[shuffle], item[shuffle], plays[shuffle]
    user_ids = np.asarray([f"u{i}" for i in range(config.num_users)], dtype=object)
    item_ids = np.asarray([f"i{i}" for i in range(config.num_items)], dtype=object)
    interactions = {
        "user_id": user_ids[user],
        "item_id": item_ids[item],
        "label": plays.astype(np.float32),
        "positive": np.ones(len(user), dtype=bool),
        "timestamp": timestamp.astype(np.int64),
    }
    data = RecallData(interactions, None, None, name="longtail")
    return LongTailWorld(data, user_ids, item_ids, user_vec, item_vec, popularity, config)
