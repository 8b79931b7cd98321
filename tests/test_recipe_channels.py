"""`--channels`: the recipe chooses the quotas on the validation slice, reports each channel
and the merge at the same K, and exports the merge; bad values are refused before any
data is read."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, assert_one_line_error

from tfrecall.evaluation.harness import evaluate_export
from tfrecall.recipe import RecipeConfig, run
from tfrecall.recipe.channels import MERGED
from tfrecall.recipe.prepare import prepare
from tfrecall.serving.channel_tables import CHANNELS


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": ("two_tower", "mf")}, "channels must be one or more of"),
    ({"channels": ("popularity", "popularity")}, "must not repeat"),
    ({"channels": ("item2item",), "history_items": 0}, "need history_items > 0"),
    ({"channels": ("popularity",), "split": "item"}, "item split"),
])
def test_bad_channels_are_refused_by_the_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RecipeConfig.from_flat(**kwargs)


def test_the_flag_names_the_bad_channel(tmp_path, subprocess_env):
    out = subprocess.run([sys.executable, "-m", "pipelines.train", "--channels=two_tower,mf",
                          f"--model_dir={tmp_path}"], capture_output=True, text=True,
                         env=subprocess_env, cwd=REPO, timeout=300)
    assert_one_line_error(out, "channels must be one or more of", "'mf'")


@pytest.mark.slow  # one small run (about 20-30 s on 2 shared cores)
def test_run_reports_each_channel_and_exports_the_merge(tmp_path):
    config = RecipeConfig.from_flat(
        synthetic_users=300, synthetic_items=200, epochs=2, model_dir=str(tmp_path / "run"),
        index="brute_force", channels=CHANNELS, verbose=0, baselines=())
    result = run(config, log=lambda *_: None)
    ch = result.channels
    assert sorted(ch.order) == sorted(CHANNELS) and ch.k == 100
    assert sum(ch.shares) == pytest.approx(100 if ch.merge == "quotas" else 1.0)
    # Chosen on the validation slice over a grid holding "all K to one channel".
    assert ch.validation[MERGED] >= max(ch.validation[c] for c in CHANNELS)
    assert set(ch.metrics) == set(CHANNELS) | {MERGED}
    # The two-tower channel alone is the model's exact search.
    assert ch.metrics["two_tower"]["recall@100"] == pytest.approx(
        result.metrics["recall@100"], abs=1e-6)
    assert result.summary_json()["channels"]["merge"] == ch.merge
    # The export serves the merge: scored through the SavedModel, the same figures.
    prep = prepare(config)
    served = evaluate_export(result.export_path, prep.eval_set, prep.user_table, (10, 50, 100))
    for key in ("recall@10", "recall@100"):
        np.testing.assert_allclose(served[key], ch.metrics[MERGED][key], atol=1e-6)
    alone = evaluate_export(result.export_path, prep.eval_set, prep.user_table, (100,),
                            signature="channel_item2item")
    assert alone["recall@100"] == pytest.approx(ch.metrics["item2item"]["recall@100"])
