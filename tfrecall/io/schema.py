"""The in-memory form every reader produces and every sample builder consumes.

A data set is three column tables of numpy arrays (`RecallData`):

- ``interactions``: one row per logged event.
  Required: ``user_id`` (object array of str), ``item_id`` (object array of str),
  ``label`` (float32 graded relevance: order 5, cart 4, click 3, impression 1 by
  default; 0 for a plain exposure), ``positive`` (bool: this row is a positive for
  recall training; exposures/impressions are not).
  Optional: ``timestamp`` (int64 seconds), ``event`` (object array of str),
  ``request_id`` (object array of str: rows of one request/session share it),
  ``ranker_score`` (float32, NaN where the ranker did not score the row).
- ``users``: ``user_id`` plus user feature columns, one row per user, or None.
- ``items``: ``item_id`` plus item feature columns, one row per item, or None.

Feature columns are float32 arrays (NaN = missing) for numbers and object arrays of
str ("" = missing) for strings; a multi-valued column is a str column whose values
hold several categories joined by a separator ("Action|Comedy").

Ids are always strings, so a SavedModel's serving signature takes one dtype for ids
whatever the source file held.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import numpy as np

Table = Dict[str, np.ndarray]

INTERACTION_REQUIRED = ("user_id", "item_id", "label", "positive")
INTERACTION_OPTIONAL = ("timestamp", "event", "request_id", "ranker_score")
# The columns an interaction file may hold (label and event become label/positive).
INTERACTION_COLUMNS = ("user_id", "item_id", "label", "event", "timestamp", "request_id",
                       "ranker_score")

DEFAULT_EVENT_LABELS = {"impression": 1.0, "click": 3.0, "cart": 4.0, "order": 5.0}
"""Graded relevance of each event name; `impression` rows are exposures, not positives."""

EXPOSURE_EVENTS = ("impression",)


@dataclasses.dataclass
class RecallData:
    """Interactions plus optional user and item feature tables (see module docstring)."""

    interactions: Table
    users: Optional[Table] = None
    items: Optional[Table] = None
    name: str = "data"

    def __post_init__(self):
        validate_interactions(self.interactions, self.name)
        if self.users is not None:
            validate_table(self.users, "user_id", f"{self.name} users")
        if self.items is not None:
            validate_table(self.items, "item_id", f"{self.name} items")

    @property
    def num_interactions(self) -> int:
        return int(len(self.interactions["user_id"]))

    def item_catalogue(self) -> np.ndarray:
        """Every item id known to the data set: the item table's, then any only in the log."""
        ids = [] if self.items is None else list(self.items["item_id"])
        seen = set(ids)
        extra = sorted(set(self.interactions["item_id"].tolist()) - seen)
        return np.asarray(ids + extra, dtype=object)

    def user_ids(self) -> np.ndarray:
        ids = [] if self.users is None else list(self.users["user_id"])
        seen = set(ids)
        extra = sorted(set(self.interactions["user_id"].tolist()) - seen)
        return np.asarray(ids + extra, dtype=object)

    def subset(self, rows: np.ndarray, name: Optional[str] = None) -> "RecallData":
        """The same tables with only the given interaction rows (index or bool mask)."""
        inter = {k: v[rows] for k, v in self.interactions.items()}
        return RecallData(inter, self.users, self.items, name or self.name)


def validate_interactions(table: Table, what: str = "interactions") -> None:
    """Checks columns, dtypes and lengths; raises ValueError naming the problem."""
    missing = [c for c in INTERACTION_REQUIRED if c not in table]
    if missing:
        raise ValueError(f"{what}: missing required column(s) {missing}")
    n = len(table["user_id"])
    for name, col in table.items():
        if len(col) != n:
            raise ValueError(f"{what}: column {name!r} has {len(col)} rows, user_id has {n}")
    for name in ("user_id", "item_id"):
        if table[name].dtype != object:
            raise ValueError(f"{what}: column {name!r} must hold str ids (object dtype)")
    if table["positive"].dtype != bool:
        raise ValueError(f"{what}: column 'positive' must be bool")
    if not np.all(np.isfinite(table["label"])):
        raise ValueError(f"{what}: column 'label' holds NaN or inf")


def validate_table(table: Table, key: str, what: str) -> None:
    if key not in table:
        raise ValueError(f"{what}: missing key column {key!r}")
    n = len(table[key])
    for name, col in table.items():
        if len(col) != n:
            raise ValueError(f"{what}: column {name!r} has {len(col)} rows, {key} has {n}")
    keys = table[key]
    if len(set(keys.tolist())) != n:
        raise ValueError(f"{what}: {key} values are not unique")
