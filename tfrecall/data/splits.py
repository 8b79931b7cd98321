"""Train/test splits of the interaction log.

- `random_split`: a seeded random share of interaction rows goes to test. This is the
  MovieLens reference protocol (a random 80/20 split of all ratings with seed 42), so
  figures compare with published ones; a user's history is spread over both sides.
- `temporal_split`: a global time cut, everything at or after the cut is test; no
  information from the future leaks into training (the production-like protocol).
- `item_split`: a seeded share of the items is held out with every row that mentions
  them (the cold-start protocol: those items are never seen in training).

Both keep the user and item tables whole (cold items stay describable by features)
and keep rows in their original order within each side.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from tfrecall.io.schema import RecallData


def _check_fraction(test_fraction: float) -> None:
    try:
        ok = not isinstance(test_fraction, (bool, str)) and 0.0 < float(test_fraction) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")


def _check_sizes(data: RecallData, num_train: int, num_test: int, how: str) -> None:
    if num_train == 0 or num_test == 0:
        raise ValueError(
            f"{how} of {data.name!r} ({data.num_interactions} interactions) gives "
            f"{num_train} train and {num_test} test rows; both sides must be non-empty "
            "(use more data or another test_fraction)"
        )


def random_split(
    data: RecallData, test_fraction: float = 0.2, seed: int = 42
) -> Tuple[RecallData, RecallData]:
    """Splits interaction rows at random: ``round(n * test_fraction)`` rows go to test.

    Args:
      data: the data set to split.
      test_fraction: share of rows in the test set, in (0, 1).
      seed: numpy seed of the permutation (same seed -> same split).

    Returns:
      ``(train, test)``: `RecallData` with disjoint interaction rows covering all rows,
      named ``"<name>/train"`` and ``"<name>/test"``, sharing the user/item tables.

    Raises:
      ValueError: ``test_fraction`` outside (0, 1), or one side would be empty.
    """
    _check_fraction(test_fraction)
    n = data.num_interactions
    num_test = int(round(n * test_fraction))
    _check_sizes(data, n - num_test, num_test, f"random_split(test_fraction={test_fraction})")
    is_test = np.zeros(n, dtype=bool)
    is_test[np.random.default_rng(seed).permutation(n)[:num_test]] = True
    return (
        data.subset(~is_test, name=f"{data.name}/train"),
        data.subset(is_test, name=f"{data.name}/test"),
    )


def temporal_split(
    data: RecallData, test_fraction: float = 0.2
) -> Tuple[RecallData, RecallData]:
    """Splits at one global time: rows with ``timestamp >= cut`` are test.

    The cut is the timestamp of the row at position ``n - round(n * test_fraction)`` in
    time order. Rows sharing the cut's timestamp all go to test, so no test-time row is
    trained on; with ties the test share can exceed ``test_fraction``.

    Args:
      data: the data set; its interactions need a ``timestamp`` column.
      test_fraction: the approximate share of rows in the test set, in (0, 1).

    Returns:
      ``(train, test)`` `RecallData`, named ``"<name>/train"`` and ``"<name>/test"``.

    Raises:
      ValueError: no ``timestamp`` column, ``test_fraction`` outside (0, 1), or one
        side would be empty (e.g. every row has the same timestamp).
    """
    _check_fraction(test_fraction)
    if "timestamp" not in data.interactions:
        raise ValueError(
            f"temporal_split needs a 'timestamp' column in the interactions of {data.name!r}; "
            f"columns are {sorted(data.interactions)}"
        )
    timestamp = np.asarray(data.interactions["timestamp"])
    n = len(timestamp)
    num_test = int(round(n * test_fraction))
    if num_test == 0:
        _check_sizes(data, n, 0, f"temporal_split(test_fraction={test_fraction})")
    cut = np.sort(timestamp, kind="stable")[n - num_test]
    is_test = timestamp >= cut
    _check_sizes(data, int(n - is_test.sum()), int(is_test.sum()),
                 f"temporal_split(test_fraction={test_fraction}, cut={cut})")
    return (
        data.subset(~is_test, name=f"{data.name}/train"),
        data.subset(is_test, name=f"{data.name}/test"),
    )


def item_split(data: RecallData, test_fraction: float = 0.2, seed: int = 42
               ) -> Tuple[RecallData, RecallData]:
    """Holds out ``round(test_fraction * items)`` of the items with a positive, at random,
    and every interaction row of those items (positives and exposures).

    Returns:
      ``(train, test)``: no item of ``test`` appears in ``train``.

    Raises:
      ValueError: ``test_fraction`` outside (0, 1), or an empty side.
    """
    _check_fraction(test_fraction)
    inter = data.interactions
    items = inter["item_id"].astype(str)
    candidates = np.unique(items[np.asarray(inter["positive"], bool)])
    num_cold = int(round(len(candidates) * test_fraction))
    cold = candidates[np.random.default_rng(seed).permutation(len(candidates))[:num_cold]]
    is_test = np.isin(items, cold)
    _check_sizes(data, int((~is_test).sum()), int(is_test.sum()),
                 f"item_split(test_fraction={test_fraction})")
    return (
        data.subset(~is_test, name=f"{data.name}/train"),
        data.subset(is_test, name=f"{data.name}/test"),
    )


def leave_last_n_split(data: RecallData, n: int = 1) -> Tuple[RecallData, RecallData]:
    """Per user, the last ``n`` POSITIVE interactions by time are test; the rest is train.

    The sequential-recommendation protocol ("predict each user's next items"). Exposure
    rows (non-positives) always stay in train. Users with at most ``n`` positives keep
    them all in train (they would otherwise have no history): they are not evaluated.
    Ties in time are broken by row order (later rows are later).

    Args:
      data: the data set; its interactions need a ``timestamp`` column.
      n: positives per user held out (>= 1).

    Returns:
      ``(train, test)`` named ``"<name>/train"`` and ``"<name>/test"``.

    Raises:
      ValueError: ``n < 1``, no timestamp column, or an empty side.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    inter = data.interactions
    if "timestamp" not in inter:
        raise ValueError(f"leave_last_n_split of {data.name!r} needs a 'timestamp' column")
    rows = np.flatnonzero(inter["positive"])
    users = inter["user_id"][rows].astype(str)
    # Sort positives by (user, timestamp, row): the last n of each user's run are test.
    order = np.lexsort((rows, inter["timestamp"][rows], users))
    rows, users = rows[order], users[order]
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    ends = np.r_[starts[1:], len(users)]
    counts = ends - starts
    position_from_end = ends.repeat(counts) - np.arange(len(users))  # 1 = the user's last
    held = (position_from_end <= n) & (counts.repeat(counts) > n)
    is_test = np.zeros(data.num_interactions, dtype=bool)
    is_test[rows[held]] = True
    _check_sizes(data, int((~is_test).sum()), int(is_test.sum()), f"leave_last_n_split(n={n})")
    return (
        data.subset(~is_test, name=f"{data.name}/train"),
        data.subset(is_test, name=f"{data.name}/test"),
    )


def holdout_pairs(users: np.ndarray, items: np.ndarray, fraction: float,
                  seed: int = 0) -> np.ndarray:
    """Per user, a random share of their distinct (user, item) pairs: the rows to hold out.

    Each user with d distinct items holds out ``floor(d * fraction + U)`` of them (U
    uniform in [0, 1): stochastic rounding, so the expected share is ``fraction`` for
    every d), at most ``d - 1``: a user with one item keeps it. Every row of a held-out
    pair is held out, so a repeated item never sits on both sides.

    Args:
      users, items: `(n,)` aligned arrays of ids or indices (any hashable dtype).
      fraction: the share to hold out, in (0, 1).
      seed: numpy seed (same inputs and seed -> same rows).

    Returns:
      `(n,)` bool mask of the held-out rows.
    """
    _check_fraction(fraction)
    users, items = np.asarray(users), np.asarray(items)
    if users.shape != items.shape or users.ndim != 1:
        raise ValueError(f"users and items must be 1-D of one length, got {users.shape} and "
                         f"{items.shape}")
    if len(users) == 0:
        return np.zeros(0, dtype=bool)
    _, user_code = np.unique(users, return_inverse=True)
    _, item_code = np.unique(items, return_inverse=True)
    pair_key, pair_of_row = np.unique(user_code.astype(np.int64) * (item_code.max() + 1)
                                      + item_code, return_inverse=True)
    pair_user = pair_key // (item_code.max() + 1)
    rng = np.random.default_rng(seed)
    # Shuffle pairs within each user (sort by user, then a random key), then hold out
    # each user's first n_u.
    order = np.lexsort((rng.random(len(pair_key)), pair_user))
    sorted_user = pair_user[order]
    starts = np.r_[0, np.flatnonzero(sorted_user[1:] != sorted_user[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(order)])
    n_hold = np.minimum(np.floor(counts * fraction + rng.random(len(counts))), counts - 1)
    rank = np.arange(len(order)) - np.repeat(starts, counts)
    held_pair = np.zeros(len(pair_key), dtype=bool)
    held_pair[order] = rank < np.repeat(n_hold, counts)
    return held_pair[pair_of_row]


def validation_split(train: RecallData, fraction: float = 0.1,
                     seed: int = 0) -> Tuple[RecallData, RecallData]:
    """Carves a validation slice from a TRAINING split, per user (`holdout_pairs`).

    Only positives move: each user keeps at least one training positive, and exposure
    rows stay in training. Choices (epochs, lambda) made on the slice never see the test
    split.

    Returns:
      ``(fit, validation)`` named ``"<name>/fit"`` and ``"<name>/validation"``.
    """
    inter = train.interactions
    positive = np.flatnonzero(inter["positive"])
    held = np.zeros(train.num_interactions, dtype=bool)
    held[positive] = holdout_pairs(inter["user_id"][positive], inter["item_id"][positive],
                                   fraction, seed)
    return (train.subset(~held, name=f"{train.name}/fit"),
            train.subset(held, name=f"{train.name}/validation"))
