"""The built-in synthetic world: users, items, a hidden affinity and a logged feed.

The default data set of the package needs no download and has a known ground truth,
so a test or benchmark can ask "did the model recover the true affinity?".

How the world is made (all numpy, vectorized, one seeded generator):

1. Items: a category (Zipf-distributed category sizes), a brand that belongs to the
   category, 0-3 tags, and a log-normal (heavy-tailed) price whose level is set by the
   brand. Users: age, gender, country and 1-3 true interest categories, of which each
   is reported in the ``interests`` column with probability ``interest_report_rate``.
2. Hidden latent vectors (``latent_dim``): an item's vector is
   ``sqrt(s) * f_item + sqrt(1 - s) * r_item`` where ``f_item`` is built from its
   category, brand, tags and price and ``r_item`` is an id-specific residual; ``s`` is
   ``feature_signal``. A user's vector mixes the embeddings of their true interest
   categories with age/gender/country offsets and a residual the same way. So the
   features carry real signal (cold items are predictable from their features) and
   ids still add something for warm ones.
3. ``true_affinity = U @ V.T`` (users x items), scaled to unit standard deviation.
4. Requests: each user makes ``1 + Poisson(requests_per_user - 1)`` requests at
   random points of a shared timeline. An upstream system shows
   ``exposures_per_request`` distinct items, drawn without replacement from
   ``softmax(w_pop * log popularity + w_aff * affinity)`` (Gumbel top-k), where the
   item popularity is Zipf-like (``popularity_exponent``). The draw order is the shown
   position.
5. Events: ``z = affinity + N(0, click_noise^2)``; an exposure is an ``order`` if ``z``
   is above the ``1 - order_rate`` quantile of all exposures' ``z``, else ``cart``
   above the ``1 - cart_rate`` quantile, else ``click`` above ``1 - click_rate``, else
   a plain ``impression``. ``ranker_score = affinity + N(0, ranker_noise^2)`` mimics a
   production ranker scoring every exposure.

The log has one row per exposure (``event``, graded ``label`` from
`DEFAULT_EVENT_LABELS`, ``positive = event != "impression"``, ``request_id``,
strictly increasing int64 ``timestamp``, float32 ``ranker_score``).

`ranker_lists` adds what a production log has beyond the exposures: the ranker's
ordered top-N candidates of every request (ranker score = affinity + the same noise
model over the whole catalogue; an exposed item keeps its logged score). It is a
separate call (about 50 MB for the default world at N = 500), drawn from its own
generator, so it never changes the log.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from tfrecall.ids import first_appearance_codes, top_k_rows
from tfrecall.io.schema import DEFAULT_EVENT_LABELS, RecallData
from tfrecall.sampling.requests import RankerLists

_EVENTS = ("impression", "click", "cart", "order")
_GENDERS = np.asarray(["f", "m"], dtype=object)
_COUNTRIES = np.asarray(["US", "GB", "DE", "FR", "BR", "IN", "JP", "ES"], dtype=object)
_AGE_EDGES = np.asarray([25.0, 35.0, 45.0, 55.0])  # 5 age groups for the demographic offset
_START_TIME = 1_600_000_000  # seconds; the first request of the log


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and rates of the synthetic world (the defaults give ~145k exposures).

    Args:
      num_users: number of users ("u0", "u1", ...).
      num_items: number of items ("i0", "i1", ...).
      num_categories: item categories ("cat0", ...); also the user interest vocabulary.
      num_brands: brands ("brand0", ...), each belonging to one category; must be
        >= num_categories so every category has a brand.
      num_tags: tag vocabulary ("tag0", ...) of the multi-valued item ``tags``.
      latent_dim: width of the hidden user/item vectors.
      requests_per_user: mean number of requests per user (every user makes >= 1).
      exposures_per_request: distinct items shown per request.
      popularity_exponent: Zipf exponent of item popularity (1.0: the k-th most
        popular item is k times less popular than the first).
      exposure_popularity_weight: weight of log popularity in the upstream system's
        exposure logits.
      exposure_affinity_weight: weight of the true affinity in those logits.
      click_rate: fraction of exposures that are at least a click (the positives).
      cart_rate: fraction that are at least a cart (< click_rate).
      order_rate: fraction that are orders (< cart_rate).
      click_noise: std of the noise added to the affinity before the event thresholds
        (the affinity has std 1).
      ranker_noise: std of the noise of ``ranker_score`` around the affinity.
      feature_signal: share in [0, 1] of the latent variance explained by features
        (the rest is an id-specific residual).
      interest_report_rate: probability that a true interest shows in ``interests``.
      missing_rate: rate of missing values (NaN age/price, "" gender/country).
      seed: seed of the single numpy generator; same seed -> identical arrays.
    """

    num_users: int = 3000
    num_items: int = 1500
    num_categories: int = 20
    num_brands: int = 60
    num_tags: int = 40
    latent_dim: int = 8
    requests_per_user: float = 4.0
    exposures_per_request: int = 12
    popularity_exponent: float = 1.0
    exposure_popularity_weight: float = 0.7
    exposure_affinity_weight: float = 1.2
    click_rate: float = 0.15
    cart_rate: float = 0.05
    order_rate: float = 0.02
    click_noise: float = 0.5
    ranker_noise: float = 0.5
    feature_signal: float = 0.8
    interest_report_rate: float = 0.7
    missing_rate: float = 0.02
    seed: int = 0

    def __post_init__(self):
        for name in ("num_users", "num_items", "num_categories", "num_brands", "num_tags",
                     "latent_dim", "exposures_per_request"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"SyntheticConfig.{name} must be an integer >= 1, got {value!r}")
        if self.num_brands < self.num_categories:
            raise ValueError(
                f"SyntheticConfig.num_brands ({self.num_brands}) must be >= num_categories "
                f"({self.num_categories}) so every category has a brand"
            )
        if self.exposures_per_request > self.num_items:
            raise ValueError(
                f"SyntheticConfig.exposures_per_request ({self.exposures_per_request}) must be "
                f"<= num_items ({self.num_items}): a request shows distinct items"
            )
        if self.requests_per_user < 1.0:
            raise ValueError(
                f"SyntheticConfig.requests_per_user must be >= 1, got {self.requests_per_user}"
            )
        if not 1.0 > self.click_rate > self.cart_rate > self.order_rate >= 0.0:
            raise ValueError(
                "SyntheticConfig rates must satisfy 1 > click_rate > cart_rate > order_rate >= 0, "
                f"got click_rate={self.click_rate}, cart_rate={self.cart_rate}, "
                f"order_rate={self.order_rate}"
            )
        for name in ("feature_signal", "interest_report_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SyntheticConfig.{name} must be in [0, 1], got {value}")
        if not 0.0 <= self.missing_rate < 1.0:
            raise ValueError(
                f"SyntheticConfig.missing_rate must be in [0, 1), got {self.missing_rate}"
            )
        for name in ("popularity_exponent", "exposure_popularity_weight",
                     "exposure_affinity_weight", "click_noise", "ranker_noise"):
            if getattr(self, name) < 0.0:
                raise ValueError(f"SyntheticConfig.{name} must be >= 0, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticWorld:
    """A generated data set plus its hidden ground truth.

    Attributes:
      data: the `RecallData` (interactions, users, items).
      user_ids: ``(U,)`` object array of str; row u of the ground truth.
      item_ids: ``(I,)`` object array of str; column i of the ground truth.
      user_vectors: ``(U, latent_dim)`` float32 hidden user vectors.
      item_vectors: ``(I, latent_dim)`` float32 hidden item vectors.
      user_feature_vectors: ``(U, latent_dim)`` float32, the part of the user vectors
        that is a function of the user features (no id residual), same scale.
      item_feature_vectors: ``(I, latent_dim)`` float32, likewise for items.
      popularity: ``(I,)`` float64 item popularity used by the upstream system (sums to 1).
      config: the `SyntheticConfig` that made the world.
    """

    data: RecallData
    user_ids: np.ndarray
    item_ids: np.ndarray
    user_vectors: np.ndarray
    item_vectors: np.ndarray
    user_feature_vectors: np.ndarray
    item_feature_vectors: np.ndarray
    popularity: np.ndarray
    config: SyntheticConfig

    @property
    def true_affinity(self) -> np.ndarray:
        """``(U, I)`` float32: the hidden ground-truth score of every user-item pair."""
        return self.user_vectors @ self.item_vectors.T

    def affinity(self, user_idx, item_idx) -> np.ndarray:
        """The true affinity of (user row, item row) pairs; broadcasts like numpy.

        Args:
          user_idx: int array (any shape) of user rows.
          item_idx: int array broadcastable with ``user_idx`` of item rows.

        Returns:
          float32 array of the broadcast shape.
        """
        u = self.user_vectors[np.asarray(user_idx)]
        v = self.item_vectors[np.asarray(item_idx)]
        return np.sum(u * v, axis=-1, dtype=np.float32)

    def user_rows(self, ids: np.ndarray) -> np.ndarray:
        """int64 ground-truth rows of str user ids (any shape); -1 for unknown ids."""
        return _rows(self.user_ids, ids)

    def item_rows(self, ids: np.ndarray) -> np.ndarray:
        """int64 ground-truth rows of str item ids (any shape); -1 for unknown ids."""
        return _rows(self.item_ids, ids)


def _rows(known: np.ndarray, ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, dtype=object)
    index = {v: i for i, v in enumerate(known.tolist())}
    rows = [index.get(v, -1) for v in ids.reshape(-1).tolist()]
    return np.asarray(rows, dtype=np.int64).reshape(ids.shape)


def generate(config: SyntheticConfig = SyntheticConfig()) -> SyntheticWorld:
    """Generates the synthetic world of `config` (deterministic by ``config.seed``).

    Args:
      config: sizes, rates and seed.

    Returns:
      A `SyntheticWorld`; ``world.data`` is a validated `RecallData` named "synthetic".
    """
    rng = np.random.default_rng(config.seed)
    d = config.latent_dim

    def emb(n: int) -> np.ndarray:  # n random embeddings with rows of about unit norm
        return rng.normal(0.0, 1.0 / np.sqrt(d), size=(n, d))

    cat_emb, brand_offset, tag_emb = (
        emb(config.num_categories), emb(config.num_brands), emb(config.num_tags)
    )
    price_dir = emb(1)[0]
    category_p = _zipf(config.num_categories, 0.7)

    items, it = _make_items(config, rng, category_p)
    # A brand sits near its category; items add tags and a price (premium) direction.
    brand_emb = cat_emb[it["brand_category"]] + 0.6 * brand_offset
    item_feat = (brand_emb[it["brand"]] + 0.5 * _mean_rows(tag_emb, it["tags"])
                 + 0.5 * it["price_z"][:, None] * price_dir)
    users, us = _make_users(config, rng, category_p)
    demographic = (0.5 * emb(len(_AGE_EDGES) + 1)[us["age_group"]]
                   + 0.5 * emb(len(_GENDERS))[us["gender"]]
                   + 0.5 * emb(len(_COUNTRIES))[us["country"]]
                   + 0.3 * us["age_z"][:, None] * price_dir)
    user_feat = _mean_rows(cat_emb, us["interests"]) + demographic

    s = config.feature_signal
    item_feat = np.sqrt(s) * _unit_scale(item_feat)
    user_feat = np.sqrt(s) * _unit_scale(user_feat)
    item_vec = item_feat + np.sqrt(1.0 - s) * emb(config.num_items)
    user_vec = user_feat + np.sqrt(1.0 - s) * emb(config.num_users)
    # Unit-norm users: a user's direction is their taste; with free norms a few long
    # vectors would take most clicks and many users would never click.
    norm = np.linalg.norm(user_vec, axis=1, keepdims=True)
    user_vec, user_feat = user_vec / norm, user_feat / norm
    # One scale for both sides so the affinity (a dot product) has std 1.
    scale = 1.0 / np.sqrt(np.std(user_vec @ item_vec.T))
    user_vec, item_vec, user_feat, item_feat = (
        (x * scale).astype(np.float32) for x in (user_vec, item_vec, user_feat, item_feat)
    )

    # Zipf popularity over a random item order: the item of rank k has weight k^-s.
    ranks = rng.permutation(config.num_items) + 1
    popularity = ranks.astype(np.float64) ** -config.popularity_exponent
    popularity /= popularity.sum()

    interactions = _make_log(config, rng, user_vec, item_vec, popularity)
    user_ids, item_ids = users["user_id"], items["item_id"]
    interactions["user_id"] = user_ids[interactions["user_id"]]
    interactions["item_id"] = item_ids[interactions["item_id"]]
    data = RecallData(interactions, users, items, name="synthetic")
    return SyntheticWorld(data, user_ids, item_ids, user_vec, item_vec, user_feat, item_feat,
                          popularity, config)


def _zipf(n: int, exponent: float) -> np.ndarray:
    p = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return p / p.sum()


def _unit_scale(x: np.ndarray) -> np.ndarray:
    """Rescales rows so their mean squared norm is 1 (parts mix by `feature_signal`)."""
    return x / np.sqrt(np.mean(np.sum(x * x, axis=1)))


def _mean_rows(table: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Mean of ``table`` rows per entity; ``members`` is (n, k) bool membership."""
    counts = np.maximum(members.sum(axis=1, keepdims=True), 1)
    return (members @ table) / counts


def _join(names: np.ndarray, members: np.ndarray) -> np.ndarray:
    """``|``-joined names of each row's members ("" when none)."""
    return np.asarray(["|".join(names[row]) for row in members], dtype=object)


def _with_missing(values: np.ndarray, rng: np.random.Generator, rate: float, missing) -> np.ndarray:
    values = values.copy()
    values[rng.random(len(values)) < rate] = missing
    return values


def _make_items(config: SyntheticConfig, rng: np.random.Generator, category_p: np.ndarray):
    n, n_cat, n_brand = config.num_items, config.num_categories, config.num_brands
    # The first num_categories brands cover every category once; the rest follow category sizes.
    brand_cat = np.concatenate(
        [np.arange(n_cat), rng.choice(n_cat, size=n_brand - n_cat, p=category_p)]
    )
    category = rng.choice(n_cat, size=n, p=category_p)
    # Brand uniform among the category's brands: a padded (category, slot) table.
    order = np.argsort(brand_cat, kind="stable")
    counts = np.bincount(brand_cat, minlength=n_cat)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.floor(rng.random(n) * counts[category]).astype(np.int64)
    brand = order[starts[category] + slot]
    # Brand price level (log scale) plus item noise: log-normal, heavy tailed.
    log_price = 3.0 + 0.8 * rng.normal(size=n_brand)[brand] + 0.6 * rng.normal(size=n)
    price_z = (log_price - log_price.mean()) / log_price.std()
    num_tags = rng.integers(0, 4, size=n)
    tags = np.zeros((n, config.num_tags), dtype=bool)
    tag_pick = np.argsort(rng.random((n, config.num_tags)), axis=1)
    tags[np.arange(n)[:, None], tag_pick[:, :3]] = np.arange(3)[None, :] < num_tags[:, None]

    cat_names = np.asarray([f"cat{k}" for k in range(n_cat)], dtype=object)
    brand_names = np.asarray([f"brand{k}" for k in range(n_brand)], dtype=object)
    tag_names = np.asarray([f"tag{k}" for k in range(config.num_tags)], dtype=object)
    table = {
        "item_id": np.asarray([f"i{k}" for k in range(n)], dtype=object),
        "category": cat_names[category],
        "brand": brand_names[brand],
        "price": _with_missing(np.exp(log_price).astype(np.float32), rng, config.missing_rate,
                               np.nan),
        "tags": _join(tag_names, tags),
    }
    hidden = {"brand": brand, "brand_category": brand_cat, "tags": tags.astype(np.float64),
              "price_z": price_z}
    return table, hidden


def _make_users(config: SyntheticConfig, rng: np.random.Generator, category_p: np.ndarray):
    n, n_cat = config.num_users, config.num_categories
    age = np.clip(np.round(rng.normal(38.0, 12.0, size=n)), 16.0, 80.0)
    gender = rng.integers(0, 2, size=n)
    country = rng.choice(len(_COUNTRIES), size=n, p=_zipf(len(_COUNTRIES), 1.0))
    # 1-3 distinct true interests, drawn by category size (Gumbel top-k without replacement).
    num_interests = 1 + rng.binomial(2, 0.4, size=n)
    keys = np.log(category_p)[None, :] - np.log(-np.log(rng.random((n, n_cat))))
    top = np.argsort(-keys, axis=1)[:, :3]
    interests = np.zeros((n, n_cat), dtype=bool)
    interests[np.arange(n)[:, None], top] = np.arange(3)[None, :] < num_interests[:, None]
    reported = interests & (rng.random((n, n_cat)) < config.interest_report_rate)

    cat_names = np.asarray([f"cat{k}" for k in range(n_cat)], dtype=object)
    rate = config.missing_rate
    table = {
        "user_id": np.asarray([f"u{k}" for k in range(n)], dtype=object),
        "age": _with_missing(age.astype(np.float32), rng, rate, np.nan),
        "gender": _with_missing(_GENDERS[gender], rng, rate, ""),
        "country": _with_missing(_COUNTRIES[country], rng, rate, ""),
        "interests": _join(cat_names, reported),
    }
    feats = {
        "age_group": np.searchsorted(_AGE_EDGES, age, side="right"),
        "age_z": (age - 38.0) / 12.0,
        "gender": gender,
        "country": country,
        "interests": interests.astype(np.float64),
    }
    return table, feats


def _make_log(config: SyntheticConfig, rng: np.random.Generator, user_vec: np.ndarray,
              item_vec: np.ndarray, popularity: np.ndarray) -> dict:
    """One row per exposure, rows in time order; ids are still integer rows here."""
    k = config.exposures_per_request
    n_req_per_user = 1 + rng.poisson(config.requests_per_user - 1.0, size=config.num_users)
    req_user = rng.permutation(np.repeat(np.arange(config.num_users), n_req_per_user))
    shown = _expose(config, rng, req_user, user_vec, item_vec, np.log(popularity))  # (R, k)
    num_req = len(req_user)

    user = np.repeat(req_user, k)
    item = shown.reshape(-1)
    affinity = np.sum(user_vec[user] * item_vec[item], axis=1)
    z = affinity + config.click_noise * rng.normal(size=len(item))
    rates = (config.click_rate, config.cart_rate, config.order_rate)
    thresholds = np.quantile(z, [1.0 - r for r in rates])
    level = np.zeros(len(item), dtype=np.int64)  # 0 impression, 1 click, 2 cart, 3 order
    for t in thresholds:
        level += z > t
    events = np.asarray(_EVENTS, dtype=object)
    labels = np.asarray([DEFAULT_EVENT_LABELS[e] for e in _EVENTS], dtype=np.float32)

    # Strictly increasing time: requests spaced by more than k seconds, one second per slot.
    gaps = rng.integers(k + 1, k + 600, size=num_req)
    start = _START_TIME + np.cumsum(gaps) - gaps[0]
    timestamp = (np.repeat(start, k) + np.tile(np.arange(k), num_req)).astype(np.int64)
    request_names = np.asarray([f"r{r}" for r in range(num_req)], dtype=object)
    ranker = affinity + config.ranker_noise * rng.normal(size=len(item))
    return {
        "user_id": user,
        "item_id": item,
        "label": labels[level],
        "positive": level > 0,
        "timestamp": timestamp,
        "event": events[level],
        "request_id": np.repeat(request_names, k),
        "ranker_score": ranker.astype(np.float32),
    }


def _expose(config: SyntheticConfig, rng: np.random.Generator, req_user: np.ndarray,
            user_vec: np.ndarray, item_vec: np.ndarray, log_pop: np.ndarray) -> np.ndarray:
    """``(R, k)`` item rows shown per request, best first.

    Sampling k items without replacement from softmax(logits) equals taking the top k
    of logits + Gumbel noise (the Gumbel-top-k trick; Kool et al., ICML 2019, eq. 3),
    and the order of the top k is a Plackett-Luce draw: the shown ranking.
    """
    k = config.exposures_per_request
    base = (config.exposure_popularity_weight * log_pop).astype(np.float32)
    out = np.empty((len(req_user), k), dtype=np.int64)
    chunk = 2048  # bounds memory at chunk x num_items float32
    with np.errstate(divide="ignore"):
        for lo in range(0, len(req_user), chunk):
            users = req_user[lo:lo + chunk]
            logits = base + config.exposure_affinity_weight * (user_vec[users] @ item_vec.T)
            u = rng.random(logits.shape, dtype=np.float32)
            keys = logits - np.log(-np.log(u))
            out[lo:lo + chunk] = top_k_rows(keys, k)
    return out


def ranker_lists(world: SyntheticWorld, top_n: int = 500, seed: Optional[int] = None):
    """The ranker's top ``top_n`` candidates of every request of ``world``, best first.

    Every catalogue item gets ``affinity + N(0, ranker_noise^2)`` for the request's
    user; the request's exposed items keep their logged ``ranker_score``, so the
    lists agree with the log. Requests are in order of first appearance in the log.

    Args:
      world: a generated world.
      top_n: list length (at most the catalogue size).
      seed: seed of the noise; None: derived from ``world.config.seed``.

    Returns:
      A `tfrecall.sampling.requests.RankerLists`.

    Raises:
      ValueError: ``top_n < 1``.
    """

    if isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)) or top_n < 1:
        raise ValueError(f"top_n must be an integer >= 1, got {top_n!r}")
    inter = world.data.interactions
    rng = np.random.default_rng([world.config.seed, 1] if seed is None else seed)
    first, req_code = first_appearance_codes(inter["request_id"])
    req_user = world.user_rows(inter["user_id"][first])
    row_item = world.item_rows(inter["item_id"])
    num_items = len(world.item_ids)
    top_n = min(int(top_n), num_items)
    items = np.empty((len(first), top_n), np.int32)
    scores = np.empty((len(first), top_n), np.float32)
    noise = world.config.ranker_noise
    chunk = 1024
    for lo in range(0, len(first), chunk):
        hi = min(lo + chunk, len(first))
        s = world.user_vectors[req_user[lo:hi]] @ world.item_vectors.T
        s = s + noise * rng.standard_normal(s.shape, dtype=np.float32)
        rows = np.flatnonzero((req_code >= lo) & (req_code < hi))
        s[req_code[rows] - lo, row_item[rows]] = inter["ranker_score"][rows]
        items[lo:hi] = top_k_rows(s, top_n)
        scores[lo:hi] = np.take_along_axis(s, items[lo:hi].astype(np.int64), axis=1)
    return RankerLists(inter["request_id"][first], inter["user_id"][first],
                       world.item_ids.copy(), items, scores)
