"""MovieLens readers (GroupLens): ml-latest-small / ml-25m, ml-100k, ml-1m -> `RecallData`.

Three file layouts are recognised (`detect_layout`), from a directory or its ratings
file:

- ``latest`` (ml-latest-small, ml-latest, ml-20m, ml-25m, ml-32m): UTF-8 CSVs with a
  header, ``ratings.csv`` (``userId,movieId,rating,timestamp``) and ``movies.csv``
  (``movieId,title,genres``, quoted titles may hold commas). No user features.
- ``100k`` (ml-100k): latin-1, no header; ``u.data`` tab-separated ratings,
  ``u.user`` ``id|age|gender|occupation|zip``, ``u.item`` ``|``-separated with 19
  genre flags.
- ``1m`` (ml-1m): latin-1, no header, ``::``-separated ``ratings.dat``, ``users.dat``
  (``id::gender::age::occupation::zip``, occupation a numeric code), ``movies.dat``.

What the tables hold:

- interactions: ``user_id``, ``item_id`` (str), ``label`` = the rating (float32),
  ``positive`` = ``rating >= min_rating``, ``timestamp`` (int64 seconds). With the
  default ``min_rating=0`` every rating counts as a positive: a rating means the user
  chose to watch the film, which is what a recall model should retrieve, and a
  threshold (e.g. 4) is a flag away. Rows below the threshold keep their rating as
  the label but are not positives.
- items: ``item_id``, ``genres`` (categories joined by ``|``; "(no genres listed)" and
  ml-100k's "unknown" flag become ""), ``year`` (float32 from the title's trailing
  "(1995)" or "(2006-2007)", for ml-100k else from the release date; NaN if none).
  Every movie of the catalogue file is kept, rated or not. The title is not a model
  feature (free text, unique per item); `movie_titles` returns it for display.
- users (ml-100k, ml-1m only): ``user_id``, ``age`` (float32; ml-1m stores an age
  bracket code: 1, 18, 25, 35, 45, 50, 56), ``gender``, ``occupation`` (str; ml-1m's
  codes are mapped to the names in its README). Zip codes are left out.

Licence: the GroupLens data sets are for non-commercial research use with
attribution (see ``data/README.md``); nothing here downloads them.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from tfrecall.io import chunks
from tfrecall.io.errors import DataError, PathLike
from tfrecall.io.schema import RecallData, Table

LATEST_RATINGS_HEADER = ("userId", "movieId", "rating", "timestamp")

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
"""The 19 genre flags of ``u.item``, in file order (as listed in ``u.genre``)."""

ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
"""ml-1m ``users.dat`` occupation codes 0..20 (from the ml-1m README)."""

NO_GENRES = "(no genres listed)"

# "(1995)" or a series' "(2006–2007)" / "(2006- )" at the end of the title.
_YEAR = re.compile(r"\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?\s*)?\)$")


class Layout(NamedTuple):
    """A recognised MovieLens download: its kind, directory and ratings file."""

    kind: str  # "latest" | "100k" | "1m"
    directory: Path
    ratings: Path


def _has_latest_header(path: Path) -> bool:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return tuple(name.strip() for name in first.strip().split(",")) == LATEST_RATINGS_HEADER


def detect_layout(path: PathLike) -> Optional[Layout]:
    """The MovieLens layout at `path` (a directory or a ratings file), or None."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "ratings.csv", path / "u.data", path / "ratings.dat"]
        path = next((c for c in candidates if c.is_file()), path)
    if not path.is_file():
        return None
    if path.name == "u.data":
        return Layout("100k", path.parent, path)
    if path.name == "ratings.dat":
        return Layout("1m", path.parent, path)
    if path.suffix == ".csv" and _has_latest_header(path):
        return Layout("latest", path.parent, path)
    return None


def read_movielens(path: PathLike, min_rating: float = 0.0, text: bool = False) -> RecallData:
    """Reads a MovieLens data set (see the module docstring for layouts and columns).

    Args:
      path: the unzipped directory (e.g. ``ml-latest-small/``) or its ratings file.
      min_rating: ratings >= this are positives; 0 makes every rating a positive.
      text: add the item text columns ``title`` (the movie's title) and ``tags`` (its
        users' free-text tags from ``tags.csv``, joined by ", "; "" without any), for
        the `text` feature kind and the cold-start protocol.

    Returns:
      `RecallData` named after the directory, with ``users`` for ml-100k/ml-1m and
      ``items`` when the movie file is present.

    Raises:
      DataError: `path` is not a MovieLens layout, or a file in it is malformed
        (names the file, line and column).
      ValueError: `min_rating` is not a finite number.

    Example:
      >>> data = read_movielens("/data/ml-latest-small", min_rating=4.0)
      >>> data.num_interactions
      100836
    """
    min_rating = float(min_rating)
    if not math.isfinite(min_rating):
        raise ValueError(f"min_rating must be a finite number, got {min_rating}")
    layout = detect_layout(path)
    if layout is None:
        raise DataError(
            "not a MovieLens download: expected a directory or file with ratings.csv "
            f"(header {','.join(LATEST_RATINGS_HEADER)}), u.data or ratings.dat",
            path=path,
        )
    interactions = _read_ratings(layout, min_rating)
    items = _read_movies(layout)
    users = _read_users(layout)
    table = None if items is None else items[0]
    if text and table is not None:
        table = {**table, "title": items[1], "tags": _read_tags(layout, table["item_id"])}
    return RecallData(interactions, users=users, items=table, name=layout.directory.name)


def _read_tags(layout: Layout, item_ids: np.ndarray) -> np.ndarray:
    """Per item of `item_ids`, its tags.csv tags (distinct, in file order) joined by ", "."""
    path = layout.directory / "tags.csv"
    tags: Dict[str, List[str]] = {}
    if path.is_file():
        for chunk in chunks.read_chunks(path):
            chunks.require_columns(chunk, ("movieId", "tag"))
            for item, tag in zip(chunks.to_ids(chunk, "movieId").tolist(),
                                 chunks.to_strings(chunk, "tag").tolist(), strict=True):
                seen = tags.setdefault(item, [])
                if tag.strip() and tag.strip() not in seen:
                    seen.append(tag.strip())
    return chunks.object_array([", ".join(tags.get(i, [])) for i in item_ids.tolist()])


def movie_titles(path: PathLike) -> Dict[str, str]:
    """item_id -> title of a MovieLens download (for printing recommendations)."""
    layout = detect_layout(path)
    movies = None if layout is None else _read_movies(layout)
    if movies is None:
        raise DataError("no MovieLens movie file (movies.csv, u.item, movies.dat)", path=path)
    table, titles = movies
    return dict(zip(table["item_id"].tolist(), titles.tolist(), strict=True))


# --------------------------------------------------------------------------------------


def _classic_chunks(path: Path, names, delimiter: str, chunk_rows=None):
    """A headerless latin-1 file; quotes are ordinary characters in these files."""
    return chunks.read_chunks(
        path, delimiter=delimiter, encoding="latin-1", names=names,
        quoting=csv.QUOTE_NONE, chunk_rows=chunk_rows,
    )


def _read_ratings(layout: Layout, min_rating: float) -> Table:
    if layout.kind == "latest":
        source = chunks.read_chunks(layout.ratings, numbers=RATING_NUMBERS,
                                    int_ids=("userId", "movieId"))
    else:
        delimiter = "\t" if layout.kind == "100k" else "::"
        source = _classic_chunks(
            layout.ratings, LATEST_RATINGS_HEADER, delimiter, chunks.CHUNK_ROWS
        )
    ids: dict = {}
    columns = chunks.ColumnBuffer()
    for chunk in source:
        chunks.require_columns(chunk, LATEST_RATINGS_HEADER)
        columns.append(chunks.convert_chunk(
            chunk, lambda c, cache: _convert_ratings(c, cache, min_rating), ids))
    return columns.arrays()


# ratings.csv columns numpy's parser may read as numbers (`chunks.read_chunks`).
RATING_NUMBERS = {"rating": np.float64, "timestamp": np.int64}


def _convert_ratings(chunk: chunks.Chunk, ids: Optional[dict], min_rating: float) -> Table:
    ids = {} if ids is None else ids
    rating = chunks.to_floats(chunk, "rating")
    chunks.check_labels(chunk, "rating", rating)
    return {
        "user_id": chunks.to_ids(chunk, "userId", ids),
        "item_id": chunks.to_ids(chunk, "movieId", ids),
        "label": rating.astype(np.float32),
        "positive": rating >= min_rating,
        "timestamp": chunks.to_timestamps(chunk, "timestamp"),
    }


def year_from_title(title: str) -> float:
    """The year in a title's trailing "(YYYY)" (or "(YYYY-YYYY)"), else NaN."""
    match = _YEAR.search(title.strip())
    return float(match.group(1)) if match else math.nan


def _read_movies(layout: Layout) -> Optional[Tuple[Table, np.ndarray]]:
    """(items table, titles) or None when the movie file is absent."""
    if layout.kind == "latest":
        path = layout.directory / "movies.csv"
        if not path.is_file():
            return None
        chunk = next(chunks.read_chunks(path, chunk_rows=None))
        chunks.require_columns(chunk, ("movieId", "title", "genres"))
        genres = [
            "" if g == NO_GENRES else g for g in chunks.to_strings(chunk, "genres").tolist()
        ]
        release = None
    elif layout.kind == "100k":
        path = layout.directory / "u.item"
        if not path.is_file():
            return None
        names = ("movieId", "title", "release_date", "video_release_date", "imdb_url")
        chunk = next(_classic_chunks(path, names + ML100K_GENRES, "|"))
        flags = np.stack([np.asarray(chunk.columns[g]) == "1" for g in ML100K_GENRES], axis=1)
        genres = [
            "|".join(g for g, on in zip(ML100K_GENRES, row, strict=True) if on and g != "unknown")
            for row in flags.tolist()
        ]
        release = chunks.to_strings(chunk, "release_date").tolist()
    else:
        path = layout.directory / "movies.dat"
        if not path.is_file():
            return None
        chunk = next(_classic_chunks(path, ("movieId", "title", "genres"), "::"))
        genres = chunks.to_strings(chunk, "genres").tolist()
        release = None
    item_ids = chunks.to_ids(chunk, "movieId")
    chunks.check_unique(chunk, "movieId", item_ids)
    titles = chunks.to_strings(chunk, "title")
    years = [year_from_title(t) for t in titles.tolist()]
    if release is not None:
        # ml-100k: some titles lack the year; the release date ("01-Jan-1995") has it.
        years = [
            float(r[-4:]) if math.isnan(y) and re.fullmatch(r".*\d{4}", r) else y
            for y, r in zip(years, release, strict=True)
        ]
    items = {
        "item_id": item_ids,
        "genres": chunks.object_array(genres),
        "year": np.asarray(years, dtype=np.float32),
    }
    return items, titles


def _read_users(layout: Layout) -> Optional[Table]:
    if layout.kind == "latest":
        return None
    if layout.kind == "100k":
        path = layout.directory / "u.user"
        names = ("userId", "age", "gender", "occupation", "zip")
        delimiter = "|"
    else:
        path = layout.directory / "users.dat"
        names = ("userId", "gender", "age", "occupation", "zip")
        delimiter = "::"
    if not path.is_file():
        return None
    chunk = next(_classic_chunks(path, names, delimiter))
    user_ids = chunks.to_ids(chunk, "userId")
    chunks.check_unique(chunk, "userId", user_ids)
    occupation = chunks.to_strings(chunk, "occupation")
    if layout.kind == "1m":
        occupation = chunks.object_array([_occupation_name(code) for code in occupation])
    return {
        "user_id": user_ids,
        "age": chunks.to_floats(chunk, "age", missing_ok=True).astype(np.float32),
        "gender": chunks.to_strings(chunk, "gender"),
        "occupation": occupation,
    }


def _occupation_name(code: str) -> str:
    """ml-1m occupation code -> name; an unknown code is kept as written."""
    if code.isdigit() and int(code) < len(ML1M_OCCUPATIONS):
        return ML1M_OCCUPATIONS[int(code)]
    return code
