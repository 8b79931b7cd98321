"""Serving: SavedModel export with a ScaNN, partitioned (stock TF) or brute-force index,
of tfrecall's models (`export_saved_model`) or any query model (`export_query_model`)."""

from tfrecall.serving.export import (
    EXCLUDE_INPUT,
    ExportPath,
    embed_items,
    embed_users,
    export_embeddings,
    export_saved_model,
    read_export_info,
)
from tfrecall.serving.index import INDEX_KINDS, IndexReport, build_index
from tfrecall.serving.query_model import export_query_model
from tfrecall.serving.versions import list_versions, next_version, prune_versions

__all__ = [
    "EXCLUDE_INPUT",
    "INDEX_KINDS",
    "ExportPath",
    "IndexReport",
    "build_index",
    "embed_items",
    "embed_users",
    "export_embeddings",
    "export_query_model",
    "export_saved_model",
    "list_versions",
    "next_version",
    "prune_versions",
    "read_export_info",
]
