"""File sources: CSV, Parquet and folders of Parquet read the same numbers, and say where bad ones are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gradfit import DataError, FileSource, GDRegressor

from .conftest import make_regression, write_table as write


def frame(n=50, seed=0):
    X, y = make_regression(n=n, d=3, k=2, seed=seed, offset=1.0)
    data = pd.DataFrame(X, columns=["a", "b", "c"])
    data["y1"], data["y2"] = y[:, 0], y[:, 1]
    data["w"] = np.random.default_rng(seed).uniform(0.5, 2.0, size=n)
    return data


def read_all(source):
    chunks = list(source.chunks())
    X = np.vstack([c.X for c in chunks])
    y = np.vstack([c.y for c in chunks])
    weight = None if chunks[0].sample_weight is None else np.concatenate([c.sample_weight for c in chunks])
    return X, y, weight, [c.start for c in chunks]


@pytest.mark.parametrize("name", ["d.csv", "d.parquet", "folder"])
def test_every_format_reads_the_same_numbers(tmp_path, name):
    data = frame()
    source = FileSource(write(data, tmp_path / name), target=["y1", "y2"], sample_weight="w", batch_rows=7)
    assert source.feature_names == ["a", "b", "c"] and source.target_names == ["y1", "y2"]
    X, y, weight, starts = read_all(source)
    np.testing.assert_array_equal(X, data[["a", "b", "c"]].to_numpy())
    np.testing.assert_array_equal(y, data[["y1", "y2"]].to_numpy())
    np.testing.assert_array_equal(weight, data["w"].to_numpy())
    assert starts == sorted(starts) and starts[0] == 0
    assert source.n_samples == 50


@pytest.mark.parametrize("name", ["d.csv", "d.parquet", "folder"])
@pytest.mark.parametrize("engine", ["statistics", "pass"])
def test_a_file_fits_like_the_arrays(tmp_path, name, engine):
    data = frame(seed=1)
    path = write(data, tmp_path / name)
    settings = dict(engine=engine, epochs=50, tol=None)
    from_file = GDRegressor(**settings).fit(FileSource(path, target="y1", features=["a", "b", "c"], batch_rows=16))
    from_arrays = GDRegressor(**settings).fit(data[["a", "b", "c"]].to_numpy(), data["y1"].to_numpy())
    # Near the optimum the cost carries the rounding of Σy² (ε·J(0) absolute, here
    # 3e-12 relative to J*): a different chunking may move it by that much.
    np.testing.assert_allclose(from_file.loss_curve_, from_arrays.loss_curve_, rtol=1e-12,
                               atol=1e-15 * from_arrays.loss_curve_[0])
    np.testing.assert_allclose(from_file.coef_, from_arrays.coef_, rtol=1e-12)
    assert from_file.feature_names_ == ["a", "b", "c"] and from_file.target_names_ == ["y1"]


def test_only_the_needed_columns_are_read(tmp_path):
    # A text column, and a column named twice, do no harm when they are not used.
    text = "id,a,b,y,note,note\nr1,1,2,3,x,x\nr2,2,1,4,y,y\nr3,3,5,1,z,z\n"
    (tmp_path / "d.csv").write_text(text)
    source = FileSource(tmp_path / "d.csv", target="y", features=["a", "b"])
    X, y, _, _ = read_all(source)
    np.testing.assert_array_equal(X, [[1, 2], [2, 1], [3, 5]])
    table = pa.table({"a": [1.0, 2.0], "label": ["p", "q"], "y": [3.0, 4.0]})
    pq.write_table(table, tmp_path / "d.parquet")
    X, y, _, _ = read_all(FileSource(tmp_path / "d.parquet", target="y", features=["a"]))
    np.testing.assert_array_equal(y, [[3.0], [4.0]])


def test_float32_parquet_stays_float32(tmp_path):
    table = pa.table({"a": pa.array([1, 2, 3], pa.float32()), "b": pa.array([0, 1, 0], pa.float32()),
                      "y": [1.0, 2.0, 3.0]})
    pq.write_table(table, tmp_path / "d.parquet")
    source = FileSource(tmp_path / "d.parquet", target="y")
    assert source.dtype == np.float32 and read_all(source)[0].dtype == np.float32


def test_csv_spellings(tmp_path):
    # a byte-order mark, quoted numbers, spaces around them, integers and exponents
    (tmp_path / "d.csv").write_bytes('\ufeffa,b,y\n"1", 2 ,3\n2e0,1.5,4\n'.encode())
    X, y, _, _ = read_all(FileSource(tmp_path / "d.csv", target="y"))
    np.testing.assert_array_equal(X, [[1, 2], [2, 1.5]])
    np.testing.assert_array_equal(y, [[3], [4]])


def test_positions_are_counted_across_batches(tmp_path):
    data = frame(n=60)
    data.loc[45, "b"] = np.inf
    write(data, tmp_path / "d.csv")
    with pytest.raises(DataError, match=r"line 47, column 'b'"):
        GDRegressor().fit(FileSource(tmp_path / "d.csv", target="y1", batch_rows=8))
    # In a folder, the row is counted within the file that holds it.
    write(data, tmp_path / "folder", parts=3)  # files of 20 rows: row 46 is part2.parquet's 6th
    with pytest.raises(DataError, match=r"part2\.parquet row 6, column 'b'"):
        GDRegressor().fit(FileSource(tmp_path / "folder", target="y1", batch_rows=8))


def test_a_bad_value_far_into_a_big_csv(tmp_path):
    # Past pyarrow's first 1 MiB block: the line is still found.
    rows = 40_000
    lines = ["a,b,y"] + [f"{i},{i % 7},{2 * i}" for i in range(rows)]
    lines[rows - 5] = "1,two,3"
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    assert (tmp_path / "d.csv").stat().st_size > 1 << 19
    with pytest.raises(DataError, match=rf"line {rows - 4}, column 'b': 'two' is not a number"):
        list(FileSource(tmp_path / "d.csv", target="y", batch_rows=4096).chunks())


@pytest.mark.parametrize(
    "columns, arguments, message",
    [
        ("a,a,y", dict(target="y"), "more than one column named 'a'"),
        ("a,b,y", dict(target="y", features=["a", "a"]), "column 'a' is given more than once"),
        ("a,b,y", dict(target="y", features=["a", "y"]), "'y' is both a feature and a target"),
        ("a,b,y", dict(target="z"), "no column 'z'; its columns are: a, b, y"),
        ("y,w", dict(target="y", sample_weight="w"), "no feature columns"),
        ("a,b,y", dict(target=[]), "no target column given"),
    ],
)
def test_column_errors_name_the_file(tmp_path, columns, arguments, message):
    (tmp_path / "d.csv").write_text(columns + "\n" + ",".join("1" * len(columns.split(","))) + "\n")
    with pytest.raises(DataError, match=message) as caught:
        FileSource(tmp_path / "d.csv", **arguments)
    assert str(tmp_path / "d.csv") in str(caught.value)


def test_an_empty_folder_and_a_folder_named_csv(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Parquet files found"):
        FileSource(tmp_path / "empty", target="y")
    (tmp_path / "x.csv").mkdir()
    with pytest.raises(DataError, match="is a folder, not a CSV file"):
        FileSource(tmp_path / "x.csv", target="y")


@pytest.mark.parametrize(
    "second, message",
    [
        (pa.table({"a": ["x", "y"], "y": [1.0, 2.0]}), r"p2\.parquet, column 'a': type string is not numeric"),
        (pa.table({"b": [1.0, 2.0], "y": [1.0, 2.0]}), r"p2\.parquet has no column 'a'"),
    ],
)
def test_a_folder_whose_files_disagree(tmp_path, second, message):
    # The dataset's schema is the first file's: the others are checked against it.
    (tmp_path / "folder").mkdir()
    pq.write_table(pa.table({"a": [1.0, 2.0], "y": [1.0, 2.0]}), tmp_path / "folder" / "p1.parquet")
    pq.write_table(second, tmp_path / "folder" / "p2.parquet")
    with pytest.raises(DataError, match=message):
        FileSource(tmp_path / "folder", target="y")
