"""Dask arrays, dataframes and files read by workers give the in-memory iterates.

A real cluster (two worker processes) runs every reduction: the engines'
per-chunk functions are pickled to the workers, the partial sums merged
there. Coefficients and cost curves agree with NumPy fits to 1e-10 relative,
for the statistics and pass engines and for minibatches with one seed.
"""

from __future__ import annotations

import os
import pickle
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

from gradfit import DataError, GDRegressor, load  # noqa: E402
from gradfit.cli import main  # noqa: E402
from gradfit.sources import DaskSource, FileSource  # noqa: E402
from gradfit.sources.dask import SourceNames  # noqa: E402

from .conftest import make_regression  # noqa: E402

RTOL = 1e-10
FEATURES = ["a", "b", "c", "d"]
RUNS = {
    "statistics": dict(engine="statistics", epochs=100, tol=None),
    "pass": dict(engine="pass", epochs=15, tol=None),
    "minibatch": dict(engine="pass", batch_size=400, epochs=2, tol=None, random_state=11),
}


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes: closures and partial sums really travel."""
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address="127.0.0.1:0", silence_logs=50
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(autouse=True)
def no_gathering(monkeypatch):
    """Fail if anything brings whole blocks to the client instead of reducing on the workers."""

    def chunks(self):
        raise AssertionError("DaskSource.chunks() gathered the data to the client")

    monkeypatch.setattr(DaskSource, "chunks", chunks)


@pytest.fixture(scope="module")
def data():
    X, y = make_regression(n=2400, d=4, k=2, seed=5)
    weight = np.random.default_rng(6).uniform(0.0, 2.0, size=len(X))
    return X, y, weight


def reference_fit(settings, X, y, weight=None):
    return GDRegressor(**settings).fit(X, y, sample_weight=weight)


def assert_same_fit(model, reference):
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=RTOL)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, rtol=RTOL)
    np.testing.assert_allclose(model.loss_curve_, reference.loss_curve_, rtol=RTOL)
    assert model.n_iter_ == reference.n_iter_ and model.engine_ == reference.engine_


def as_frame(X, y, weight):
    data = pd.DataFrame(X, columns=FEATURES)
    data["t"], data["u"], data["w"] = y[:, 0], y[:, 1], weight
    return data


def inputs(kind, client, X, y, weight):
    """``(X, y, sample_weight)`` as Dask collections of the kind asked, held by the workers."""
    if kind == "arrays":  # y split differently from X: the source aligns them
        Xd = da.from_array(X, chunks=(500, 2))
        return client.persist(Xd), client.persist(da.from_array(y[:, 0], chunks=700)), None
    if kind == "weighted-arrays":
        parts = [da.from_array(a, chunks=450) for a in (X, y, weight)]
        return tuple(client.persist(parts))
    if kind == "numpy-y":  # X on the cluster, y and weights sent once
        return client.persist(da.from_array(X, chunks=600)), y[:, 0], weight
    frame = client.persist(dd.from_pandas(as_frame(X, y, weight), npartitions=5))
    if kind == "dataframe":
        return frame[FEATURES], frame["t"], None
    return frame[FEATURES], frame[["t", "u"]], frame["w"]  # "weighted-dataframe", two targets


def numpy_of(kind, X, y, weight):
    if kind in ("arrays", "dataframe"):
        return X, y[:, 0], None
    if kind in ("weighted-arrays", "weighted-dataframe"):
        return X, y, weight
    return X, y[:, 0], weight


@pytest.mark.parametrize("kind", ["arrays", "weighted-arrays", "numpy-y", "dataframe", "weighted-dataframe"])
@pytest.mark.parametrize("run", list(RUNS))
def test_dask_fit_gives_the_in_memory_iterates(client, data, kind, run):
    X, y, weight = data
    reference = reference_fit(RUNS[run], *numpy_of(kind, X, y, weight))
    Xd, yd, wd = inputs(kind, client, X, y, weight)
    model = GDRegressor(**RUNS[run]).fit(Xd, yd, sample_weight=wd)
    assert_same_fit(model, reference)
    assert model.n_samples_ == len(X)


def test_dataframe_names_and_lazy_predictions(client, data):
    X, y, weight = data
    Xd, yd, _ = inputs("weighted-dataframe", client, X, y, weight)
    model = GDRegressor(**RUNS["statistics"]).fit(Xd, yd)
    assert list(model.feature_names_in_) == FEATURES and model.target_names_ == ["t", "u"]
    predictions = model.predict(Xd)
    assert hasattr(predictions, "dask")  # lazy: computed on the workers only when asked
    np.testing.assert_allclose(predictions.compute(), model.predict(pd.DataFrame(X, columns=FEATURES)), rtol=1e-12)


def test_blocks_are_not_gathered_into_the_closures(client, data):
    X, y, _ = data
    # Not persisted: X's graph embeds the whole array.
    source = DaskSource(da.from_array(X, chunks=500), da.from_array(y, chunks=500))
    # What the engines' closures capture travels as names only.
    shipped = pickle.dumps(source)
    assert len(shipped) < 2000 < X.nbytes
    names = pickle.loads(shipped)
    assert isinstance(names, SourceNames) and names.where(17, 2) == "X[17, 2]"
    assert source.n_blocks == 5
    assert_same_fit(GDRegressor(**RUNS["pass"]).fit(source), reference_fit(RUNS["pass"], X, y))


@pytest.mark.parametrize("kind, where", [
    ("arrays", "in the Dask input at X[1234, 2]"),
    ("dataframe", "in the Dask input at row 1235, column 'c'"),
])
def test_bad_value_is_named_by_its_global_row(client, data, kind, where):
    X, y, weight = data
    X = X.copy()
    X[1234, 2] = np.nan
    Xd, yd, _ = inputs(kind, client, X, y, weight)
    with pytest.raises(DataError, match=r"missing value \(NaN\) " + where.replace("[", r"\[").replace("]", r"\]")):
        GDRegressor(engine="pass").fit(Xd, yd)


def test_negative_weight_is_named(client, data):
    X, y, weight = data
    weight = weight.copy()
    weight[2000] = -1.0
    with pytest.raises(DataError, match=r"sample weight -1.0 in the Dask input at sample_weight\[2000\]"):
        GDRegressor().fit(da.from_array(X, chunks=500), da.from_array(y, chunks=500), sample_weight=weight)


# -- files read by the workers ---------------------------------------------------


@pytest.fixture(scope="module")
def files(data, tmp_path_factory):
    X, y, weight = data
    frame = as_frame(X, y, weight)
    folder = tmp_path_factory.mktemp("dask-files")
    csv = str(folder / "data.csv")
    frame.to_csv(csv, index=False, float_format="%.17g")
    parts = folder / "parts"
    parts.mkdir()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, start in enumerate(range(0, len(frame), 1000)):
        pq.write_table(table.slice(start, 1000), str(parts / f"part-{i}.parquet"), row_group_size=300)
    return {"csv": csv, "parquet": str(parts)}


@pytest.mark.parametrize("layout", ["csv", "parquet"])
@pytest.mark.parametrize("run", list(RUNS))
def test_file_read_by_workers_gives_the_in_memory_iterates(client, data, files, layout, run):
    X, y, weight = data
    source = DaskSource.from_file(files[layout], ["t", "u"], features=FEATURES, sample_weight="w", block_rows=700)
    assert source.n_blocks >= 3
    if run == "minibatch":
        source.persist()
    assert_same_fit(GDRegressor(**RUNS[run]).fit(source), reference_fit(RUNS[run], X, y, weight))


def test_null_in_a_parquet_file_is_named_by_file_and_row(client, data, tmp_path):
    X, y, weight = data
    frame = as_frame(X, y, weight)
    frame.loc[1500, "b"] = np.nan
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, start in enumerate(range(0, len(frame), 1000)):
        pq.write_table(table.slice(start, 1000), str(tmp_path / f"part-{i}.parquet"), row_group_size=300)
    with pytest.raises(DataError, match=r"part-1.parquet row 501, column 'b'"):
        GDRegressor().fit(DaskSource.from_file(str(tmp_path), "t", block_rows=700))


@pytest.mark.parametrize("layout", ["csv", "parquet"])
def test_bad_value_read_by_workers_is_named_as_the_file_source_names_it(client, data, tmp_path, layout):
    """The workers decode a file with the file source's own code: the same checks, the same message."""
    X, y, weight = data
    frame = as_frame(X, y, weight)[["a", "b", "t"]]
    if layout == "csv":  # an empty field
        frame.loc[1700, "b"] = np.nan
        path = str(tmp_path / "data.csv")
        frame.to_csv(path, index=False, float_format="%.17g")
    else:  # an integer float64 cannot hold
        frame["b"] = np.arange(len(frame), dtype=np.int64)
        frame.loc[1700, "b"] = 2**53 + 1
        path = str(tmp_path / "parts")
        os.mkdir(path)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        for i, start in enumerate(range(0, len(frame), 1000)):
            pq.write_table(table.slice(start, 1000), os.path.join(path, f"part-{i}.parquet"), row_group_size=300)
    with pytest.raises(DataError) as local:
        GDRegressor().fit(FileSource(path, "t"))
    with pytest.raises(DataError) as workers:
        GDRegressor().fit(DaskSource.from_file(path, "t", block_rows=700))
    where = "line 1702, column 'b'" if layout == "csv" else "part-1.parquet row 701, column 'b'"
    assert where in str(local.value) and str(workers.value) == str(local.value)


@pytest.mark.parametrize("options, settings", [
    (["--epochs", "10"], dict(epochs=10)),
    (["--epochs", "2", "--batch-size", "500", "--seed", "4"], dict(epochs=2, batch_size=500, random_state=4)),
])
def test_cli_joins_a_running_scheduler(client, data, files, tmp_path, capsys, options, settings):
    X, y, weight = data
    output = tmp_path / "model.json"
    code = main(["train", files["parquet"], "--target", "t", "--features", ",".join(FEATURES), "--engine", "pass",
                 "--tol", "none", "--dask", client.scheduler.address, "-o", str(output), "--quiet", *options])
    assert code == 0, capsys.readouterr().err
    model = load(str(output))
    reference = reference_fit(dict(engine="pass", tol=None, **settings), X, y[:, 0])
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=RTOL)
    np.testing.assert_allclose(model.loss_curve_, reference.loss_curve_, rtol=RTOL)


def test_cli_bad_csv_value_on_the_workers_is_named(client, data, tmp_path, capsys):
    X, y, weight = data
    path = tmp_path / "bad.csv"
    frame = as_frame(X, y, weight)
    frame.to_csv(path, index=False, float_format="%.17g")
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[2000].split(",")
    fields[1] = "n/a?"
    lines[2000] = ",".join(fields)
    path.write_text("".join(lines))
    output = tmp_path / "model.json"
    code = main(["train", str(path), "--target", "t", "--dask", client.scheduler.address, "-o", str(output)])
    error = capsys.readouterr().err
    assert code == 1
    assert f"file '{path}', line 2001, column 'b': 'n/a?' is not a number" in error, error
    assert not output.exists()


def test_cli_starts_a_local_cluster(files, capsys):
    code = main(["train", files["parquet"], "--target", "t", "--features", "a,b", "--dask", "local:1", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "trained on 2400 rows x 2 features" in out, out


@pytest.mark.parametrize("value", ["local:0", "local:x", "somewhere"])
def test_cli_refuses_a_bad_dask_address(value, capsys):
    assert main(["train", "data.parquet", "--target", "t", "--dask", value]) == 2
    assert "--dask" in capsys.readouterr().err


def test_without_dask_the_cli_says_how_to_install_it(files, monkeypatch, capsys):
    for name in ("dask", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    code = main(["train", files["parquet"], "--target", "t", "--dask", "local"])
    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith("gradfit: error: ") and "pip install gradfit[dask]" in error
    assert error.count("\n") == 1
    assert os.path.exists(files["parquet"])


def test_cross_validation_gives_the_folds_and_errors_of_the_arrays(client):
    """GDRegressorCV (issue 15): each row's fold from its global position, the per-fold moments merged on the workers."""
    from gradfit import GDRegressorCV

    X, y = make_regression(n=1200, d=5, noise=3.0, seed=12, offset=4.0)
    settings = dict(penalty="elasticnet", l1_ratio=[0.2, 0.8], alphas=20, cv=5, random_state=3)
    arrays = GDRegressorCV(**settings).fit(X, y)
    cluster = GDRegressorCV(**settings).fit(da.from_array(X, chunks=(250, 5)), da.from_array(y, chunks=250))
    np.testing.assert_allclose(cluster.mse_path_, arrays.mse_path_, rtol=1e-10)
    np.testing.assert_allclose(cluster.alphas_, arrays.alphas_, rtol=1e-12)
    assert cluster.alpha_ == pytest.approx(arrays.alpha_, rel=1e-12) and cluster.l1_ratio_ == arrays.l1_ratio_
    np.testing.assert_allclose(cluster.coef_, arrays.coef_, rtol=1e-9)


def test_huber_cross_validation_sums_every_fold_on_the_workers(client):
    """GDRegressorCV(loss="huber"): each pass's per-fold sums reduced on the workers, the folds of the arrays."""
    from gradfit import GDRegressorCV

    X, y = make_regression(n=600, d=4, noise=3.0, seed=12, offset=4.0)
    y = y + np.random.default_rng(0).standard_t(2, len(y))
    settings = {"loss": "huber", "penalty": "l1", "alphas": 5, "cv": 4, "random_state": 3}
    arrays = GDRegressorCV(**settings).fit(X, y)
    cluster = GDRegressorCV(**settings).fit(da.from_array(X, chunks=(150, 4)), da.from_array(y, chunks=150))
    np.testing.assert_allclose(cluster.mse_path_, arrays.mse_path_, rtol=1e-10)
    assert cluster.alpha_ == pytest.approx(arrays.alpha_, rel=1e-12)
    np.testing.assert_allclose(cluster.coef_, arrays.coef_, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("loss", ["huber", "absolute_error"])
def test_newton_on_robust_losses_reduces_on_the_workers(client, data, loss):
    # gradfit.robust reads only through Source.reduce: the same fit, certified, with no block gathered
    X, y, weight = data
    reference = GDRegressor(loss=loss, optimizer="newton").fit(X, y[:, 0], sample_weight=weight)
    Xd, yd, wd = inputs("weighted-arrays", client, X, y[:, 0], weight)
    model = GDRegressor(loss=loss, optimizer="newton").fit(Xd, yd, sample_weight=wd)
    assert model.converged_ and reference.converged_
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, rtol=1e-8, atol=1e-10)
