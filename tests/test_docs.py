"""The python blocks of docs/*.md run as written, page by page in a fresh process, after a
prelude that supplies what the page says it takes (a log, feature tables, a model):
streaming, negatives (its mining loop and TFRecord samples included), serving, losses.
docs/from_tfrs.md has its own test (tests/test_docs_from_tfrs.py)."""

import re
import subprocess
import sys

import pytest
from conftest import REPO

# What each page's examples assume exists. Small sizes: the pages' own batch sizes and
# epochs are kept, so the code runs exactly as printed.
MODEL = """
import dataclasses
import numpy as np
import tfrecall
from tfrecall import recipe
from tfrecall._backend import tf
config0 = recipe.RecipeConfig.from_flat(synthetic_users=300, synthetic_items=1200,
                                        history_items=0)
data = recipe.synthetic_world(config0).data
train, _ = recipe.split_data(data, config0)
catalogue, user_ids = data.item_catalogue(), data.user_ids()
users, items = data.users, data.items
user_table = recipe.user_feature_table(data, train, user_ids, config0)
item_table = recipe.entity_table(data.items, catalogue, "item_id")
model = recipe.compiled_model(config0, data, train, catalogue, user_table)
"""
PRELUDES = {
    "negatives.md": MODEL + """
from tfrecall.sampling.frequency import StreamingFrequencyEstimator
epochs = 4
batch_item_ids = tf.constant(catalogue[:64].astype(str))
candidate_ids = tf.constant(catalogue[:8].astype(str))
""",
    "serving.md": MODEL,
    "text.md": "",
    "channels.md": "",
    "losses.md": """
import numpy as np
import tfrecall
from tfrecall._backend import tf
B = 4
rng = np.random.default_rng(0)
q, c = tf.constant(rng.normal(size=(B, 8)), tf.float32), tf.constant(rng.normal(size=(B, 8)),
                                                                     tf.float32)
p = tf.constant([0.1, 0.2, 0.3, 0.4])
ids = tf.constant(["a", "b", "a", "c"])
""",
    "streaming.md": """
import tfrecall
for name in ("log.csv", "log-0.csv", "log-1.csv"):
    with open(name, "w") as f:
        f.write("user_id,item_id\\n" + "".join(f"u{i % 7},i{i % 11}\\n" for i in range(50)))
""",
}
# Places a page names that a test machine does not have.
REPLACE = {"gs://bucket/run1/samples": "samples-dir"}


def page_code(name):
    text = (REPO / "docs" / name).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, f"docs/{name} has no python block"
    code = "\n".join(blocks)
    for old, new in REPLACE.items():
        code = code.replace(old, new)
    return code


@pytest.mark.parametrize("name", [pytest.param("negatives.md", marks=pytest.mark.slow),
                                  "serving.md", "losses.md", "streaming.md", "text.md",
                                  "channels.md"])
def test_docs_page_runs_as_written(name, tmp_path, subprocess_env):
    code = PRELUDES[name] + "\n" + page_code(name) + "\nprint('PAGE DONE')\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env, cwd=tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.strip().endswith("PAGE DONE")


def test_every_page_with_code_is_run():
    pages = {p.name for p in (REPO / "docs").glob("*.md") if "```python" in p.read_text()}
    assert pages == set(PRELUDES) | {"from_tfrs.md"}
