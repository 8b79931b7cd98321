"""Serving: SavedModel export with a ScaNN or brute-force index."""

from tfrecall.serving.export import embed_items, embed_users, export_saved_model

__all__ = ["embed_items", "embed_users", "export_saved_model"]
