"""A file is read once when it fits; memory stays bounded whatever its layout.

* after the first pass, later passes give the same chunks without the file
  (it is moved away): from memory within the budget, from the binary cache
  beyond it for CSV; Parquet beyond it is read again;
* a value that stops the fit is still named by its CSV line when the rows
  come from memory or from the cache;
* sizes: ``512MiB``, ``4GiB``, ``1.5GB``; a bad size is a one-line usage error;
* streamed batches of a wide file hold at most ``STREAM_BATCH_BYTES``,
  counted on the chunks the real reader yields.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest

from gradfit import FileSource, GDRegressor
from gradfit.cli import main
from gradfit.errors import DataError, OptionError
from gradfit.sources import files
from gradfit.sources.columns import default_memory_budget, parse_size

from .conftest import write_table


def frame(rows=3000, features=4, seed=0):
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(rng.normal(size=(rows, features)), columns=[f"x{j}" for j in range(features)])
    data["y"] = data.to_numpy() @ rng.normal(size=features) + 0.1 * rng.normal(size=rows)
    return data


def read_all(source):
    chunks = list(source.chunks())
    return np.concatenate([c.X for c in chunks]), np.concatenate([c.y for c in chunks]), [c.start for c in chunks]


@pytest.mark.parametrize(
    "name, memory, kept",
    [("d.csv", None, "memory"), ("d.csv", 1000, "disk"), ("d.parquet", None, "memory"), ("folder", "1MiB", "memory")],
)
def test_later_passes_need_no_file(tmp_path, name, memory, kept):
    data = frame()
    path = write_table(data, tmp_path / name)
    source = FileSource(path, "y", memory=memory, batch_rows=500)
    first = read_all(source)
    assert source._columns.where == kept
    moved = str(tmp_path / "moved")
    shutil.move(path, moved)  # nothing left to read: the columns must come from what was kept
    again = read_all(source)
    np.testing.assert_array_equal(again[0], data[["x0", "x1", "x2", "x3"]].to_numpy())
    np.testing.assert_array_equal(again[0], first[0])
    np.testing.assert_array_equal(again[1][:, 0], data["y"].to_numpy())
    assert again[2][0] == 0 and again[2] == sorted(again[2])


def test_a_one_pass_reader_keeps_nothing(tmp_path):
    path = write_table(frame(), tmp_path / "d.csv")
    source = FileSource(path, "y", keep_columns=False)
    read_all(source)
    assert source._columns is None


def test_parquet_beyond_the_budget_is_read_again(tmp_path):
    data = frame()
    path = write_table(data, tmp_path / "d.parquet")
    source = FileSource(path, "y", memory=0)
    read_all(source)
    assert source._columns is None
    os.remove(path)
    with pytest.raises((OSError, DataError)):
        read_all(source)


@pytest.mark.parametrize("memory", [None, 0])
def test_a_bad_value_is_named_by_its_line_from_memory_or_the_cache(tmp_path, memory):
    data = frame(rows=2000)
    data.loc[1700, "x2"] = np.inf  # data row 1700: line 1702 of the file
    path = write_table(data, tmp_path / "d.csv")
    source = FileSource(path, "y", memory=memory, batch_rows=256)
    read_all(source)  # the first pass keeps the chunks (an infinity is a number to pyarrow)
    with pytest.raises(DataError, match=r"infinite value \(inf\) in file .*d\.csv' at line 1702, column 'x2'"):
        GDRegressor(engine="pass", epochs=3, tol=None).fit(source)


def test_fit_from_kept_columns_equals_the_streamed_fit(tmp_path):
    data = frame(seed=3)
    path = write_table(data, tmp_path / "d.csv")
    settings = dict(engine="pass", epochs=30, tol=None)
    kept = GDRegressor(**settings).fit(FileSource(path, "y"))
    cached = GDRegressor(**settings).fit(FileSource(path, "y", memory=0))
    np.testing.assert_allclose(kept.loss_curve_, cached.loss_curve_, rtol=1e-13)
    np.testing.assert_allclose(kept.coef_, cached.coef_, rtol=1e-12)


@pytest.mark.parametrize(
    "text, expected",
    [("512MiB", 512 << 20), ("4GiB", 4 << 30), ("1.5GB", 1_500_000_000), ("0", 0), ("2048", 2048), (" 3 kib ", 3072)],
)
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "12XB", "-1GiB", "GiB", "1e3"])
def test_a_bad_size_is_refused(text):
    with pytest.raises(OptionError, match="is not a size"):
        parse_size(text)


def test_the_default_budget_is_a_share_of_memory():
    budget = default_memory_budget()
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < budget <= 0.25 * total + 1


def test_cli_memory_option(tmp_path, capsys):
    path = write_table(frame(rows=300), tmp_path / "d.csv")
    assert main(["train", path, "--target", "y", "--epochs", "5", "--tol", "none", "--quiet", "--memory", "64KiB"]) == 0
    capsys.readouterr()
    assert main(["train", path, "--target", "y", "--epochs", "5", "--quiet", "--memory", "lots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--memory" in err[0] and "'lots' is not a size" in err[0]
    # the workers hold the data: a budget would be accepted and ignored
    assert main(["train", path, "--target", "y", "--dask", "local:1", "--memory", "1GiB"]) == 2
    assert "--memory has no effect with --dask" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["wide.parquet", "wide.csv"])
def test_a_wide_file_streams_in_bounded_batches(tmp_path, name):
    columns = 400
    data = frame(rows=3000, features=columns - 1)
    path = write_table(data, tmp_path / name)
    source = FileSource(path, "y", memory=0)
    limit = files.STREAM_BATCH_BYTES // (8 * columns)
    assert source.stream_batch_rows() == limit < source.batch_rows
    sizes = [chunk.n_rows for chunk in source.chunks()]
    assert sum(sizes) == 3000 and max(sizes) <= limit
