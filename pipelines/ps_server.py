"""A worker or parameter-server task of a `--strategy=parameter_server` cluster.

    TF_CONFIG='{"cluster": {"chief": [...], "worker": [...], "ps": [...]},
                "task": {"type": "ps", "index": 0}}' python -m pipelines.ps_server

Starts this task's `tf.distribute.Server` (cluster and task from TF_CONFIG) and serves
until killed; the chief's `python -m pipelines.train --strategy=parameter_server` runs the
training on it. `pipelines.train --strategy=parameter_server` does the same when its
TF_CONFIG task is a worker or ps, so one command can be given to every task.
"""

from __future__ import annotations

import sys

import tfrecall  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from tfrecall.cluster import serve


def main() -> int:
    try:
        serve()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
