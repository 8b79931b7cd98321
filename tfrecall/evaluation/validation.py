"""Validation during training: full-catalogue Recall@K on a slice of the training split.

`ValidationRecall` is a Keras callback that, at every epoch end, ranks the whole
catalogue for the validation users (their remaining training items excluded, the test
protocol of `tfrecall.evaluation.harness`) and writes ``val_recall_at_K`` into the
epoch's logs. Callbacks after it in the list see the value: Keras' own `EarlyStopping`
stops on it and restores the best weights, `TensorBoard` plots it, `History` keeps it.
Keras has no retrieval metric over a catalogue outside the batch (its metrics see one
batch's scores), which is why this one is written here.
"""

from __future__ import annotations

from typing import List, Mapping

import numpy as np

from tfrecall._backend import keras
from tfrecall.evaluation.harness import EvalSet, evaluate_model


def monitor_name(k: int) -> str:
    """The logs key of Recall@k (TensorBoard rejects '@' in summary names)."""
    return f"val_recall_at_{int(k)}"


class ValidationRecall(keras.callbacks.Callback):
    """Writes full-catalogue validation Recall@k into each epoch's logs.

    Args:
      eval_set: targets = the validation pairs, exclusions = the fit pairs
        (`tfrecall.evaluation.harness.make_eval_set(fit, validation, ...)`).
      user_table, item_table: raw feature tables aligned with the eval set's users
        and catalogue (the users' history built from the fit pairs only).
      k: the cut-off.

    Attributes:
      curve: Recall@k after each epoch, in order.
    """

    def __init__(self, eval_set: EvalSet, user_table: Mapping[str, np.ndarray],
                 item_table: Mapping[str, np.ndarray], k: int = 100):
        super().__init__()
        if not eval_set.targets:
            raise ValueError("ValidationRecall: the validation slice has no targets")
        self.eval_set, self.user_table, self.item_table = eval_set, user_table, item_table
        self.k = int(k)
        self.monitor = monitor_name(self.k)
        self.curve: List[float] = []

    def on_epoch_end(self, epoch, logs=None):
        metrics = evaluate_model(self.model, self.eval_set, self.user_table, self.item_table,
                                 (self.k,))
        value = float(metrics[f"recall@{self.k}"])
        self.curve.append(value)
        if logs is not None:
            logs[self.monitor] = value
