"""The tensors of the classic recall channels, built in numpy from the training pairs.

`tfrecall.serving.channels` serves them beside the two-tower index from one SavedModel;
this module only builds the arrays (padded, `-1` = none), so they can be checked against
hand-worked examples without TensorFlow:

- item2item: each item's top-N neighbours of `ItemCF` (cosine on the binary user x item
  matrix) as `(n, N)` rows and weights;
- attribute: an inverted index of an item attribute (a category, or a multi-valued
  ``"Action|Comedy"`` column): each value's most popular items `(V, N)`, with their
  popularity scaled to (0, 1], and each item's values `(n, A)` (for the user's
  preferences);
- popularity: training positives per item `(n,)`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from tfrecall.evaluation.baselines import ItemCF
from tfrecall.ids import check_int

CHANNELS = ("two_tower", "item2item", "attribute", "popularity")
"""The channels a multi-channel export can serve (`tfrecall.serving.channels`)."""

HISTORY_CHANNELS = ("item2item", "attribute")
"""Channels that read the user's history (and say nothing for a user without one)."""


@dataclasses.dataclass
class ChannelTables:
    """The arrays of the history and popularity channels over one catalogue of n items.

    Attributes:
      num_items: n, the catalogue size (row i = catalogue item i).
      popularity: `(n,)` float32 training positives per item.
      neighbors: `(n, N)` int32 item2item neighbour rows, most similar first, -1 pads;
        None without the item2item channel.
      neighbor_weights: `(n, N)` float32 cosines aligned with `neighbors` (0 on pads).
      attribute: the item column of the attribute channel, or None.
      values: `(V,)` the attribute's distinct values (sorted).
      item_values: `(n, A)` int32 value ids of each item, -1 pads.
      value_items: `(V, N)` int32 each value's most popular items, -1 pads.
      value_scores: `(V, N)` float32 their popularity / the catalogue's largest, in (0, 1].
    """

    num_items: int
    popularity: np.ndarray
    neighbors: Optional[np.ndarray] = None
    neighbor_weights: Optional[np.ndarray] = None
    attribute: Optional[str] = None
    values: Optional[np.ndarray] = None
    item_values: Optional[np.ndarray] = None
    value_items: Optional[np.ndarray] = None
    value_scores: Optional[np.ndarray] = None


def check_channels(channels: Sequence[str]) -> tuple:
    """The channel names as a tuple; ValueError for an empty, unknown or repeated name."""
    channels = tuple(channels)
    unknown = [c for c in channels if c not in CHANNELS]
    if not channels or unknown:
        raise ValueError(f"channels must be one or more of {CHANNELS}, got {list(channels)}")
    if len(set(channels)) != len(channels):
        raise ValueError(f"channels must not repeat a name, got {list(channels)}")
    return channels


def padded_rows(indptr: np.ndarray, values: np.ndarray, width: int, fill) -> np.ndarray:
    """The CSR rows `values[indptr[i]:indptr[i + 1]]` cut at `width`, as `(n, width)`
    padded with `fill`."""
    n = len(indptr) - 1
    counts = np.diff(indptr)
    row = np.repeat(np.arange(n), counts)
    pos = np.arange(len(values)) - indptr[row]
    keep = pos < width
    out = np.full((n, width), fill, dtype=np.asarray(values).dtype)
    out[row[keep], pos[keep]] = values[keep]
    return out


def item2item_table(user_idx: np.ndarray, item_idx: np.ndarray, num_users: int,
                    num_items: int, num_neighbors: int = 100):
    """`(n, N)` int32 neighbour rows and float32 cosines of `ItemCF(num_neighbors)`.

    N is the longest kept list (at most `num_neighbors`, at least 1); shorter lists pad
    with -1 / 0.
    """
    check_int("num_neighbors", num_neighbors, 1)
    cf = ItemCF(num_neighbors=num_neighbors).fit(user_idx, item_idx, num_users, num_items)
    width = max(1, int(np.diff(cf.neighbor_indptr).max(initial=0)))
    rows = padded_rows(cf.neighbor_indptr, cf.neighbor_items.astype(np.int32), width, -1)
    weights = padded_rows(cf.neighbor_indptr, cf.neighbor_weights.astype(np.float32), width,
                          0.0)
    return rows, weights


def attribute_index(column: np.ndarray, popularity: np.ndarray, top_n: int = 100,
                    separator: str = "|"):
    """The inverted index of an item attribute.

    Args:
      column: `(n,)` the attribute of each catalogue item, a value or several joined by
        `separator` ("" = none); values are stripped of surrounding whitespace.
      popularity: `(n,)` training positives per item.
      top_n: items kept per value (its most popular; ties by catalogue row).

    Returns:
      ``(values (V,), item_values (n, A) int32, value_items (V, N) int32,
      value_scores (V, N) float32)``; only items with a training positive enter a
      value's list, scored popularity / max(popularity).

    Raises:
      ValueError: no item has a value, no item has a positive, or lengths differ.
    """
    check_int("top_n", top_n, 1)
    column = np.asarray(column, dtype=object)
    popularity = np.asarray(popularity, np.float64)
    if column.shape != popularity.shape:
        raise ValueError(f"the attribute column has {column.shape} entries, popularity "
                         f"{popularity.shape}: both must hold one entry per catalogue item")
    parts = [[v.strip() for v in str(x).split(separator) if v.strip()] if x is not None
             else [] for x in column.tolist()]
    values = np.array(sorted({v for p in parts for v in p}), dtype=object)
    if len(values) == 0:
        raise ValueError("the attribute column has no value on any item")
    if popularity.max(initial=0) <= 0:
        raise ValueError("no item has a training positive: the attribute channel has no "
                         "popular items to return")
    code = {v: i for i, v in enumerate(values.tolist())}
    width = max(1, max(len(set(p)) for p in parts))
    item_values = np.full((len(column), width), -1, np.int32)
    pair_item, pair_value = [], []
    for i, p in enumerate(parts):
        ids = sorted({code[v] for v in p})
        item_values[i, : len(ids)] = ids
        pair_item += [i] * len(ids)
        pair_value += ids
    pair_item, pair_value = np.array(pair_item, np.int64), np.array(pair_value, np.int64)
    keep = popularity[pair_item] > 0
    pair_item, pair_value = pair_item[keep], pair_value[keep]
    # By value, then popularity (descending), then catalogue row: each value's list in order.
    order = np.lexsort((pair_item, -popularity[pair_item], pair_value))
    pair_item, pair_value = pair_item[order], pair_value[order]
    indptr = np.zeros(len(values) + 1, np.int64)
    np.cumsum(np.bincount(pair_value, minlength=len(values)), out=indptr[1:])
    n_width = max(1, min(top_n, int(np.diff(indptr).max(initial=0))))
    value_items = padded_rows(indptr, pair_item.astype(np.int32), n_width, -1)
    scores = (popularity[pair_item] / popularity.max()).astype(np.float32)
    value_scores = padded_rows(indptr, scores, n_width, np.float32(0))
    return values, item_values, value_items, value_scores


def build_tables(channels: Sequence[str], user_idx: np.ndarray, item_idx: np.ndarray,
                 num_users: int, num_items: int, attribute: Optional[str] = None,
                 attribute_column: Optional[np.ndarray] = None, num_neighbors: int = 100,
                 top_n: int = 100, separator: str = "|") -> ChannelTables:
    """The arrays the named channels need, from training positives as index pairs.

    Args:
      channels: names of `CHANNELS` (two_tower needs no table).
      user_idx, item_idx: training positives, indices into the users and the catalogue.
      attribute, attribute_column: the attribute channel's item column name and its
        `(num_items,)` values aligned with the catalogue (needed with "attribute").
      num_neighbors: item2item neighbours kept per item.
      top_n: items kept per attribute value.

    Raises:
      ValueError: unknown channels, or "attribute" without a column.
    """
    channels = check_channels(channels)
    item_idx = np.asarray(item_idx, np.int64)
    popularity = np.bincount(item_idx, minlength=num_items).astype(np.float32)
    tables = ChannelTables(num_items=int(num_items), popularity=popularity)
    if "item2item" in channels:
        tables.neighbors, tables.neighbor_weights = item2item_table(
            user_idx, item_idx, num_users, num_items, num_neighbors)
    if "attribute" in channels:
        if attribute_column is None:
            raise ValueError("the attribute channel needs an item attribute column "
                             "(channel_attribute)")
        tables.attribute = attribute
        (tables.values, tables.item_values, tables.value_items,
         tables.value_scores) = attribute_index(attribute_column, popularity, top_n, separator)
    return tables


__all__ = ["CHANNELS", "ChannelTables", "HISTORY_CHANNELS", "attribute_index", "build_tables",
           "check_channels", "item2item_table", "padded_rows"]
