"""Tests for tfrecall.io.movielens: the three layouts on tiny files, and real ml-latest-small."""

import csv
from pathlib import Path

import numpy as np
import pytest

from tfrecall.io import movielens, readers
from tfrecall.io.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ML_LATEST_SMALL = SHARED_DATA / "ml-latest-small"


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def latest_dir(tmp_path):
    root = tmp_path / "ml-tiny"
    write(root / "ratings.csv", (
        "userId,movieId,rating,timestamp\n"
        "1,10,4.0,100\n"
        "1,20,2.5,200\n"
        "2,10,5.0,300\n"
    ))
    write(root / "movies.csv", (
        "movieId,title,genres\n"
        '10,"Heat, The (1995)",Action|Crime\n'
        "20,Babylon 5,(no genres listed)\n"
        "30,Some Series (2006\u20132007),Drama\n"   # never rated: still in the catalogue
    ))
    return root


def flags(*on):
    return "|".join("1" if g in on else "0" for g in movielens.ML100K_GENRES)


@pytest.fixture
def ml100k_dir(tmp_path):
    root = tmp_path / "ml-100k"
    write(root / "u.data", "1\t10\t4\t881250949\n2\t20\t1\t881250950\n2\t10\t3\t5\n")
    write(root / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n", "latin-1")
    action_children = flags("Action", "Children's")
    write(root / "u.item", (
        f'10|Caf\xe9 "Noir" (1995)|01-Jan-1995||http://x|{action_children}\n'
        f"20|Untitled|01-Jan-1994||http://y|{flags('unknown')}\n"
        f"30|unknown||||{flags('unknown')}\n"
    ), "latin-1")
    return root


@pytest.fixture
def ml1m_dir(tmp_path):
    root = tmp_path / "ml-1m"
    write(root / "ratings.dat", "1::10::5::978300760\n2::20::3::978302109\n")
    write(root / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n", "latin-1")
    write(root / "movies.dat", (
        "10::Am\xe9lie (Fabuleux destin d'Am\xe9lie Poulain, Le) (2001)::Comedy|Romance\n"
        "20::Toy Story (1995)::Animation|Children's|Comedy\n"
    ), "latin-1")
    return root


# ------------------------------------------------------------------ layouts


def test_latest_layout(latest_dir):
    data = movielens.read_movielens(latest_dir, min_rating=3.0)
    assert data.name == "ml-tiny"
    inter = data.interactions
    np.testing.assert_array_equal(inter["user_id"], ["1", "1", "2"])
    np.testing.assert_array_equal(inter["item_id"], ["10", "20", "10"])
    np.testing.assert_array_equal(inter["label"], [4.0, 2.5, 5.0])
    np.testing.assert_array_equal(inter["positive"], [True, False, True])  # 2.5 < 3
    np.testing.assert_array_equal(inter["timestamp"], [100, 200, 300])
    assert data.users is None
    assert set(data.items) == {"item_id", "genres", "year"}  # no title feature
    np.testing.assert_array_equal(data.items["item_id"], ["10", "20", "30"])
    np.testing.assert_array_equal(data.items["genres"], ["Action|Crime", "", "Drama"])
    np.testing.assert_array_equal(data.items["year"], [1995.0, np.nan, 2006.0])
    assert data.items["year"].dtype == np.float32


def test_min_rating_zero_makes_every_rating_a_positive(latest_dir):
    data = movielens.read_movielens(latest_dir / "ratings.csv")
    np.testing.assert_array_equal(data.interactions["positive"], [True, True, True])


def test_ml100k_layout(ml100k_dir):
    data = movielens.read_movielens(ml100k_dir / "u.data", min_rating=3)
    np.testing.assert_array_equal(data.interactions["item_id"], ["10", "20", "10"])
    np.testing.assert_array_equal(data.interactions["label"], [4.0, 1.0, 3.0])
    np.testing.assert_array_equal(data.interactions["positive"], [True, False, True])
    np.testing.assert_array_equal(data.interactions["timestamp"], [881250949, 881250950, 5])
    np.testing.assert_array_equal(data.users["user_id"], ["1", "2"])
    np.testing.assert_array_equal(data.users["age"], [24.0, 53.0])
    np.testing.assert_array_equal(data.users["gender"], ["M", "F"])
    np.testing.assert_array_equal(data.users["occupation"], ["technician", "other"])
    assert "zip" not in data.users
    # "unknown" is not a genre; a title without a year falls back to the release date.
    np.testing.assert_array_equal(data.items["genres"], ["Action|Children's", "", ""])
    np.testing.assert_array_equal(data.items["year"], [1995.0, 1994.0, np.nan])
    titles = movielens.movie_titles(ml100k_dir)
    assert titles["10"] == 'Caf\xe9 "Noir" (1995)'


def test_ml1m_layout(ml1m_dir):
    data = movielens.read_movielens(ml1m_dir)
    assert data.name == "ml-1m"
    np.testing.assert_array_equal(data.interactions["user_id"], ["1", "2"])
    np.testing.assert_array_equal(data.interactions["label"], [5.0, 3.0])
    np.testing.assert_array_equal(data.interactions["timestamp"], [978300760, 978302109])
    np.testing.assert_array_equal(data.users["age"], [1.0, 56.0])
    np.testing.assert_array_equal(data.users["gender"], ["F", "M"])
    # Codes 10 and 16 of the ml-1m README.
    np.testing.assert_array_equal(data.users["occupation"], ["K-12 student", "self-employed"])
    np.testing.assert_array_equal(data.items["genres"],
                                  ["Comedy|Romance", "Animation|Children's|Comedy"])
    np.testing.assert_array_equal(data.items["year"], [2001.0, 1995.0])
    assert movielens.movie_titles(ml1m_dir)["10"].startswith("Am\xe9lie (Fabuleux")


def test_detect_layout(latest_dir, ml100k_dir, ml1m_dir, tmp_path):
    assert movielens.detect_layout(latest_dir).kind == "latest"
    assert movielens.detect_layout(latest_dir / "ratings.csv").kind == "latest"
    assert movielens.detect_layout(ml100k_dir).kind == "100k"
    assert movielens.detect_layout(ml1m_dir / "ratings.dat").kind == "1m"
    other = write(tmp_path / "events.csv", "user_id,item_id\nu,i\n")
    assert movielens.detect_layout(other) is None
    assert movielens.detect_layout(tmp_path / "missing") is None


def test_load_data_dispatches_and_applies_string_kinds(ml1m_dir):
    config = {"users": {"age": {"kind": "categorical"}}}
    data = readers.load_data(ml1m_dir, feature_config=config, movielens_min_rating=4)
    np.testing.assert_array_equal(data.users["age"], ["1", "56"])
    np.testing.assert_array_equal(data.interactions["positive"], [True, False])


def test_ratings_without_movies_file(tmp_path):
    ratings = write(tmp_path / "r" / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n")
    data = movielens.read_movielens(ratings)
    assert data.items is None and data.users is None


# ------------------------------------------------------------------ errors


def test_short_row_in_u_data(ml100k_dir):
    write(ml100k_dir / "u.data", "1\t10\t4\t5\n2\t20\t1\n")
    with pytest.raises(DataError, match=r"u\.data, line 2: expected 4 fields"):
        movielens.read_movielens(ml100k_dir)


def test_bad_rating_names_line_and_column(latest_dir):
    write(latest_dir / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4,1\n1,20,five,2\n")
    with pytest.raises(DataError, match=r"ratings\.csv, line 3, column 'rating'.*'five'"):
        movielens.read_movielens(latest_dir)


def test_duplicate_movie_id(ml1m_dir):
    write(ml1m_dir / "movies.dat", "10::A (2001)::Comedy\n10::B (2002)::Drama\n")
    with pytest.raises(DataError, match=r"movies\.dat, line 2, column 'movieId'.*duplicate"):
        movielens.read_movielens(ml1m_dir)


def test_not_movielens(tmp_path):
    with pytest.raises(DataError, match="not a MovieLens download"):
        movielens.read_movielens(tmp_path)
    with pytest.raises(ValueError, match="min_rating"):
        movielens.read_movielens(tmp_path, min_rating=float("nan"))


@pytest.mark.parametrize(
    "title, year",
    [
        ("Toy Story (1995)", 1995.0),
        ("From Dusk Till Dawn 2: Texas Blood Money (1999) ", 1999.0),
        ("Death Note: Desu n\xf4to (2006\u20132007)", 2006.0),
        ("Babylon 5", np.nan),
        ("1984 (1956) extra", np.nan),
    ],
)
def test_year_from_title(title, year):
    np.testing.assert_array_equal(movielens.year_from_title(title), year)


# ------------------------------------------------------------------ real ml-latest-small


@pytest.mark.skipif(
    not (ML_LATEST_SMALL / "ratings.csv").is_file(),
    reason=f"MovieLens ml-latest-small not found at {ML_LATEST_SMALL} "
    "(see data/README.md to download it)",
)
def test_real_ml_latest_small():
    data = readers.load_data(ML_LATEST_SMALL, movielens_min_rating=4.0)
    inter = data.interactions
    # Figures from the data set's README: 100836 ratings, 610 users, 9742 movies.
    assert data.num_interactions == 100836
    assert len(set(inter["user_id"].tolist())) == 610
    assert len(data.items["item_id"]) == 9742
    assert (data.items["genres"] == "").sum() == 34  # "(no genres listed)"
    # 13 titles lack "(YYYY)"; one of them ends in "(2006-2007)", so 12 stay NaN.
    assert np.isnan(data.items["year"]).sum() == 12
    assert set(inter["item_id"].tolist()) <= set(data.items["item_id"].tolist())
    # Independent reference: count ratings >= 4 with the csv module.
    with open(ML_LATEST_SMALL / "ratings.csv", newline="") as f:
        expected = sum(float(row["rating"]) >= 4.0 for row in csv.DictReader(f))
    assert int(inter["positive"].sum()) == expected
    assert inter["label"].min() == 0.5 and inter["label"].max() == 5.0


def test_text_columns_title_and_distinct_tags(latest_dir):
    write(latest_dir / "tags.csv", (
        "userId,movieId,tag,timestamp\n"
        "1,10,heist,1\n2,10,Al Pacino,2\n3,10,heist,3\n1,30, ,4\n"
    ))
    data = movielens.read_movielens(latest_dir, text=True)
    columns = [data.items[c].tolist() for c in ("title", "tags")]
    items = dict(zip(data.items["item_id"].tolist(), zip(*columns, strict=True), strict=True))
    assert items == {"10": ("Heat, The (1995)", "heist, Al Pacino"), "20": ("Babylon 5", ""),
                     "30": ("Some Series (2006\u20132007)", "")}
    assert "title" not in movielens.read_movielens(latest_dir).items  # opt-in


def test_text_columns_without_a_tags_file(latest_dir):
    data = movielens.read_movielens(latest_dir, text=True)
    assert data.items["tags"].tolist() == ["", "", ""]
