"""Honest baselines in the same harness as the model: popularity.

Popularity ranks every item by its number of training positives (the same list for
every user, minus what the user already has). A recall model that cannot beat it has
learned nothing personal.
"""

from __future__ import annotations

import numpy as np


def popularity_scores(train_item_ids: np.ndarray, catalogue: np.ndarray) -> np.ndarray:
    """`(num_items,)` float32 training-positive counts per catalogue item."""
    index = {v: i for i, v in enumerate(catalogue.tolist())}
    idx = np.fromiter((index.get(i, -1) for i in train_item_ids.tolist()), np.int64)
    idx = idx[idx >= 0]
    return np.bincount(idx, minlength=len(catalogue)).astype(np.float32)
