"""Command-line entry points (`python -m pipelines.train`)."""
