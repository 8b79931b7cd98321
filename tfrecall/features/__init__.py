"""tfrecall.features: Keras layers that turn raw feature columns into vectors."""

from tfrecall.features.continuous import BucketizedEmbedding, ContinuousFeature
from tfrecall.features.embeddings import CategoricalEmbedding, MultiCategoricalEmbedding
from tfrecall.features.encoder import FeatureEncoder, build_feature_layer

__all__ = [
    "BucketizedEmbedding",
    "CategoricalEmbedding",
    "ContinuousFeature",
    "FeatureEncoder",
    "MultiCategoricalEmbedding",
    "build_feature_layer",
]
