"""The pipelines' command lines (pipelines/_cli.py): one-line errors naming the flag, exit
status 2, Ctrl-C as one line with status 130, every default and allowed value in --help,
no CUDA probe noise on a machine without a GPU."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, assert_one_line_error, start_until

from pipelines import _cli


def run_module(module, args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=timeout)


def test_library_argument_names_are_written_as_flags():
    names = ["model_dir", "overwrite", "items", "export"]
    assert _cli.as_flags("model_dir 'x' holds a different run (items: a -> b); pass "
                         "overwrite=True to replace it", names) == (
        "--model_dir 'x' holds a different run (items: a -> b); pass --overwrite to "
        "replace it")
    assert _cli.as_flags("export=False skips it", names) == "--noexport skips it"
    # Only a leading argument name and name=True/False change; other words stay words.
    assert _cli.as_flags("200 items here", names) == "200 items here"
    assert _cli.as_flags("loss 'bpr' is wrong", names) == "loss 'bpr' is wrong"
    error = FileNotFoundError(2, "No such file or directory", "/x/y.csv")
    assert _cli.error_line(error, names) == "error: No such file or directory: /x/y.csv"
    assert _cli.error_line(ValueError("a\n  b"), names) == "error: a b"


@pytest.mark.parametrize("flag, value, message", [
    ("export_dir", "AFILE", "--export_dir 'AFILE' is a file, not a directory"),
    ("model_dir", "AFILE", "--model_dir 'AFILE' is a file, not a directory"),
    ("model_dir", "/proc/x", "--model_dir '/proc/x' cannot be created"),
    ("temperature", "0", "--temperature must be > 0, got 0.0"),
])
def test_train_path_and_value_errors_are_one_line_before_any_data(tmp_path, subprocess_env,
                                                                  flag, value, message):
    afile = tmp_path / "afile"
    afile.write_text("x")
    value, message = value.replace("AFILE", str(afile)), message.replace("AFILE", str(afile))
    args = [f"--{flag}={value}"] + ([] if flag == "model_dir" else [f"--model_dir={tmp_path}"])
    start = time.time()
    out = run_module("pipelines.train", args, subprocess_env)
    assert_one_line_error(out, message)
    assert "data:" not in out.stdout  # stopped before reading any data
    print(f"{flag}: {time.time() - start:.1f}s")


HELP_BLOCK = re.compile(r"^  --(?:\[no\])?(\w+):(.*?)(?=^  --|\Z)", re.S | re.M)


@pytest.mark.parametrize("module", ["pipelines.train", "pipelines.evaluate",
                                    "pipelines.export"])
def test_help_shows_every_default_and_the_allowed_values(module, subprocess_env):
    out = run_module(module, ["--help"], subprocess_env)
    text = out.stdout + out.stderr
    own = text.split(f"{module.replace('.', '/')}.py:")[1].split("\nabsl.")[0]
    blocks = {name: " ".join(body.split()) for name, body in HELP_BLOCK.findall(own)}
    assert len(blocks) >= 8, own
    for name, body in blocks.items():
        if name in ("model_dir", "items", "export_dir") and module != "pipelines.train":
            continue  # required flags: no default to state
        assert "default" in body.lower(), (name, body)
    if module == "pipelines.train":
        assert "<default|longtail>" in blocks["synthetic_world"]
        assert "<0|1|2>" in blocks["verbose"] and "one line per epoch" in blocks["verbose"]
        assert "popularity, itemcf, ease" in blocks["baselines"]
        usage = text.split("\nflags:\n")[0]
        assert "[--users=users.csv] \\\n        [--items=items.csv]" in usage  # not joined
    if module == "pipelines.evaluate":
        assert "popularity, itemcf, ease" in blocks["baselines"]


@pytest.mark.skipif(_cli.has_nvidia_device(), reason="a GPU machine prints no cuInit failure")
def test_no_cuda_probe_line_without_a_gpu(subprocess_env):
    out = run_module("pipelines.train", ["--temperature=-1"], subprocess_env)
    assert out.returncode == 2 and "cuInit" not in out.stderr, out.stderr


@pytest.mark.slow
def test_ctrl_c_then_other_flags_then_the_same_command(tmp_path, subprocess_env):
    """Ctrl-C: one line, status 130; other flags do not resume the backup; the same do."""
    model_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "pipelines.train", f"--model_dir={model_dir}", "--epochs=6",
           "--synthetic_users=400", "--synthetic_items=200", "--validation_fraction=0",
           "--noexport", "--baselines="]
    proc = start_until(cmd, subprocess_env, model_dir / "checkpoints" / "final" / "ckpt-002.index",
                       text=True)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    worker = (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []))
    assert proc.returncode == _cli.EXIT_INTERRUPTED, (worker, stderr[-3000:])
    assert "Traceback" not in stderr
    (line,) = [ln for ln in stderr.splitlines() if ln.strip()]
    assert line.startswith("interrupted: the same command resumes from the last finished "
                           f"epoch ({model_dir / 'backup'})")
    # Not a terminal: one line per epoch, not a progress bar of carriage returns.
    assert "Epoch 1/6" in stdout and "\r" not in stdout

    other = run_module("pipelines.train", cmd[3:] + ["--learning_rate=0.05"],
                       subprocess_env, timeout=600)
    assert_one_line_error(other, "learning_rate: 0.01 -> 0.05",
                   f"rm -r {model_dir / 'backup'}", "--overwrite")

    same = subprocess.run(cmd, cwd=REPO, env=subprocess_env, capture_output=True, text=True,
                          timeout=600)
    assert same.returncode == 0, same.stderr[-3000:]
    assert "resuming from the backup" in same.stdout
    assert not (model_dir / "backup").exists()  # the backup and its fingerprint are gone
    assert os.path.exists(model_dir / "checkpoints" / "final" / "ckpt-006.index")
