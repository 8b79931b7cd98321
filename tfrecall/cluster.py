"""ParameterServerStrategy plumbing: the cluster from TF_CONFIG, the servers, the layout.

Everything here is TensorFlow's own runtime: `tf.distribute.ParameterServerStrategy` (the
coordinator dispatches training steps to the workers through the `ClusterCoordinator`
that Keras' `model.fit` creates), a `tf.distribute.experimental.partitioners` partitioner
that splits the large variables (the id-embedding tables) row-wise over the parameter
servers, and `tf.distribute.Server` for the worker and ps tasks. This module only checks
TF_CONFIG (TensorFlow's own errors for a bad one come late and are cryptic), starts the
server of a worker/ps task, and describes where the variables went.

Cluster layout (TF_CONFIG, see docs/distributed.md)::

    {"cluster": {"chief": ["host:port"], "worker": [...], "ps": [...]},
     "task": {"type": "chief" | "worker" | "ps", "index": i}}

The chief is the coordinator: it runs `pipelines.train --strategy=parameter_server`
(data, vocabularies, evaluation, model files, export). Workers and parameter servers
only run `serve()` (`python -m pipelines.ps_server`, or the same `pipelines.train`
command, which serves when its task is a worker or ps).
"""

from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Optional, Tuple

from tfrecall._backend import tf

SERVER_TASKS = ("worker", "ps")
# MinSizePartitioner's own default: a shard below 256 KiB is not worth a network hop.
DEFAULT_MIN_SHARD_BYTES = 256 << 10


def read_tf_config(environ=None) -> dict:
    """The parsed TF_CONFIG of a parameter-server cluster (chief, >= 1 worker, >= 1 ps).

    Raises:
      ValueError: TF_CONFIG missing, not JSON, or without the jobs/task a
        ParameterServerStrategy cluster needs (names what is missing).
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG")
    if not text:
        raise ValueError("strategy 'parameter_server' needs the TF_CONFIG environment variable "
                         "(a cluster with chief, worker and ps jobs, and this task); see "
                         "docs/distributed.md")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict):
        raise ValueError("TF_CONFIG has no 'cluster' object; see docs/distributed.md")
    missing = [job for job in ("chief", "worker", "ps") if not cluster.get(job)]
    if missing:
        raise ValueError(
            f"strategy 'parameter_server': the TF_CONFIG cluster has no {missing} job(s) (it "
            f"has {sorted(cluster)}); a parameter-server cluster needs one chief (the "
            "coordinator), at least one worker and at least one ps")
    task = config.get("task") or {}
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in cluster or not 0 <= int(index) < len(cluster[kind]):
        raise ValueError(f"TF_CONFIG task {task!r} is not a task of the cluster "
                         f"{ {job: len(hosts) for job, hosts in cluster.items()} }")
    return config


def task_of(environ=None) -> Tuple[Optional[str], int]:
    """(task type, index) of TF_CONFIG, or (None, 0) without one (no validation)."""
    environ = os.environ if environ is None else environ
    try:
        task = json.loads(environ.get("TF_CONFIG") or "{}").get("task") or {}
    except (json.JSONDecodeError, AttributeError):
        return None, 0
    return task.get("type"), int(task.get("index", 0))


def parameter_server_strategy(min_shard_bytes: int = DEFAULT_MIN_SHARD_BYTES):
    """A `tf.distribute.ParameterServerStrategy` for the cluster of TF_CONFIG (the coordinator).

    Variables are split row-wise over the parameter servers by a `MinSizePartitioner`:
    a variable larger than `min_shard_bytes` gets ceil(bytes / min_shard_bytes) shards,
    at most one per ps. So the id-embedding tables (vocabulary x dim) are spread over
    the parameter servers while small kernels and biases stay whole (one ps each, round
    robin); a shard is one row range, looked up by `tf.nn.embedding_lookup` where it
    lives.

    Raises:
      ValueError: a bad TF_CONFIG (see `read_tf_config`), or this task is not the chief.
    """
    config = read_tf_config()
    kind = config["task"].get("type")
    if kind != "chief":
        raise ValueError(f"the parameter_server coordinator runs on the chief task, this "
                         f"TF_CONFIG task is {kind!r}; workers and ps run "
                         "`python -m pipelines.ps_server` (see docs/distributed.md)")
    if min_shard_bytes < 1:
        raise ValueError(f"min_shard_bytes must be >= 1, got {min_shard_bytes}")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
        min_shard_bytes=min_shard_bytes, max_shards=len(config["cluster"]["ps"]))
    return tf.distribute.ParameterServerStrategy(resolver, variable_partitioner=partitioner)


def serve(environ=None) -> None:
    """Runs this worker/ps task's `tf.distribute.Server` until the process is killed.

    Raises:
      ValueError: a bad TF_CONFIG, or its task is the chief (which runs the training).
    """
    config = read_tf_config(environ)
    kind, index = config["task"]["type"], int(config["task"].get("index", 0))
    if kind not in SERVER_TASKS:
        raise ValueError(f"only {SERVER_TASKS} tasks run a server; the TF_CONFIG task is "
                         f"{kind!r} (the chief runs `python -m pipelines.train "
                         "--strategy=parameter_server`)")
    server = tf.distribute.Server(
        tf.train.ClusterSpec(config["cluster"]), job_name=kind, task_index=index,
        protocol=config.get("rpc_layer") or "grpc", start=True)
    print(f"tfrecall: {kind}:{index} serving at {config['cluster'][kind][index]}", flush=True)
    server.join()


def variable_layout(model) -> List[Dict]:
    """Where each variable of `model` lives: name, full shape, type and its shards' devices.

    Keras lists the shards of a `ShardedVariable` as separate weights ("<name>/part_<i>");
    they are grouped back here, and "type" says whether the layer really holds a
    `ShardedVariable` (e.g. an `Embedding`'s `embeddings`).
    """
    # ShardedVariable has no public export in TF 2.20 besides tf.__internal__.
    sharded_type = tf.__internal__.distribute.ShardedVariable
    owner = {}  # id(shard) -> the ShardedVariable a layer holds
    for module in model.submodules:
        for value in vars(module).values():
            if isinstance(value, sharded_type):
                owner.update({id(part): value for part in value.variables})
    layout, by_name = [], {}
    for var in model.variables:
        if not isinstance(var, tf.Variable):
            continue  # a lookup table's weight handler (its table is no variable)
        name = var.name.split(":")[0]
        whole = owner.get(id(var))
        if whole is not None:
            name = re.sub(r"/part_\d+$", "", name)
        if name not in by_name:
            by_name[name] = {
                "name": name,
                "type": type(whole if whole is not None else var).__name__,
                "shape": list((whole if whole is not None else var).shape),
                "shards": [],
            }
            layout.append(by_name[name])
        by_name[name]["shards"].append({"shape": list(var.shape), "device": var.device})
    return layout


def describe_layout(layout: List[Dict]) -> str:
    """One line per sharded variable, then a count of the whole ones."""
    lines = []
    whole = 0
    for entry in layout:
        if len(entry["shards"]) > 1:
            parts = ", ".join(f"{s['shape'][0]} rows on {_short(s['device'])}"
                              for s in entry["shards"])
            lines.append(f"  {entry['name']} {entry['shape']}: {parts}")
        else:
            whole += 1
    lines.append(f"  {whole} other variable(s) whole (not larger than ps_min_shard_bytes)")
    return "variables sharded over the parameter servers:\n" + "\n".join(lines)


def _short(device: str) -> str:
    """'/job:ps/replica:0/task:1/device:CPU:0' -> '/job:ps/task:1'."""
    parts = dict(p.split(":", 1) for p in device.strip("/").split("/") if ":" in p)
    return f"/job:{parts.get('job')}/task:{parts.get('task')}" if parts else device


STRATEGIES = ("default", "mirrored", "multi_worker", "parameter_server")


def make_strategy(name: str, ps_min_shard_bytes: int = DEFAULT_MIN_SHARD_BYTES):
    """The tf.distribute strategy named by `RecipeConfig.strategy`.

    "multi_worker" reads the cluster from the TF_CONFIG environment variable (see
    docs/distributed.md); every worker runs the same command. "parameter_server" also
    reads TF_CONFIG; this process must be its chief (the coordinator), the workers and
    parameter servers run `python -m pipelines.ps_server` (`serve`).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multi_worker' needs the TF_CONFIG environment variable "
                             "(cluster and task); see docs/distributed.md")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "parameter_server":
        return parameter_server_strategy(ps_min_shard_bytes)
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def is_chief(strategy) -> bool:
    """True on the worker that writes checkpoints, the model and the export."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )
