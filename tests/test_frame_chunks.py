"""A DataFrame's categorical columns are encoded chunk by chunk, never as the whole frame's dense one-hot block.

Oracles: numpy's ``lstsq`` on the dense one-hot encoding made here with
pandas (treatment coding against the first level in sorted order), and the
same table as a Parquet file read by :class:`~gradfit.sources.FileSource`
(streamed chunk by chunk, an implementation of its own); the chunks equal
the rows of the whole frame's encoding (:meth:`TableEncoder.encode`) exactly.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from gradfit import FileSource, GDRegressor, GDRegressorCV
from gradfit.sources import frames


def gappy_frame(n=3000, n_cities=300, seed=0, n_wide=0):
    """A frame with a string column of ``n_cities`` levels, a bool, a ``category``, gaps; its target and weights.

    ``n_wide``: a second string column of that many levels (more than 1000: kept as level codes).
    """
    rng = np.random.default_rng(seed)
    city = rng.integers(0, n_cities, n)
    city[:n_cities] = np.arange(n_cities)  # every level present
    frame = pd.DataFrame({
        "x1": rng.normal(size=n),
        "city": [f"c{k:04d}" for k in city],
        "flag": rng.random(n) < 0.4,
        "size": pd.Categorical(rng.choice(["small", "large", "medium"], n)),
        "x2": rng.integers(0, 50, n),
    })
    effect = rng.normal(size=n_cities)
    y = 1.5 + 2.0 * frame["x1"] - 0.1 * frame["x2"] + effect[city] + 0.7 * frame["flag"] + rng.normal(size=n)
    if n_wide:
        wide = rng.integers(0, n_wide, n)
        wide[:n_wide] = np.arange(n_wide)
        frame["shop"] = [f"s{k:05d}" for k in wide]
        y = y + rng.normal(size=n_wide)[wide]
    frame.loc[rng.choice(n, 40, replace=False), "x1"] = np.nan
    frame.loc[rng.choice(np.arange(n_wide or n_cities, n), 25, replace=False), "city"] = None
    weight = rng.uniform(0.5, 2.0, n)
    weight[rng.choice(n, 10, replace=False)] = np.nan
    return frame, np.asarray(y), weight


def dense_design(frame, y, weight):
    """The complete rows' dense one-hot design (no intercept), targets and weights, and the features' names."""
    keep = frame.notna().all(axis=1).to_numpy() & ~np.isnan(y) & ~np.isnan(weight)
    frame, y, weight = frame[keep], y[keep], weight[keep]
    columns, names = [], []
    for name in frame.columns:
        values = frame[name]
        if values.dtype.kind in "if":
            columns.append(values.to_numpy(dtype=float))
            names.append(name)
            continue
        values = values.astype(object)
        for level in sorted(values.unique())[1:]:  # the first in sorted order is the reference
            columns.append((values == level).to_numpy(dtype=float))
            names.append(f"{name}[T.{level}]")
    return np.column_stack(columns), y, weight, names


def dense_lstsq(frame, y, weight):
    """Weighted least squares on the dense one-hot of the complete rows: ``(coef, intercept, names)``."""
    X, y, weight, names = dense_design(frame, y, weight)
    A = np.column_stack([np.ones(len(y)), X]) * np.sqrt(weight)[:, None]
    with threadpool_limits(1):  # BLAS's threads only fight over a loaded machine's cores here
        solution = np.linalg.lstsq(A, y * np.sqrt(weight), rcond=None)[0]
    return solution[1:], solution[0], names


@pytest.fixture(scope="module")
def table():
    return gappy_frame()


@pytest.fixture(scope="module")
def parquet(tmp_path_factory, table):
    frame, y, weight = table
    path = tmp_path_factory.mktemp("frame") / "t.parquet"
    frame.assign(y=y, w=weight).to_parquet(path, index=False)
    return str(path)


def file_source(path):
    return FileSource(path, "y", sample_weight="w", missing="drop")


def test_chunks_and_rows_taken_equal_the_whole_frames_encoding(table):
    frame, y, weight = table
    source = frames.frame_source(frame, y, weight, missing="drop")
    assert isinstance(source, frames.FrameSource)
    keep = frame.notna().all(axis=1).to_numpy() & ~np.isnan(weight)
    whole = source.encoder.encode([frames.encoding.pandas_arrow(frame[c][keep]) for c in frame.columns])
    source.rows_per_chunk = lambda: 700  # several chunks, the last one short
    chunks = list(source.chunks())
    assert len(chunks) > 3 and [c.start for c in chunks] == list(range(0, len(whole), 700))
    np.testing.assert_array_equal(np.vstack([c.X for c in chunks]), whole)
    rows = np.sort(np.random.default_rng(1).choice(len(whole), 333, replace=False))
    taken = source.take(rows)
    np.testing.assert_array_equal(taken.X, whole[rows])
    np.testing.assert_array_equal(taken.y, source.y[rows])
    np.testing.assert_array_equal(source.X, whole)


def test_fit_equals_dense_lstsq_and_the_parquet_file(table, parquet):
    frame, y, weight = table
    coef, intercept, names = dense_lstsq(frame, y, weight)
    model = GDRegressor(optimizer="cg", missing="drop").fit(frame, y, sample_weight=weight)
    assert model.feature_names_ == names
    np.testing.assert_allclose(model.coef_, coef, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(model.intercept_, intercept, rtol=1e-8)
    on_file = GDRegressor(optimizer="cg").fit(file_source(parquet))
    np.testing.assert_allclose(model.coef_, on_file.coef_, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(model.summary_["std_error"], on_file.summary_["std_error"], rtol=1e-9)


@pytest.mark.parametrize("settings", [
    dict(optimizer="gd", epochs=30, tol=None),
    dict(batch_size=256, epochs=2, tol=None, random_state=3),
])
def test_gd_and_minibatch_fits_equal_the_files(table, parquet, settings):
    frame, y, weight = table
    on_frame = GDRegressor(missing="drop", **settings).fit(frame, y, sample_weight=weight)
    on_file = GDRegressor(**settings).fit(file_source(parquet))
    np.testing.assert_allclose(on_frame.coef_, on_file.coef_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(on_frame.intercept_, on_file.intercept_, rtol=1e-9)


def test_cross_validation_equals_the_files(table, parquet):
    frame, y, weight = table
    settings = dict(penalty="l2", alphas=8, cv=3, random_state=0)
    on_frame = GDRegressorCV(missing="drop", **settings).fit(frame, y, sample_weight=weight)
    on_file = GDRegressorCV(**settings).fit(file_source(parquet))
    assert on_frame.alpha_ == pytest.approx(on_file.alpha_, rel=1e-10)
    np.testing.assert_allclose(on_frame.coef_, on_file.coef_, rtol=1e-8, atol=1e-9)


def test_given_splits_equal_the_dense_arrays(table):
    """ShuffleSplit's overlapping splits: each split's rows summed on their own, from the frame's chunks."""
    from sklearn.model_selection import ShuffleSplit

    frame, y, weight = table
    X, y_kept, weight_kept, _ = dense_design(frame, y, weight)
    splits = list(ShuffleSplit(3, test_size=0.3, random_state=0).split(X))
    settings = dict(penalty="l2", alphas=6, cv=splits)
    on_frame = GDRegressorCV(missing="drop", **settings).fit(frame, y, sample_weight=weight)
    on_arrays = GDRegressorCV(**settings).fit(X, y_kept, sample_weight=weight_kept)
    np.testing.assert_allclose(on_frame.alphas_, on_arrays.alphas_, rtol=1e-10)
    np.testing.assert_allclose(on_frame.mse_path_, on_arrays.mse_path_, rtol=1e-8)
    np.testing.assert_allclose(on_frame.coef_, on_arrays.coef_, rtol=1e-8, atol=1e-9)


def test_a_column_of_many_levels_as_codes_beside_dummies_made_per_chunk(tmp_path):
    frame, y, weight = gappy_frame(n=3000, n_cities=30, seed=1, n_wide=1100)
    coef, intercept, names = dense_lstsq(frame, y, weight)
    model = GDRegressor(optimizer="cg", tol=1e-10, missing="drop").fit(frame, y, sample_weight=weight)
    by_name = dict(zip(model.feature_names_, model.coef_))
    np.testing.assert_allclose([by_name[name] for name in names], coef, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(model.intercept_, intercept, rtol=1e-8)
    path = tmp_path / "wide.parquet"
    frame.assign(y=y, w=weight).to_parquet(path, index=False)
    settings = dict(batch_size=512, epochs=1, tol=None, random_state=2)
    on_frame = GDRegressor(missing="drop", **settings).fit(frame, y, sample_weight=weight)
    on_file = GDRegressor(**settings).fit(file_source(str(path)))
    np.testing.assert_allclose(on_frame.coef_, on_file.coef_, rtol=1e-9, atol=1e-9)


def test_fit_holds_far_less_than_the_dense_one_hot_block():
    n, levels = 200_000, 300
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"x": rng.normal(size=n), "city": pd.Series(rng.integers(0, levels, n)).map("c{:03d}".format)})
    y = frame["x"].to_numpy() + rng.normal(size=n)
    dense_bytes = n * levels * 8  # 480 MB: what encoding the whole frame at once allocates
    tracemalloc.start()
    try:
        model = GDRegressor().fit(frame, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(model.coef_) == levels
    assert peak < dense_bytes / 4, (peak, dense_bytes)


def test_predictions_equal_the_dense_design_and_name_an_unseen_levels_row(table):
    frame, y, weight = table
    model = GDRegressor(optimizer="cg", missing="drop").fit(frame, y, sample_weight=weight)
    X, *_ = dense_design(frame, y, weight)
    keep = frame.notna().all(axis=1).to_numpy() & ~np.isnan(y) & ~np.isnan(weight)
    np.testing.assert_allclose(model.predict(frame[keep]), X @ model.coef_ + model.intercept_, rtol=1e-12, atol=1e-12)
    n = 20_000  # more rows than one block of predictions (about 32 MB of features: 13,900 rows here)
    big = pd.DataFrame({"x": np.zeros(n), "city": [f"c{k % 300:03d}" for k in range(n)]})
    model = GDRegressor().fit(big, np.arange(n) % 7 + big["x"])
    big.loc[17_001, "city"] = "elsewhere"
    with pytest.raises(Exception, match=r"row 17001 \(0-based\), column 'city'.*'elsewhere'"):
        model.predict(big)


def test_predictions_hold_far_less_than_the_dense_one_hot_block():
    n, levels = 200_000, 300
    rng = np.random.default_rng(6)
    frame = pd.DataFrame({"x": rng.normal(size=n), "city": pd.Series(rng.integers(0, levels, n)).map("c{:03d}".format)})
    model = GDRegressor().fit(frame.iloc[:20_000], rng.normal(size=20_000))
    tracemalloc.start()
    try:
        prediction = model.predict(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert prediction.shape == (n,)
    assert peak < n * levels * 8 / 4, peak
