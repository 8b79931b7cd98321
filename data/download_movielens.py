"""Downloads and unzips a MovieLens data set from GroupLens, then checks its files.

Usage (needs internet; not run by the tests):

    python data/download_movielens.py ml-latest-small            # into data/
    python data/download_movielens.py ml-1m --dest /tmp/movielens
    python -m pipelines.train --interactions=data/ml-latest-small

The GroupLens licence applies (non-commercial research use, cite Harper & Konstan
2015; see data/README.md). Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import urllib.request
import zipfile
from pathlib import Path

BASE_URL = "https://files.grouplens.org/datasets/movielens"

DATASETS = {
    # name: (approximate zip size, files the unzipped folder must hold)
    "ml-latest-small": ("1 MB", ("README.txt", "links.csv", "movies.csv", "ratings.csv",
                                 "tags.csv")),
    "ml-25m": ("250 MB", ("README.txt", "genome-scores.csv", "genome-tags.csv", "links.csv",
                          "movies.csv", "ratings.csv", "tags.csv")),
    "ml-100k": ("5 MB", ("README", "u.data", "u.genre", "u.info", "u.item", "u.occupation",
                         "u.user")),
    "ml-1m": ("6 MB", ("README", "movies.dat", "ratings.dat", "users.dat")),
}


def _fetch(url: str, target: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        while block := response.read(1 << 20):
            out.write(block)
            done += len(block)
            if total:
                print(f"\r  {done / 1e6:7.1f} / {total / 1e6:.1f} MB", end="", file=sys.stderr)
    print(file=sys.stderr)


def _check_md5(url: str, archive: Path) -> None:
    """Compares with GroupLens' ``<zip>.md5`` where it publishes one (best effort)."""
    try:
        with urllib.request.urlopen(url + ".md5", timeout=60) as response:
            expected = response.read().decode("ascii", "replace").split()[0].lower()
    except (OSError, IndexError):  # URLError/HTTPError are OSErrors: no .md5 published
        print("  no .md5 published; relying on the zip's own CRC check", file=sys.stderr)
        return
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    if digest != expected:
        raise SystemExit(f"{archive}: MD5 {digest} does not match {expected} from {url}.md5")
    print("  MD5 ok", file=sys.stderr)


def download(name: str, dest: Path, base_url: str = BASE_URL, force: bool = False) -> Path:
    """Downloads ``<base_url>/<name>.zip`` into `dest`, unzips it, checks the file list.

    Returns:
      The unzipped folder, ``dest / name``.

    Raises:
      SystemExit: an unknown name, a corrupt archive, or a missing file.
    """
    if name not in DATASETS:
        raise SystemExit(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    size, expected = DATASETS[name]
    folder = dest / name
    if folder.is_dir() and not force:
        print(f"{folder} exists; checking it (use --force to download again)", file=sys.stderr)
    else:
        dest.mkdir(parents=True, exist_ok=True)
        archive = dest / f"{name}.zip"
        url = f"{base_url}/{name}.zip"
        print(f"downloading {url} (about {size})", file=sys.stderr)
        _fetch(url, archive)
        _check_md5(url, archive)
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise SystemExit(f"{archive}: corrupt member {bad}; delete it and retry")
            if folder.is_dir():
                shutil.rmtree(folder)
            zf.extractall(dest)
        archive.unlink()
    missing = [f for f in expected if not (folder / f).is_file()]
    if missing:
        raise SystemExit(f"{folder}: missing {missing}; delete the folder and download again")
    print(f"ok: {folder} ({', '.join(expected)})", file=sys.stderr)
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(DATASETS))
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parent,
                        help="folder to unzip into (default: this data/ folder)")
    parser.add_argument("--base_url", default=BASE_URL, help="a mirror of the GroupLens folder")
    parser.add_argument("--force", action="store_true", help="download even if present")
    args = parser.parse_args(argv)
    download(args.name, args.dest, args.base_url, args.force)


if __name__ == "__main__":
    main()
