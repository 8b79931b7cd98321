"""A run's directories: usable paths, which run a model_dir holds, fingerprinted backups.

`tfrecall.recipe.run` checks its paths before reading any data (`writable_dir`),
refuses a model_dir that holds a different run (`different_settings` on its
recipe.json), and records beside each training stage's backup the settings and data
it was made with (`write_fingerprint`), so an interrupted run resumes only under the
same ones (`check_backup`).

Data files are fingerprinted by size and the SHA-256 of their first and last MiB:
content-based (a copy or a `touch` keeps it), cheap on a 1 GB log, and it changes
whenever rows are appended, removed or edited near either end.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable, Mapping, Optional, Sequence

FINGERPRINT_FILE = "fingerprint.json"
_EDGE_BYTES = 1 << 20


def writable_dir(path: str, argument: str) -> None:
    """Creates `path` if needed; raises ValueError naming `argument` where it cannot be used.

    Raises:
      ValueError: `path` is a file, cannot be created (e.g. under /proc, or no
        permission) or is not writable.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{argument} {path!r} is a file, not a directory; give a directory "
                         "(it is created if missing)")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{argument} {path!r} cannot be created ({e.strerror}); give a "
                         "writable directory") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{argument} {path!r} is not writable; give a writable directory")


def file_fingerprint(path: str) -> str:
    """Size + SHA-256 of the first and last MiB of a file; a directory: of its files."""
    digest = hashlib.sha256()
    if os.path.isdir(path):
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if os.path.isfile(full):
                digest.update(f"{name}:{file_fingerprint(full)};".encode())
        return digest.hexdigest()[:16]
    size = os.path.getsize(path)
    digest.update(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(_EDGE_BYTES))
        if size > _EDGE_BYTES:
            f.seek(max(_EDGE_BYTES, size - _EDGE_BYTES))
            digest.update(f.read())
    return digest.hexdigest()[:16]


def data_fingerprint(paths: Mapping[str, Optional[str]]) -> dict:
    """``{argument: fingerprint}`` of the given data files (None and missing paths skipped)."""
    return {name: file_fingerprint(path) for name, path in paths.items()
            if path is not None and os.path.exists(path)}


def different_settings(old: Mapping[str, Any], new: Mapping[str, Any],
                       defaults: Mapping[str, Any], ignore: Iterable[str] = ()) -> list:
    """``["name: old -> new", ...]`` for the settings that differ.

    A setting absent from `old` (written by an older version) counts as its default.
    """
    ignore = set(ignore)
    out = []
    for name in sorted((set(old) | set(new)) - ignore):
        was = old.get(name, defaults.get(name))
        now = new.get(name, defaults.get(name))
        if was != now:
            out.append(f"{name}: {was!r} -> {now!r}")
    return out


def summarize(differences: Sequence[str], limit: int = 3) -> str:
    """At most `limit` differences on one line, then how many more."""
    more = len(differences) - limit
    return "; ".join(differences[:limit]) + (f"; and {more} more" if more > 0 else "")


def read_json(path: str) -> Optional[dict]:
    """The JSON object in `path`, or None where the file is absent or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def has_backup(backup_dir: str) -> bool:
    """Whether `backup_dir` holds a Keras backup (anything but the fingerprint)."""
    return os.path.isdir(backup_dir) and any(
        name != FINGERPRINT_FILE for name in os.listdir(backup_dir))


def check_backup(backup_dir: str, fingerprint: Mapping[str, Any], discard: str) -> bool:
    """Whether there is a backup to resume; raises if it was made under other settings.

    Args:
      backup_dir: a `keras.callbacks.BackupAndRestore` directory.
      fingerprint: this run's settings and data (`write_fingerprint`'s).
      discard: the directory to remove to discard the backup (named in the error).

    Raises:
      ValueError: the backup's fingerprint differs, naming what changed and how to
        discard it. A backup without a fingerprint (an older version's) is resumed.
    """
    if not has_backup(backup_dir):
        return False
    recorded = read_json(os.path.join(backup_dir, FINGERPRINT_FILE))
    if recorded is None:
        return True
    changed = different_settings(recorded.get("settings", {}), fingerprint["settings"], {})
    changed += [f"data file {name} changed" for name in sorted(
        set(recorded.get("data", {})) | set(fingerprint["data"]))
        if recorded.get("data", {}).get(name) != fingerprint["data"].get(name)]
    if changed:
        raise ValueError(
            f"the backup in {backup_dir} is from an interrupted run with other settings "
            f"({summarize(changed)}); re-run that command to resume it, or discard it "
            f"with: rm -r {discard}  (or pass overwrite=True)")
    return True


def write_fingerprint(backup_dir: str, fingerprint: Mapping[str, Any]) -> None:
    os.makedirs(backup_dir, exist_ok=True)
    with open(os.path.join(backup_dir, FINGERPRINT_FILE), "w") as f:
        json.dump(fingerprint, f, indent=1, sort_keys=True)


def clear_backup(backup_dir: str) -> None:
    """Removes the fingerprint and the emptied backup folders once training completed."""
    try:  # multi-worker: every worker clears the shared folder; the first one wins
        os.remove(os.path.join(backup_dir, FINGERPRINT_FILE))
    except FileNotFoundError:
        pass
    for folder in (backup_dir, os.path.dirname(backup_dir)):
        try:
            os.rmdir(folder)  # only when empty
        except OSError:
            break
