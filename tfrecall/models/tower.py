"""A tower: raw features -> `FeatureEncoder` -> MLP -> linear projection -> L2 norm.

The same class serves as user tower and item tower. Inputs may be `(B,)` per feature
(one entity per row) or `(B, L)` (a list of L candidates per row); the output is
`(B, D)` or `(B, L, D)` float32.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from tfrecall._backend import keras, register, tf
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.features import FeatureEncoder


@register
class Tower(keras.layers.Layer):
    """Feature encoder + MLP + projection (+ L2 normalization).

    Args:
      features: the tower's feature specs (FeatureSpec or dicts), or a ready
        `FeatureEncoder`.
      hidden_units: widths of the hidden Dense layers (may be empty).
      output_dim: the embedding width D.
      activation: activation of the hidden layers.
      dropout: dropout rate after each hidden layer.
      normalize: L2-normalize the output, so dot products are cosines.
      projection: end with a linear projection to `output_dim` (default). Without
        it, the last hidden layer (or, with no hidden layers, the encoder's
        concatenated features, e.g. a bare id embedding as in matrix factorization)
        is the embedding, and its width must equal `output_dim`.

    Call arguments:
      features: dict of raw feature tensors, all of shape S ((B,) or (B, L)).
      training: Python bool, for dropout.

    Returns:
      S + (D,) float32 embeddings.

    Example:
      >>> tower = Tower([FeatureSpec("item_id", "id")], hidden_units=(), output_dim=8)
      >>> tower.encoder.adapt({"item_id": np.array(["a", "b"], dtype=object)})
      >>> tower({"item_id": tf.constant(["a", "zzz"])}).shape
      TensorShape([2, 8])
    """

    def __init__(
        self,
        features,
        hidden_units: Sequence[int] = (128,),
        output_dim: int = 64,
        activation: str = "relu",
        dropout: float = 0.0,
        normalize: bool = True,
        projection: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Validates the numbers with TowerConfig's messages.
        cfg = TowerConfig(hidden_units, output_dim, activation, dropout, normalize)
        if isinstance(features, FeatureEncoder):
            self.encoder = features
        elif isinstance(features, Mapping):  # a serialized FeatureEncoder config
            self.encoder = keras.saving.deserialize_keras_object(features)
        else:
            self.encoder = FeatureEncoder(list(features), name="encoder")
        self.hidden_units = cfg.hidden_units
        self.output_dim = cfg.output_dim
        self.activation = cfg.activation
        self.dropout = cfg.dropout
        self.normalize = cfg.normalize
        self.hidden = [
            keras.layers.Dense(u, activation=self.activation, name=f"hidden_{i}")
            for i, u in enumerate(self.hidden_units)
        ]
        self.dropouts = [
            keras.layers.Dropout(self.dropout) if self.dropout > 0 else None
            for _ in self.hidden_units
        ]
        self.use_projection = bool(projection)
        if self.use_projection:
            self.projection = keras.layers.Dense(self.output_dim, name="projection")
        else:
            width = self.hidden_units[-1] if self.hidden_units else self.encoder.output_dim
            if width != self.output_dim:
                raise ValueError(
                    f"projection=False needs the last layer's width ({width}) to equal "
                    f"output_dim ({self.output_dim})"
                )

    @classmethod
    def from_config_objects(
        cls, specs: Sequence[FeatureSpec], config: TowerConfig, name: Optional[str] = None
    ) -> "Tower":
        return cls(
            specs,
            hidden_units=config.hidden_units,
            output_dim=config.output_dim,
            activation=config.activation,
            dropout=config.dropout,
            normalize=config.normalize,
            name=name,
        )

    @property
    def specs(self) -> list:
        return self.encoder.specs

    def call(self, features, training=None):
        x = self.encoder(features, training=training)
        for dense, drop in zip(self.hidden, self.dropouts, strict=True):
            x = dense(x)
            if drop is not None:
                x = drop(x, training=training)
        if self.use_projection:
            x = self.projection(x)
        if self.normalize:
            # epsilon keeps an all-zero vector finite (its cosine with anything is 0).
            x = tf.math.l2_normalize(x, axis=-1, epsilon=1e-12)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "features": keras.saving.serialize_keras_object(self.encoder),
                "hidden_units": list(self.hidden_units),
                "output_dim": self.output_dim,
                "activation": self.activation,
                "dropout": self.dropout,
                "normalize": self.normalize,
                "projection": self.use_projection,
            }
        )
        return config
