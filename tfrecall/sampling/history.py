"""The user's own history as a feature: the items they interacted with in training.

A bag of the user's recent positive items, embedded and mean-pooled, gives the user
tower what item-based collaborative filtering knows ("people who took these items also
take ..."), the YouTube DNN's watch-history feature (Covington et al., RecSys 2016,
sec. 3). It travels as one `|`-joined string per user, the multi-valued feature
convention, so serving feeds it like any other feature (the caller joins the user's
recent item ids; "" for a new user).

Training must not see the answer: an example whose target item sits in the user's
history teaches the tower to echo the history. `drop_candidates_from_history` removes
a row's own candidate items from its history inside the tf.data pipeline
(leave-one-out), which is what the model meets at serving time, where the item to
predict is by definition not yet in the history.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from tfrecall._backend import tf
from tfrecall.io.schema import RecallData

HISTORY_FEATURE = "history"


def user_histories(
    train: RecallData, user_ids: np.ndarray, max_items: int = 50, separator: str = "|"
) -> np.ndarray:
    """`(len(user_ids),)` object array: each user's last `max_items` training positives.

    Order is by timestamp when the log has one (else log order), most recent last;
    an item taken twice appears once, at its latest position.

    Raises:
      ValueError: max_items < 1, or an item id containing the separator.
    """
    if max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}")
    inter = train.interactions
    pos = np.flatnonzero(inter["positive"])
    users = inter["user_id"][pos].astype(str)
    items = inter["item_id"][pos].astype(str)
    bad = [i for i in np.unique(items)[:1_000_000] if separator in i]
    if bad:
        raise ValueError(f"item id {bad[0]!r} contains the history separator {separator!r}")
    time_key = inter["timestamp"][pos] if "timestamp" in inter else np.zeros(len(pos))
    order = np.lexsort((np.arange(len(pos)), time_key, users))
    out: dict = {}
    for u, i in zip(users[order].tolist(), items[order].tolist(), strict=True):
        seq = out.setdefault(u, {})
        seq.pop(i, None)  # re-insert at the end: latest position wins
        seq[i] = None
    return np.array(
        [separator.join(list(out.get(u, {}))[-max_items:]) for u in user_ids.astype(str).tolist()],
        dtype=object,
    )


def drop_candidates_from_history(
    x: Mapping, feature: str = HISTORY_FEATURE, separator: str = "|",
    item_feature: str = "item_id",
) -> dict:
    """Removes each row's candidate items `(B, L)` from its history string `(B,)`.

    Vectorized over the batch (split -> ragged compare -> re-join); used as
    ``dataset.map(lambda x, y: (drop_candidates_from_history(x), y))``.
    """
    user = dict(x["user"])
    tokens = tf.strings.split(user[feature], sep=separator)  # (B, None)
    candidates = x["items"][item_feature]  # (B, L)
    per_token = tf.gather(candidates, tokens.value_rowids())  # (T, L)
    keep = tf.reduce_all(tf.not_equal(tokens.flat_values[:, tf.newaxis], per_token), axis=-1)
    kept = tf.ragged.boolean_mask(tokens, tokens.with_flat_values(keep))
    user[feature] = tf.strings.reduce_join(kept, axis=-1, separator=separator)
    return {**x, "user": user}
