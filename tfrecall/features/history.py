"""The user's history read through the item tower's own id embedding table.

A bag of the user's recent items, embedded and mean-pooled, gives the user tower what
item-based collaborative filtering knows: "people who took these items take ...". The
YouTube DNN (Covington et al., RecSys 2016, sec. 3.1) and SimpleX (Mao et al., CIKM
2021, sec. 3.2: behaviour aggregation) embed the watched items with the SAME table the
candidate side uses. Sharing matters: a history table of its own starts from scratch and
learns only from the user side (it cost the synthetic default 0.05 R@100, BENCHMARKS.md),
while the item id rows are already trained by every positive, so a user never seen in
training, or one whose history grew since, gets a meaningful vector from their items alone.

`ItemHistoryEmbedding` owns no weights: `TwoTowerModel` binds it to the item tower's id
layer (`bind`), whose lookup and table it calls. The reference is deliberately not tracked
by Keras (the variables belong to the item tower, and are saved, trained and restored
there exactly once); a user tower used without its model raises a clear error.
"""

from __future__ import annotations

from typing import Optional

from tfrecall._backend import keras, register, tf
from tfrecall.features.embeddings import CategoricalEmbedding, ids_to_strings, pool_tokens


class _Untracked:
    """Holds a layer without Keras tracking it as a sublayer (see the module docstring)."""

    def __init__(self, layer):
        self.layer = layer


@register
class ItemHistoryEmbedding(keras.layers.Layer):
    """Mean of the item tower's id embeddings of the items in one joined string.

    Args:
      embedding_dim: output width; must equal the bound item id layer's.
      separator: the delimiter between item ids in one value ("i3|i17|i9").
      **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
      inputs: strings of any shape S: each a `separator`-joined list of item ids
        ("" = no history). Unknown ids take the item layer's OOV row, as they do on
        the item side; empty tokens are dropped; no token gives zeros.

    Returns:
      S + (embedding_dim,) float tensor.

    Raises:
      ValueError: called before `bind`, or bound to a layer of another width.
    """

    def __init__(self, embedding_dim: int, separator: str = "|", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"ItemHistoryEmbedding {self.name!r}: embedding_dim must be an "
                             f"integer >= 1, got {embedding_dim!r}")
        if not isinstance(separator, str) or not separator:
            raise ValueError(f"ItemHistoryEmbedding {self.name!r}: separator must be a "
                             f"non-empty string, got {separator!r}")
        self.embedding_dim = int(embedding_dim)
        self.separator = separator
        self._item: Optional[_Untracked] = None

    def bind(self, item_layer: CategoricalEmbedding) -> None:
        """Reads item ids through `item_layer` (the item tower's id embedding) from now on."""
        if not isinstance(item_layer, CategoricalEmbedding):
            raise ValueError(f"ItemHistoryEmbedding {self.name!r}: the item id feature must be "
                             f"an id embedding, got {type(item_layer).__name__}")
        if item_layer.embedding_dim != self.embedding_dim:
            raise ValueError(
                f"ItemHistoryEmbedding {self.name!r}: embedding_dim {self.embedding_dim} "
                f"differs from the item id embedding's {item_layer.embedding_dim}")
        self._item = _Untracked(item_layer)

    @property
    def bound(self) -> bool:
        return self._item is not None

    def adapt(self, values) -> None:
        """No state of its own: the vocabulary is the item id layer's."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        if self._item is None:
            raise ValueError(
                f"ItemHistoryEmbedding {self.name!r} is not bound to an item id embedding; "
                "a tower with a history feature works inside a TwoTowerModel, which binds it")
        strings = ids_to_strings(inputs, f"ItemHistoryEmbedding {self.name!r}")
        item = self._item.layer
        return pool_tokens(strings, self.separator, item._embed, self.embedding_dim)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape).concatenate([self.embedding_dim])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"embedding_dim": self.embedding_dim, "separator": self.separator})
        return config


__all__ = ["ItemHistoryEmbedding"]
