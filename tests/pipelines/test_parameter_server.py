"""ParameterServerStrategy: a chief, 1 worker and 2 ps on 127.0.0.1 train one sharded model."""

import json
import math
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO

from tfrecall import cluster
from tfrecall.cluster import make_strategy
from tfrecall.recipe import RecipeConfig, run

# Item table 401 x 32 float32 = 51 KB and user table 801 x 32 = 103 KB are larger than
# 32 KiB (2 shards each, one per ps); the largest dense kernel, 64 x 64 float32 = 16 KiB,
# is not (it stays whole).
MIN_SHARD_BYTES = 32 << 10
# --item_id_min_count=1: every item with a positive gets a row, so the item table is large
# enough to be sharded.
ARGS = ["--synthetic_users=800", "--synthetic_items=400", "--epochs=2", "--batch_size=512",
        "--item_id_min_count=1", "--validation_fraction=0", "--user_id_embedding",
        "--baselines=popularity", "--index=brute_force", "--verbose=0",
        f"--ps_min_shard_bytes={MIN_SHARD_BYTES}"]


def vocabulary_rows(model_dir, tower, feature):
    """Rows of a feature's embedding table, from the saved model's config (vocabulary + OOV)."""
    config = json.loads((model_dir / "model.json").read_text())["config"]
    encoder = config[tower]["config"]["features"]["config"]
    for spec, layer in zip(encoder["specs"], encoder["feature_layers"], strict=True):
        if spec["name"] == feature:
            return len(layer["config"]["vocabulary"]) + layer["config"]["num_oov_buckets"]
    raise AssertionError(f"no feature {feature!r} in {tower}")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(cluster_spec, kind, index=0):
    return json.dumps({"cluster": cluster_spec, "task": {"type": kind, "index": index}})


# A fresh process: the sharded export, and an unsharded export written here from the
# chief's model.json/weights (`load_model`, default strategy), must expose the same
# signatures and give the same top-K for the same users.
CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tfrecall
    from tfrecall._backend import tf
    from tfrecall.recipe import (entity_table, load_model, load_recall_data,
                                 load_recipe_config, user_feature_table, split_data)
    from tfrecall.serving.export import export_saved_model

    model_dir, sharded_path, out_dir = sys.argv[1:]
    config = load_recipe_config(model_dir)
    data = load_recall_data(config)
    train, _ = split_data(data, config)
    users = user_feature_table(data, train, data.user_ids(), config)
    items = entity_table(data.items, data.item_catalogue(), "item_id")
    model = load_model(model_dir)  # unsharded: no strategy in this process
    plain_path = export_saved_model(model, items, out_dir, k=config.export_k,
                                    index="brute_force")

    def describe(fn):
        specs = lambda d: {k: [str(s.shape), s.dtype.name] for k, s in d.items()}
        return {"inputs": specs(fn.structured_input_signature[1]),
                "outputs": specs(fn.structured_outputs)}

    result = {}
    for name, path in (("sharded", sharded_path), ("plain", plain_path)):
        loaded = tf.saved_model.load(path)
        serve = loaded.signatures["serving_default"]
        feed = {k: tf.constant(np.asarray(users[k][:20]).astype(
                    str if s.dtype == tf.string else np.float32))
                for k, s in serve.structured_input_signature[1].items()}
        out = serve(**feed)
        result[name] = {
            "signatures": {s: describe(fn) for s, fn in loaded.signatures.items()},
            "item_ids": [[i.decode() for i in row] for row in out["item_ids"].numpy()],
            "scores": out["scores"].numpy().tolist(),
        }
    result["catalogue"] = [str(i) for i in items["item_id"]]
    print(json.dumps(result))
""")


@pytest.mark.slow
def test_chief_worker_and_two_ps_train_a_sharded_model(tmp_path, subprocess_env):
    chief_port, worker_port, *ps_ports = free_ports(4)
    spec = {"chief": [f"127.0.0.1:{chief_port}"], "worker": [f"127.0.0.1:{worker_port}"],
            "ps": [f"127.0.0.1:{p}" for p in ps_ports]}
    model_dir = tmp_path / "run"
    # The worker runs the same command as the chief (it serves); the ps run the helper.
    servers = [[sys.executable, "-m", "pipelines.train", "--strategy=parameter_server", *ARGS]]
    servers += [[sys.executable, "-m", "pipelines.ps_server"]] * 2
    tasks = [("worker", 0), ("ps", 0), ("ps", 1)]
    procs = []
    try:
        for cmd, (kind, index) in zip(servers, tasks, strict=True):
            procs.append(subprocess.Popen(
                cmd, cwd=REPO, env=dict(subprocess_env, TF_CONFIG=tf_config(spec, kind, index)),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        chief = subprocess.run(
            [sys.executable, "-m", "pipelines.train", "--strategy=parameter_server",
             f"--model_dir={model_dir}", *ARGS],
            cwd=REPO, env=dict(subprocess_env, TF_CONFIG=tf_config(spec, "chief")),
            capture_output=True, text=True, timeout=300)
        assert chief.returncode == 0, chief.stderr[-3000:]
        # The servers served until now (they never exit on their own).
        assert all(proc.poll() is None for proc in procs)
    finally:
        for proc in procs:  # never leave a server behind
            proc.kill()
            proc.wait(timeout=30)
    summary = json.loads(chief.stdout.strip().splitlines()[-1])

    # Both epochs ran: one checkpoint each, and 2 x the epoch's rows trained on.
    rows = int(chief.stdout.split("rows/epoch=")[1].split()[0])
    assert summary["train_examples"] == 2 * rows
    assert (model_dir / "checkpoints" / "final" / "ckpt-002.index").exists()
    assert os.listdir(model_dir / "logs")  # TensorBoard (epoch summaries) under PS too

    # The id-embedding tables are ShardedVariables, one shard on each ps; the dense
    # kernels (not larger than MIN_SHARD_BYTES) are whole, on one ps.
    layout = {v["name"]: v for v in json.loads((model_dir / "variable_layout.json").read_text())}
    for tower, feature in (("user_tower", "user_id"), ("item_tower", "item_id")):
        rows_total = vocabulary_rows(model_dir, tower, feature)
        # 800 users + 1 OOV row; the 266 items (of 400) with a training positive + 1.
        assert rows_total == (801 if feature == "user_id" else 267)
        table = layout[f"two_tower_model/{tower}/encoder/{feature}/embeddings"]
        assert table["type"] == "ShardedVariable" and table["shape"] == [rows_total, 32]
        devices = [s["device"] for s in table["shards"]]
        assert [d.split("/device")[0] for d in devices] == [
            "/job:ps/replica:0/task:0", "/job:ps/replica:0/task:1"]
        assert sum(s["shape"][0] for s in table["shards"]) == rows_total
    kernel = layout["two_tower_model/user_tower/projection/kernel"]
    assert kernel["type"] != "ShardedVariable" and len(kernel["shards"]) == 1
    assert kernel["shards"][0]["device"].startswith("/job:ps/")
    assert "variables sharded over the parameter servers" in chief.stdout
    # One replica per worker step: the in-batch softmax takes no cross-replica gather.
    assert "1 worker(s), 2 ps, replicas per step: 1" in chief.stdout

    # Evaluation on the coordinator: finite and far above random (recall@10 ~ 10 / 400).
    m = summary["metrics"]
    assert all(math.isfinite(v) for v in m.values())
    assert m["recall@10"] > 0.15 and m["recall@100"] > 0.6

    # The export loads in a fresh process; same signatures and top-K as an unsharded one.
    export = summary["export_path"]
    assert export and os.path.isfile(os.path.join(export, "saved_model.pb"))
    out = subprocess.run([sys.executable, "-c", CHECK, str(model_dir), export,
                          str(tmp_path / "plain")],
                         cwd=REPO, env=subprocess_env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    check = json.loads(out.stdout.strip().splitlines()[-1])
    sharded, plain = check["sharded"], check["plain"]
    assert set(sharded["signatures"]) == {"serving_default", "serving_exclude",
                                          "user_embedding", "item_embedding"}
    assert sharded["signatures"] == plain["signatures"]
    assert sharded["signatures"]["serving_default"]["outputs"]["item_ids"] == [
        "(None, 100)", "string"]
    catalogue = set(check["catalogue"])
    for ids, scores in zip(sharded["item_ids"], sharded["scores"], strict=True):
        assert len(set(ids)) == 100 and set(ids) <= catalogue
        assert scores == sorted(scores, reverse=True)
    # Same weights, sharded or not: the same top 10 and scores.
    assert [r[:10] for r in sharded["item_ids"]] == [r[:10] for r in plain["item_ids"]]
    np.testing.assert_allclose(sharded["scores"], plain["scores"], atol=1e-4)


def test_parameter_server_needs_a_cluster_with_ps(monkeypatch, tmp_path):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG"):
        make_strategy("parameter_server")
    with pytest.raises(ValueError, match="needs the TF_CONFIG"):
        run(RecipeConfig.from_flat(strategy="parameter_server", model_dir=str(tmp_path)),
            log=lambda _: 0)
    workers_only = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", tf_config(workers_only, "chief"))
    with pytest.raises(ValueError, match=r"no \['ps'\] job"):
        make_strategy("parameter_server")
    spec = dict(workers_only, ps=["127.0.0.1:3"])
    monkeypatch.setenv("TF_CONFIG", tf_config(spec, "worker"))
    with pytest.raises(ValueError, match="runs on the chief"):
        make_strategy("parameter_server")
    monkeypatch.setenv("TF_CONFIG", tf_config(spec, "ps", 3))
    with pytest.raises(ValueError, match="not a task of the cluster"):
        cluster.serve()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        make_strategy("parameter_server")
    with pytest.raises(ValueError, match="frequency='streaming'"):
        RecipeConfig.from_flat(strategy="parameter_server", frequency="streaming")


def test_train_without_tf_config_is_a_clear_error(subprocess_env):
    env = {k: v for k, v in subprocess_env.items() if k != "TF_CONFIG"}
    out = subprocess.run([sys.executable, "-m", "pipelines.train", "--strategy=parameter_server",
                          "--synthetic_users=50", "--synthetic_items=50"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "error: --strategy 'parameter_server' needs the TF_CONFIG" in out.stderr
