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

from tfrecall import ids
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
    # Integer codes throughout: on a 20M-positive log the per-user dicts of str this
    # replaced peaked at 3.9 GiB above the log's own size.
    first = ids.catalogue_index(user_ids, user_ids)  # each entry's first position
    users = ids.catalogue_index(user_ids, inter["user_id"], pos)
    vocab, items = ids.vocab_codes(np.empty(0, object), inter["item_id"], pos)
    bad = next((i for i in vocab.tolist() if separator in i), None)
    if bad is not None:
        raise ValueError(f"item id {bad!r} contains the history separator {separator!r}")
    time_key = inter["timestamp"][pos] if "timestamp" in inter else np.zeros(len(pos))
    # By user, then time; ties keep log order (numpy's lexsort is a stable sort, the
    # order an explicit row key would give). Rows of unknown users (-1) are left out,
    # without masked copies when every user is known (the common case).
    known = users >= 0
    if known.all():
        order = np.lexsort((time_key, users))
    else:
        order = np.flatnonzero(known)
        order = order[np.lexsort((time_key[order], users[order]))]
    del time_key, pos
    users, items = users[order], items[order]
    del order
    # An item taken twice keeps its latest position: the last of each (user, item) run
    # in this order (a stable argsort of the pair keys; np.unique's sorted copies held
    # twice the arrays at 20M positives).
    key = users * len(vocab) + items
    by_key = np.argsort(key, kind="stable")
    key = key[by_key]
    last = np.ones(len(key), bool)
    last[:-1] = key[1:] != key[:-1]
    del key
    latest = np.zeros(len(last), bool)
    latest[by_key[last]] = True
    del by_key, last
    users, items = users[latest], items[latest]
    ends = np.cumsum(np.bincount(users, minlength=len(user_ids)))
    recent = ends[users] - 1 - np.arange(len(users)) < max_items
    users, names = users[recent], vocab[items[recent]].tolist()
    starts = np.searchsorted(users, np.arange(len(user_ids) + 1))
    history = np.full(len(user_ids), "", dtype=object)
    for u in np.unique(users).tolist():
        history[u] = separator.join(names[starts[u]:starts[u + 1]])
    return history[first]


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
