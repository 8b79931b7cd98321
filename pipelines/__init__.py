"""Command-line entry points (`python -m pipelines.train`).

Importing the package (which `python -m pipelines.X` does before X) sets
`TF_CPP_MIN_LOG_LEVEL` to 1 unless the caller set it: TensorFlow reads it once, when it
loads, and its INFO lines (CPU instruction sets, "Could not find cuda drivers") would
otherwise open every command. Warnings and errors still print.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
