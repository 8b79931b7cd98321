"""TF Serving's versioned layout: atomic version writes and retention of the newest N.

TF Serving polls `base_path` and loads every numeric sub-directory it is told to
serve (by default the largest number). A version is therefore written under a hidden
temporary name beside the final one and renamed into place, a single atomic step on
one file system, so the server never loads a half-written SavedModel. An old version
is renamed to a hidden name before it is deleted, for the same reason.

Temporaries are named `.tmp-<random>-<pid>@<host>`: a process killed mid-write (no
`finally` runs on SIGKILL) leaves one behind, and the next export on the same host
removes those whose process is gone. Non-numeric names are ignored by TF Serving.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import uuid
from typing import Callable, List, Optional

_TMP = re.compile(r"^\.(?:tmp|old)-[0-9a-f]+-(\d+)@(.+)$")


def list_versions(export_dir: str) -> List[int]:
    """The numeric version directories of `export_dir`, ascending ([] if absent)."""
    if not os.path.isdir(export_dir):
        return []
    return sorted(
        int(d) for d in os.listdir(export_dir)
        if d.isdigit() and os.path.isdir(os.path.join(export_dir, d))
    )


def next_version(export_dir: str) -> int:
    """One more than the largest numeric version directory (1 for an empty directory)."""
    return max(list_versions(export_dir) + [0]) + 1


def _hidden_name(prefix: str) -> str:
    return f".{prefix}-{uuid.uuid4().hex[:8]}-{os.getpid()}@{socket.gethostname()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(export_dir: str) -> List[str]:
    """Deletes temporaries left by dead export processes of this host; returns their paths."""
    removed = []
    if not os.path.isdir(export_dir):
        return removed
    host = socket.gethostname()
    for name in os.listdir(export_dir):
        m = _TMP.match(name)
        if m and m.group(2) == host and not _pid_alive(int(m.group(1))):
            path = os.path.join(export_dir, name)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def write_version(
    export_dir: str, write: Callable[[str], None], version: Optional[int] = None
) -> str:
    """Runs `write(tmp_dir)` and renames `tmp_dir` to `export_dir/<version>` atomically.

    Args:
      export_dir: the model base path (created if absent).
      write: fills the directory it is given (a SavedModel and its extras).
      version: the version number; None picks the next free one, and retries with the
        next if a concurrent export takes it first.

    Returns:
      The final version directory.

    Raises:
      ValueError: `version` already exists or is not a positive integer.
      Whatever `write` raises; the temporary directory is removed first.
    """
    if version is not None and (int(version) != version or version < 1):
        raise ValueError(f"version must be a positive integer, got {version!r}")
    os.makedirs(export_dir, exist_ok=True)
    remove_stale_temporaries(export_dir)
    hidden = os.path.join(export_dir, _hidden_name("tmp"))
    os.mkdir(hidden)
    try:
        write(hidden)
        for _ in range(5):
            v = next_version(export_dir) if version is None else int(version)
            final = os.path.join(export_dir, str(v))
            if os.path.exists(final):
                if version is not None:
                    raise ValueError(f"export version already exists: {final}")
                continue
            try:
                os.rename(hidden, final)  # atomic on one file system
                return final
            except OSError:
                # A concurrent export created `final` between the check and the rename
                # (rename onto a non-empty directory fails): take the next number.
                if version is not None or not os.path.exists(final):
                    raise
        raise RuntimeError(f"could not claim a version number in {export_dir}")
    except BaseException:
        shutil.rmtree(hidden, ignore_errors=True)
        raise


def prune_versions(
    export_dir: str, keep: Optional[int], protect: Optional[str] = None
) -> List[str]:
    """Deletes all but the newest `keep` versions, never `protect`; returns the deleted paths.

    Args:
      export_dir: the model base path.
      keep: versions to keep (>= 1), None to keep all.
      protect: a version directory never deleted (the one just written, even when an
        explicit older version number put it outside the newest `keep`).
    """
    if keep is None:
        return []
    if int(keep) != keep or keep < 1:
        raise ValueError(f"keep_versions must be an integer >= 1 or None, got {keep!r}")
    protect_name = os.path.basename(os.path.normpath(protect)) if protect else None
    versions = list_versions(export_dir)
    doomed = [v for v in versions[: max(0, len(versions) - int(keep))] if str(v) != protect_name]
    removed = []
    for v in doomed:
        path = os.path.join(export_dir, str(v))
        # Hide first, so TF Serving sees the version vanish at once, not file by file.
        hidden = os.path.join(export_dir, _hidden_name("old"))
        os.rename(path, hidden)
        shutil.rmtree(hidden, ignore_errors=True)
        removed.append(path)
    return removed


__all__ = [
    "list_versions",
    "next_version",
    "prune_versions",
    "remove_stale_temporaries",
    "write_version",
]
