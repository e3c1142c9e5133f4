"""A Dask worker killed in the middle of a fit: the in-memory result, or one clear error.

Real worker processes are killed with SIGKILL while they run one of the fit's
tasks. To kill a worker *during* a task, and not merely near one, a block task
is held: on the worker chosen, the block task after ``skip`` more (a fold of a
pass, or a minibatch's rows) writes the worker's pid to a file and sleeps; the
test reads the pid and kills that process. Dask then reruns the task on
another worker and recomputes what the dead one held, so the fit must end with
the coefficients and cost curve of the in-memory fit (to 1e-10 relative); or,
where Dask gives up (``KilledWorker``, no worker left, the scheduler gone), a
one-line :class:`~gradfit.sources.dask.ClusterError`. Never a model from
partial sums, and never a hang: every wait here is bounded by
:data:`HANG_GUARD`, which only turns a hang into a failure.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

from gradfit import GDRegressor, load  # noqa: E402
from gradfit.cli import main  # noqa: E402
from gradfit.sources import DaskSource  # noqa: E402
from gradfit.sources.dask import ClusterError  # noqa: E402

from .conftest import make_regression  # noqa: E402

RTOL = 1e-10
#: seconds any wait may take before the test fails: a guard against hangs, not a timing
HANG_GUARD = 60
FEATURES = ["a", "b", "c", "d"]

#: settings, and which block task the kill lands in: ``(kind, skip)`` for :func:`_hold_a_block_task`
RUNS = {
    # the statistics engine reads the data once: the kill lands in that pass
    "statistics": (dict(engine="statistics", epochs=100, tol=None), ("_fold_block", 0)),
    # a few passes in (the moments, the curvature, then one per epoch)
    "pass": (dict(engine="pass", epochs=10, tol=None), ("_fold_block", 8)),
    # in a minibatch's gathering of its rows
    "minibatch": (dict(engine="pass", batch_size=500, epochs=2, tol=None, random_state=3), ("_take_block", 3)),
}


# -- on the workers: hold one block task until the test kills its process ----------
# These functions travel by value (see ``by_value``): the workers never import this module.


def _hold_a_block_task(folder, task):
    """On a worker: its ``skip + 1``-th ``kind`` task from now announces the worker's pid and waits to be killed.

    ``task`` is ``(kind, skip)``, ``kind`` a function of
    :mod:`gradfit.sources.dask.tasks` that runs on a block: ``"_fold_block"`` (a
    pass) or ``"_take_block"`` (a minibatch's rows). Only one task in the
    whole cluster holds (the first to claim ``folder``); a worker the nanny
    restarts comes back without the hold.
    """
    from gradfit.sources.dask import tasks as module

    kind, skip = task
    original = getattr(module, kind)
    calls = itertools.count()

    def held(*args):
        if next(calls) == skip and _claim(folder):
            path = os.path.join(folder, "held")
            with open(path + ".part", "w") as handle:
                handle.write(str(os.getpid()))
            os.replace(path + ".part", path)
            time.sleep(HANG_GUARD)  # killed meanwhile
        return original(*args)

    held.unheld = original
    setattr(module, kind, held)
    return os.getpid()


def _claim(folder):
    try:
        os.close(os.open(os.path.join(folder, "claimed"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _release_holds():
    from gradfit.sources.dask import tasks as module

    for kind in ("_fold_block", "_take_block"):
        while hasattr(getattr(module, kind), "unheld"):
            setattr(module, kind, getattr(module, kind).unheld)


# -- in the test: run the fit aside, kill the worker that holds ------------------------


class Aside(threading.Thread):
    """``function()`` on a thread of its own: the test kills a process meanwhile."""

    def __init__(self, function):
        super().__init__(daemon=True)
        self.function, self.result, self.error = function, None, None
        self.start()

    def run(self):
        try:
            self.result = self.function()
        except BaseException as exc:  # handed to the test by outcome()
            self.error = exc

    def outcome(self):
        self.join(HANG_GUARD)
        assert not self.is_alive(), f"still running after {HANG_GUARD} s: a hang"
        if self.error is not None:
            raise self.error
        return self.result


def held_pid(folder, aside):
    """The pid of the worker process whose task holds (waiting, at most HANG_GUARD, for one to)."""
    path = os.path.join(folder, "held")
    deadline = time.monotonic() + HANG_GUARD
    while not os.path.exists(path):
        if not aside.is_alive():
            aside.outcome()  # raises what the fit raised
            pytest.fail("the fit ended before any block task was held")
        assert time.monotonic() < deadline, f"no block task held within {HANG_GUARD} s"
        time.sleep(0.01)
    with open(path) as handle:
        return int(handle.read())


def kill_when_held(client, folder, aside, workers=None):
    """SIGKILL the worker process that holds a task; returns the worker's address."""
    pids = client.run(os.getpid, workers=workers)
    pid = held_pid(folder, aside)
    address = next(address for address, known in pids.items() if known == pid)
    os.kill(pid, signal.SIGKILL)
    return address


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def by_value():
    """Send this module's functions to the workers by value: importing it there would cost seconds."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster(by_value):
    """Two single-threaded worker processes under nannies, which restart a killed one."""
    # A LocalCluster closes the nanny of a worker whose name has not come back
    # this long after it was lost, checking once; a later kill falling on that
    # moment would cost the cluster a worker for good. The kills here come
    # every few seconds, so the check waits for the end of the module.
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"}):
        cluster = distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address="127.0.0.1:0",
            silence_logs=logging.CRITICAL,  # the kills are on purpose
        )
        client = distributed.Client(cluster)
        yield cluster, client
        client.close()
        cluster.close()


@pytest.fixture
def client(cluster):
    """The cluster's client, both workers up (a worker killed before is back), no holds left after."""
    client = cluster[1]
    client.wait_for_workers(2, timeout=HANG_GUARD)
    yield client
    client.run(_release_holds, on_error="ignore")  # a worker killed is gone, or back without holds


@pytest.fixture(scope="module")
def data():
    return make_regression(n=2400, d=4, seed=5)


@pytest.fixture(scope="module")
def parquet(data, tmp_path_factory):
    """The data as three Parquet files of row groups of 200 rows."""
    X, y = data
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["t"] = y
    folder = tmp_path_factory.mktemp("faults") / "parts"
    folder.mkdir()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, start in enumerate(range(0, len(frame), 800)):
        pq.write_table(table.slice(start, 800), str(folder / f"part-{i}.parquet"), row_group_size=200)
    return str(folder)


def dask_input(kind, client, data, parquet):
    """``(fit arguments, persisted futures or None)`` for the kind of Dask input asked."""
    X, y = data
    if kind == "numpy":  # made on the client; the graph holds the data, every pass reads it from there
        return (da.from_array(X, chunks=300), da.from_array(y, chunks=300)), None
    if kind == "persisted":  # the only copy of each block is in one worker's memory
        Xd, yd = client.persist([da.from_array(X, chunks=300), da.from_array(y, chunks=300)])
        distributed.wait([Xd, yd], timeout=HANG_GUARD)
        return (Xd, yd), distributed.futures_of(Xd) + distributed.futures_of(yd)
    source = DaskSource.from_file(parquet, "t", features=FEATURES, block_rows=300)  # read by the workers
    if kind == "persisted-file":  # as the CLI does for minibatches
        source.persist()
    return (source,), None


def assert_same_fit(model, reference):
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=RTOL)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, rtol=RTOL)
    np.testing.assert_allclose(model.loss_curve_, reference.loss_curve_, rtol=RTOL)
    assert model.n_iter_ == reference.n_iter_ and model.engine_ == reference.engine_


# -- what Dask raises, told in one line -------------------------------------------------------


def dask_failures():
    from distributed.client import CancelledFuturesGroup, FutureCancelledError, FuturesCancelledError
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker, NoValidWorkerError

    lost = FutureCancelledError("_fold_block-1", "scheduler-connection-lost", "Client lost the connection")
    return [
        (KilledWorker("_fold_block-1", "tcp://10.0.0.7:4000", 3),
         "Dask gave up on task '_fold_block-1' after 4 workers died running it (the last: tcp://10.0.0.7:4000; "
         "distributed.scheduler.allowed-failures is 3)"),
        (NoValidWorkerError("_fold_block-1", set(), set(), {}, 30.0),
         "no Dask worker could run task '_fold_block-1' for 30 s (distributed.scheduler.no-workers-timeout)"),
        (lost, "lost the connection to the Dask scheduler at tcp://10.0.0.1:8786 (it stopped"),
        (FuturesCancelledError([CancelledFuturesGroup([lost], "scheduler-connection-lost")]),
         "lost the connection to the Dask scheduler at tcp://10.0.0.1:8786 (it stopped"),
        (FutureCancelledError("_fold_block-1", "cancelled by another client"),
         "Dask cancelled the fit's computation (reason: cancelled by another client)"),
        (CommClosedError("in <TCP (closed)>: ConnectionResetError:\n[Errno 104] Connection reset by peer"),
         "lost the connection to the Dask cluster at tcp://10.0.0.1:8786 (in <TCP (closed)>: ConnectionResetError: "
         "[Errno 104] Connection reset by peer)"),
        (TimeoutError("timed out after 30 s."), "the Dask cluster at tcp://10.0.0.1:8786 did not answer in time"),
    ]


def test_dask_failures_become_one_line_cluster_errors(tmp_path):
    from gradfit.sources.dask import cluster_failure

    for exc, start in dask_failures():
        failure = cluster_failure(exc, "tcp://10.0.0.1:8786")
        assert isinstance(failure, ClusterError), exc
        message = str(failure)
        assert message.startswith(start) and "\n" not in message, message
        assert message.endswith("; keep a checkpoint (--checkpoint PATH) to go on from after such a failure")
    # Not the cluster's: the data's own errors, and everything else, pass through.
    assert cluster_failure(ValueError("could not convert 'x' to float")) is None
    checkpoint = tmp_path / "fit.checkpoint"
    checkpoint.write_text("{}")
    resumable = ClusterError("lost the connection to the Dask scheduler", checkpoint)
    assert str(resumable).endswith(f"the checkpoint '{checkpoint}' holds the epochs done: go on from it with "
                                   f"--resume {checkpoint} (resume=)")


# -- a worker killed: Dask reruns and recomputes, the fit is the in-memory one -------------


@pytest.mark.parametrize("kind, run", [
    ("numpy", "statistics"),
    ("numpy", "pass"),
    ("persisted", "pass"),
    ("file", "statistics"),
    ("file", "pass"),
    ("persisted-file", "minibatch"),
])
def test_worker_killed_mid_task_gives_the_in_memory_fit(client, data, parquet, tmp_path, kind, run):
    settings, task = RUNS[run]
    reference = GDRegressor(**settings).fit(*data)
    arguments, persisted = dask_input(kind, client, data, parquet)
    workers = None
    if persisted is not None:
        # Hold on the worker with most of the blocks, so that killing it loses them.
        keys = {future.key for future in persisted}
        held = {address: keys.intersection(stored) for address, stored in client.has_what().items()}
        workers = [max(held, key=lambda address: len(held[address]))]
        lost = held[workers[0]]
        assert lost
    client.run(_hold_a_block_task, str(tmp_path), task, workers=workers)
    aside = Aside(lambda: GDRegressor(**settings).fit(*arguments))
    killed = kill_when_held(client, str(tmp_path), aside, workers)
    assert_same_fit(aside.outcome(), reference)
    if persisted is not None:
        # Dask recomputed the blocks that died with the worker, from their graph.
        places = client.who_has([future for future in persisted if future.key in lost])
        assert len(places) == len(lost) and all(where and killed not in where for where in places.values()), places


def test_every_worker_killed_at_once_under_nannies(client, data, tmp_path):
    """Both processes die; the nannies start new ones, which finish the fit."""
    settings, task = RUNS["pass"]
    reference = GDRegressor(**settings).fit(*data)
    arguments, _ = dask_input("numpy", client, data, None)
    pids = client.run(os.getpid)
    client.run(_hold_a_block_task, str(tmp_path), task)
    aside = Aside(lambda: GDRegressor(**settings).fit(*arguments))
    held_pid(str(tmp_path), aside)
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    assert_same_fit(aside.outcome(), reference)


# -- Dask gives up: one clear error, and a checkpoint to go on from -------------------------


def test_killed_worker_beyond_allowed_failures_is_a_clear_error(cluster, client, data, tmp_path, monkeypatch):
    # No retry allowed: the first worker to die while running a task fails the computation.
    monkeypatch.setattr(cluster[0].scheduler, "allowed_failures", 0)
    settings, task = RUNS["pass"]
    arguments, _ = dask_input("numpy", client, data, None)
    client.run(_hold_a_block_task, str(tmp_path), task)
    aside = Aside(lambda: GDRegressor(**settings).fit(*arguments))
    killed = kill_when_held(client, str(tmp_path), aside)
    with pytest.raises(ClusterError) as failure:
        aside.outcome()
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("Dask gave up on task") and "allowed-failures is 0" in message, message
    assert killed in message and "--checkpoint" in message


def test_cli_stops_in_one_line_and_resumes_from_its_checkpoint(cluster, client, data, parquet, tmp_path,
                                                                monkeypatch, capsys):
    monkeypatch.setattr(cluster[0].scheduler, "allowed_failures", 0)
    output, checkpoint = tmp_path / "model.json", tmp_path / "fit.checkpoint"
    command = ["train", parquet, "--target", "t", "--features", ",".join(FEATURES), "--engine", "pass",
               "--epochs", "30", "--tol", "none", "--dask", client.scheduler.address, "-o", str(output),
               "--quiet", "--checkpoint", str(checkpoint), "--checkpoint-every", "2"]
    holds = tmp_path / "holds"
    holds.mkdir()
    # A worker's 15th fold: 3 folds a pass (the moments', the Hessian's, then an
    # epoch's) on two workers, however unevenly the scheduler shares them (a
    # worker still compiling a kernel gets fewer), falls in epoch 3 to 6, after
    # the checkpoint of epoch 2.
    client.run(_hold_a_block_task, str(holds), ("_fold_block", 14))
    aside = Aside(lambda: main(command))
    kill_when_held(client, str(holds), aside)
    assert aside.outcome() == 1
    error = capsys.readouterr().err
    assert error.startswith("gradfit: error: Dask gave up on task") and error.count("\n") == 1, error
    assert f"--resume {checkpoint}" in error, error
    assert not output.exists() and checkpoint.exists()

    client.wait_for_workers(2, timeout=HANG_GUARD)
    assert main(command + ["--resume", str(checkpoint)]) == 0, capsys.readouterr().err
    reference = GDRegressor(engine="pass", epochs=30, tol=None).fit(*data)
    model = load(str(output))
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=RTOL)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, rtol=RTOL)
    np.testing.assert_allclose(model.loss_curve_, reference.loss_curve_, rtol=RTOL)


# -- the whole cluster gone: an error, not a hang ---------------------------------------------


@pytest.fixture
def bare_cluster(tmp_path):
    """A scheduler and two workers without nannies, each its own process: what is killed stays dead."""
    scheduler_file = str(tmp_path / "scheduler.json")
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--no-dashboard", "--scheduler-file", scheduler_file], **quiet)
    workers = [
        subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", scheduler_file,
                          "--no-nanny", "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"], **quiet)
        for _ in range(2)
    ]
    processes = [scheduler] + workers
    try:
        deadline = time.monotonic() + HANG_GUARD
        while not os.path.exists(scheduler_file):
            assert time.monotonic() < deadline and scheduler.poll() is None, "the scheduler did not start"
            time.sleep(0.05)
        with distributed.Client(scheduler_file=scheduler_file, timeout="5s") as client:
            client.wait_for_workers(2, timeout=HANG_GUARD)
            yield client, scheduler, workers
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_all_workers_dead_is_an_error_not_a_hang(bare_cluster, data, tmp_path):
    client, _, workers = bare_cluster
    settings, task = RUNS["pass"]
    arguments, _ = dask_input("numpy", client, data, None)
    client.run(_hold_a_block_task, str(tmp_path), task)
    with dask.config.set({"distributed.scheduler.no-workers-timeout": "2s"}):
        aside = Aside(lambda: GDRegressor(**settings).fit(*arguments))
        held_pid(str(tmp_path), aside)
        for worker in workers:
            os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(ClusterError) as failure:
            aside.outcome()
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("no Dask worker left in the cluster at tcp://") and "for 2 s" in message, message


def test_scheduler_gone_is_one_line_from_the_cli(bare_cluster, parquet, tmp_path, capsys):
    client, scheduler, _ = bare_cluster
    output = tmp_path / "model.json"
    command = ["train", parquet, "--target", "t", "--engine", "pass", "--epochs", "30", "--tol", "none",
               "--dask", client.scheduler.address, "-o", str(output), "--quiet"]
    client.run(_hold_a_block_task, str(tmp_path), ("_fold_block", 8))
    aside = Aside(lambda: main(command))
    held_pid(str(tmp_path), aside)
    scheduler.kill()
    assert aside.outcome() == 1
    error = capsys.readouterr().err
    assert error.startswith("gradfit: error: lost the connection to the Dask scheduler at tcp://"), error
    assert error.count("\n") == 1 and not output.exists()
