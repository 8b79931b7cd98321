"""`python -m pipelines.train`: main job, own CSV data, MovieLens, bad input, fresh reload."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO


def run_train(args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "pipelines.train", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=timeout)


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def _write(path, text):
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


def test_own_csv_data_with_feature_config(tmp_path):
    from tfrecall.recipe import RecipeConfig, load_model, run

    rng = np.random.default_rng(0)
    users = [f"u{i}" for i in range(40)]
    items = [f"i{j}" for j in range(30)]
    rows = ["user_id,item_id,event,timestamp"]
    for t in range(1200):
        u = rng.integers(40)
        j = (u % 6) * 5 + rng.integers(5)  # each user group likes 5 items
        rows.append(f"{users[u]},{items[j]},{rng.choice(['click', 'order', 'impression'])},{t}")
    events = _write(tmp_path / "events.csv", "\n".join(rows) + "\n")
    ucsv = _write(tmp_path / "users.csv", "user_id,age,segment\n" + "\n".join(
        f"{u},{20 + i},{'s' + str(i % 6)}" for i, u in enumerate(users)) + "\n")
    icsv = _write(tmp_path / "items.csv", "item_id,price,tags\n" + "\n".join(
        f"{j},{1.5 * k},a|b{k % 6}" for k, j in enumerate(items)) + "\n")
    fcfg = _write(tmp_path / "features.json",
                  '{"items": {"price": {"kind": "bucketized", "num_buckets": 4}}}')
    result = run(RecipeConfig.from_flat(interactions=events, users=ucsv, items=icsv,
                                        feature_config=fcfg,
                              epochs=12, batch_size=64, history_items=5,
                                        validation_fraction=0,
                              model_dir=str(tmp_path / "run"),
                              index="brute_force", verbose=0), log=lambda *_: None)
    assert result.data_name.startswith("events")
    model = load_model(str(tmp_path / "run"))
    kinds = {s.name: s.kind for s in model.item_tower.specs}
    assert kinds == {"item_id": "id", "price": "bucketized", "tags": "multi_categorical"}
    # No user id row by default: features and the history (read through the item table).
    assert {s.name: s.kind for s in model.user_tower.specs} == {
        "age": "continuous", "segment": "categorical", "history": "history"}
    # The export takes the history as a raw string input like any other feature.
    import tensorflow as tf

    sig = tf.saved_model.load(result.export_path).signatures["serving_default"]
    assert "history" in sig.structured_input_signature[1]
    # Six taste groups of five items: each user, fed its features and two items of its
    # group as history, gets its group's items in its top 5 well above chance (and
    # popularity, one list for everyone), which put 1/6 there.
    top = sig(age=tf.constant([20.0 + i for i in range(40)]),
              segment=tf.constant([f"s{i % 6}" for i in range(40)]),
              history=tf.constant([f"i{5 * (i % 6)}|i{5 * (i % 6) + 1}" for i in range(40)])
              )["item_ids"].numpy()[:, :5]
    in_group = np.mean([int(x.decode()[1:]) // 5 == i % 6 for i, row in enumerate(top)
                        for x in row])
    assert in_group >= 0.3, top  # 0.38 measured


def test_bad_input_names_file_line_and_column_without_traceback(tmp_path, subprocess_env):
    events = _write(tmp_path / "events.csv", """
        user_id,item_id,event
        u1,i1,click
        u2,i2,purchase
    """)
    out = run_train([f"--interactions={events}", f"--model_dir={tmp_path}/run"], subprocess_env)
    assert out.returncode == 2
    assert "events.csv" in out.stderr and "line 3" in out.stderr and "event" in out.stderr
    assert "purchase" in out.stderr
    assert "Traceback" not in out.stderr


def test_view_and_loss_mismatch_is_a_clear_error(tmp_path, subprocess_env):
    out = run_train(["--view=pointwise", "--loss=listmle", f"--model_dir={tmp_path}"],
                    subprocess_env)
    assert out.returncode == 2
    assert "listmle" in out.stderr and "pointwise" in out.stderr


def test_help_documents_every_flag(subprocess_env):
    out = run_train(["--helpfull"], subprocess_env)
    text = out.stdout + out.stderr
    for flag in ["interactions", "users", "items", "feature_config", "export_dir", "model_dir",
                 "movielens_min_rating", "view", "loss", "epochs", "index", "temperature"]:
        assert f"--{flag}" in text, flag


@pytest.mark.slow
def test_movielens_latest_small_reference_protocol(ml_latest_small, tmp_path):
    from tfrecall.recipe import RecipeConfig, run

    result = run(RecipeConfig.from_flat(interactions=str(ml_latest_small / "ratings.csv"), epochs=2,
                              model_dir=str(tmp_path / "run"), index="brute_force", verbose=0),
                 log=lambda *_: None)
    pop = result.baselines["popularity"]
    # Popularity on the random 80/20 split (seed 42, every rating an interaction) is the
    # reference figure in ../shared/data/README.md: R@10 0.050, R@50 0.148, R@100 0.225.
    assert pop["num_pairs"] == 20167  # 20% of 100,836 ratings
    assert pop["recall@100"] == pytest.approx(0.225, abs=0.005)
    assert pop["recall@10"] == pytest.approx(0.050, abs=0.005)
    print("movielens R@100 model", result.metrics["recall@100"], "popularity", pop["recall@100"])
    assert result.metrics["recall@100"] > pop["recall@100"]
    # ItemCF (200 neighbours) and EASE reproduce the reference table: ItemCF 0.279 with all
    # neighbours (0.2747 with 200); EASE 0.363 with lambda picked on the test split, so
    # our lambda, picked on a validation slice of the training split, may land a bit lower.
    cf, ease = result.baselines["itemcf"], result.baselines["ease"]
    assert cf["recall@100"] == pytest.approx(0.2747, abs=0.002)
    assert 0.350 <= ease["recall@100"] <= 0.365 and 50 <= ease["l2"] <= 1000
    assert ease["recall@10"] == pytest.approx(0.094, abs=0.006)
