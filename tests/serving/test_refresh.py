"""Index refresh without retraining (`python -m pipelines.export`): a new item is retrievable."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from pipelines.export import export_from_files
from tfrecall._backend import keras, tf
from tfrecall.config import FeatureSpec, TowerConfig
from tfrecall.io.errors import DataError
from tfrecall.models import TwoTowerModel
from tfrecall.recipe import save_model
from tfrecall.serving import embed_items, embed_users

N_ITEMS = 50
GENRES = ["drama", "comedy", "horror", "docu"]


def write_csv(path, rows, header):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model saved as pipelines.train saves it, plus v1 and v2 catalogue CSVs."""
    keras.utils.set_random_seed(11)
    root = tmp_path_factory.mktemp("refresh")
    rows = [(f"i{j}", GENRES[j % 4], f"{1 + 3 * j}") for j in range(N_ITEMS)]
    items = {"item_id": np.array([r[0] for r in rows], object),
             "genre": np.array([r[1] for r in rows], object),
             "price": np.array([float(r[2]) for r in rows], np.float32)}
    users = {"user_id": np.array([f"u{i}" for i in range(100)], object)}
    model = TwoTowerModel.from_specs(
        [FeatureSpec("user_id", "id", embedding_dim=8)],
        [FeatureSpec("item_id", "id", embedding_dim=8), FeatureSpec("genre", "categorical"),
         FeatureSpec("price", "continuous", log1p=True)],
        tower=TowerConfig(hidden_units=(16,), output_dim=8),
    )
    model.adapt(users, items)
    # Build the towers (as fit does): an unbuilt model saves no weights to restore.
    embed_users(model, users)
    embed_items(model, items)
    save_model(model, str(root / "model"))
    header = ["item_id", "genre", "price"]
    write_csv(root / "v1.csv", rows, header)
    # The new item: an id the vocabulary never saw (OOV bucket), features of item i0.
    write_csv(root / "v2.csv", rows + [("new1", rows[0][1], rows[0][2])], header)
    return model, root


def test_new_item_becomes_retrievable_after_refresh(trained, subprocess_env):
    model, root = trained
    export_dir = str(root / "export")
    k = 10
    v1 = export_from_files(str(root / "model"), str(root / "v1.csv"), export_dir,
                           index="brute_force", k=k, log=None)
    # Reference, independent of the export: numpy scores of the new catalogue.
    v2_items = {"item_id": np.array([f"i{j}" for j in range(N_ITEMS)] + ["new1"], object),
                "genre": np.array([GENRES[j % 4] for j in range(N_ITEMS)] + ["drama"], object),
                "price": np.array([1 + 3 * j for j in range(N_ITEMS)] + [1], np.float32)}
    users = np.array([f"u{i}" for i in range(100)], object)
    scores = embed_users(model, {"user_id": users}) @ embed_items(model, v2_items).T
    rank_of_new = (scores > scores[:, -1:]).sum(axis=1)  # 0 = best
    user = int(np.argmin(rank_of_new))
    assert rank_of_new[user] < k  # a user for whom the new item is a top-k item exists

    # The refresh: the CLI in a fresh process, partitioned index (stock TF ops).
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.export", f"--model_dir={root / 'model'}",
         f"--items={root / 'v2.csv'}", f"--export_dir={export_dir}", "--index=partitioned",
         f"--k={k}", "--keep_versions=5"],
        capture_output=True, text=True, env=subprocess_env, cwd=REPO, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["version"] == 2 and summary["num_items"] == N_ITEMS + 1
    assert summary["index"] == "partitioned" and summary["recall_at_10"] == 1.0

    feed = {"user_id": tf.constant([users[user]])}
    old = tf.saved_model.load(v1).signatures["serving_default"](**feed)
    new = tf.saved_model.load(summary["export_path"]).signatures["serving_default"](**feed)
    old_ids = old["item_ids"].numpy()[0].astype(str).tolist()
    new_ids = new["item_ids"].numpy()[0].astype(str).tolist()
    assert "new1" not in old_ids
    assert new_ids[rank_of_new[user]] == "new1"
    np.testing.assert_allclose(new["scores"].numpy()[0], np.sort(scores[user])[::-1][:k],
                               rtol=1e-4, atol=1e-5)
    assert sorted(os.listdir(export_dir)) == ["1", "2"]


def test_refresh_rejects_a_non_number_in_a_numeric_feature(trained, tmp_path):
    _, root = trained
    write_csv(tmp_path / "bad.csv", [("i0", "drama", "1"), ("i1", "comedy", "cheap")],
              ["item_id", "genre", "price"])
    with pytest.raises(DataError, match=r"column 'price'.*'cheap'"):
        export_from_files(str(root / "model"), str(tmp_path / "bad.csv"),
                          str(tmp_path / "export"), index="brute_force", log=None)
    assert not os.path.exists(tmp_path / "export")


def test_a_catalogue_lacking_a_feature_of_the_model_is_refused(trained, tmp_path,
                                                               subprocess_env):
    # Issue 13: a catalogue of item ids only exported (rc 0, no warning) a model fed no
    # genre and price, while a warm start refused the same file.
    _, root = trained
    write_csv(tmp_path / "ids.csv", [(f"i{j}",) for j in range(N_ITEMS)], ["item_id"])
    with pytest.raises(DataError, match=r"ids.csv: lacks the model's feature column\(s\) "
                                        r"\['genre', 'price'\].*allow_missing_features=True"):
        export_from_files(str(root / "model"), str(tmp_path / "ids.csv"),
                          str(tmp_path / "export"), index="brute_force", log=None)
    assert not os.path.exists(tmp_path / "export" / "1")
    logs = []
    path = export_from_files(str(root / "model"), str(tmp_path / "ids.csv"),
                             str(tmp_path / "export"), index="brute_force", log=logs.append,
                             allow_missing_features=True)
    assert path.info["num_items"] == N_ITEMS
    assert any("2 feature(s) of the model missing, fed as missing values" in line
               for line in logs)
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.export", f"--model_dir={root / 'model'}",
         f"--items={tmp_path / 'ids.csv'}", f"--export_dir={tmp_path / 'export2'}"],
        capture_output=True, text=True, env=subprocess_env, cwd=REPO, timeout=300)
    assert out.returncode == 2
    line, = out.stderr.strip().splitlines()  # one line: no traceback, no cuInit line
    assert line.startswith("error: ") and "--allow_missing_features" in line
    assert "['genre', 'price']" in line


def test_unusable_model_and_export_dirs_name_the_argument(trained, tmp_path):
    _, root = trained
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ValueError, match=r"^model_dir '.*nope' holds no trained model"):
        export_from_files(str(tmp_path / "nope"), str(root / "v1.csv"), str(tmp_path / "e"))
    with pytest.raises(ValueError, match=r"^export_dir '.*afile' is a file"):
        export_from_files(str(root / "model"), str(root / "v1.csv"), str(afile))
