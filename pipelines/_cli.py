"""What every pipeline's command line shares: quiet start-up, one-line errors, Ctrl-C.

TensorFlow's INFO lines are hidden by the package (`pipelines/__init__.py`).

`run(main)` replaces `absl.app.run(main)`:

- On a machine without an NVIDIA device, TensorFlow's first device probe prints
  "failed call to cuInit: ... UNKNOWN ERROR (303)" at ERROR level, which
  `TF_CPP_MIN_LOG_LEVEL` could only hide together with every real error. The probe
  is run once, up front, with stderr captured; that one line is dropped and anything
  else it printed is passed on.
- A user's mistake (bad data, a bad flag value, a path that cannot be used) prints
  ``error: ...`` on one line, with the library's argument names written as flags
  (``model_dir ...`` -> ``--model_dir ...``, ``overwrite=True`` -> ``--overwrite``),
  and exits with status 2; a bug still prints its traceback.
- Ctrl-C prints one line (with `interrupt_hint`) and exits with status 130.
"""

from __future__ import annotations

import glob
import os
import re
import sys
import tempfile
from typing import Callable, Sequence

from absl import app, flags

from tfrecall._backend import tf

USER_ERRORS = (ValueError, OSError, FloatingPointError)  # DataError is a ValueError
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
_CUINIT = "failed call to cuInit"


def has_nvidia_device() -> bool:
    """Whether the machine exposes an NVIDIA device node (a GPU TensorFlow could use)."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def probe_devices() -> None:
    """Initialises TensorFlow's devices now, dropping the cuInit line where no GPU exists.

    The line is written by C++ straight to file descriptor 2, so Python's `sys.stderr`
    cannot filter it; descriptor 2 is pointed at a temporary file for the probe.
    """
    if has_nvidia_device():  # a GPU machine: a cuInit failure there is a real error
        tf.config.list_physical_devices()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        kept = [line for line in captured.read().decode(errors="replace").splitlines(True)
                if _CUINIT not in line]
    sys.stderr.write("".join(kept))


def as_flags(message: str, names: Sequence[str]) -> str:
    """A library message with its argument names written as this program's flags."""
    names = set(names)
    message = re.sub(r"\b(\w+)=True\b",
                     lambda m: f"--{m[1]}" if m[1] in names else m[0], message)
    message = re.sub(r"\b(\w+)=False\b",
                     lambda m: f"--no{m[1]}" if m[1] in names else m[0], message)
    first = re.match(r"(\w+)(?=[ :=])", message)
    if first and first[1] in names:
        message = "--" + message
    return message


def error_line(e: BaseException, names: Sequence[str]) -> str:
    """``error: <one line>`` for a user error (OSError: its reason and file)."""
    if isinstance(e, OSError) and e.strerror:
        text = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    else:
        text = str(e)
    return "error: " + " ".join(as_flags(text, names).split())


def run(main: Callable[[list], int], interrupt_hint: Callable[[], str] = lambda: "") -> None:
    """`absl.app.run(main)` with the behaviour in the module docstring.

    Args:
      main: the pipeline's main(argv) -> exit status.
      interrupt_hint: called after Ctrl-C for what to do next (e.g. how to resume).
    """

    def guarded(argv):
        names = [f.name for f in flags.FLAGS.get_key_flags_for_module(sys.argv[0])]
        try:
            return main(argv)
        except USER_ERRORS as e:
            print(error_line(e, names), file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            hint = interrupt_hint()
            print(f"\ninterrupted{': ' + hint if hint else ''}", file=sys.stderr)
            return EXIT_INTERRUPTED

    # Before app.run: TensorFlow registers an absl init callback that probes the devices.
    probe_devices()
    app.run(guarded)
