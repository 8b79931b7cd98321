"""tfrecall.features: Keras layers that turn raw feature columns into vectors."""

from tfrecall.features.continuous import BucketizedEmbedding, ContinuousFeature
from tfrecall.features.embeddings import CategoricalEmbedding, MultiCategoricalEmbedding
from tfrecall.features.encoder import FeatureEncoder, build_feature_layer
from tfrecall.features.history import ItemHistoryEmbedding

__all__ = [
    "BucketizedEmbedding",
    "CategoricalEmbedding",
    "ContinuousFeature",
    "FeatureEncoder",
    "ItemHistoryEmbedding",
    "MultiCategoricalEmbedding",
    "build_feature_layer",
]
