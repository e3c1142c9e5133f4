"""Progress (lines, live bar, quiet) and Ctrl-C, in-process and for real in a subprocess."""

import io
import os
import pty
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gradfit import FileSource, GDRegressor, load, progress
from gradfit.cli import main
from gradfit.progress import Interrupt, PrintProgress, reporter

from .conftest import make_regression


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


def write_csv(path, n=2000, d=3, seed=0):
    X, y = make_regression(n=n, d=d, seed=seed)
    header = ",".join([f"f{j}" for j in range(d)] + ["y"])
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="", fmt="%.17g")
    return path


# -- lines -------------------------------------------------------------------------


def test_lines_every_epoch_for_short_runs_thinned_for_long_ones():
    stream = io.StringIO()
    callback = PrintProgress(100, stream=stream)
    for epoch in range(100):
        callback.on_epoch_end(epoch, 1.0 / (epoch + 1), None)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 100 and lines[0] == "Epoch: 0 Cost: 1" and lines[-1].startswith("Epoch: 99 ")
    stream = io.StringIO()
    callback = PrintProgress(10_000, stream=stream)
    for epoch in range(10_000):
        callback.on_epoch_end(epoch, 2.0, None)
    lines = stream.getvalue().splitlines()
    assert 45 <= len(lines) <= 55 and lines[-1].startswith("Epoch: 9999 ")


def test_a_run_that_stops_early_prints_its_last_epoch():
    stream = io.StringIO()
    callback = PrintProgress(10_000, stream=stream)
    for epoch in range(137):
        callback.on_epoch_end(epoch, 3.0, None)
    callback.on_train_end()
    assert stream.getvalue().splitlines()[-1] == "Epoch: 136 Cost: 3"


def test_reporter_picks_lines_bar_or_nothing():
    with reporter(10, stream=io.StringIO()) as shown:
        assert len(shown) == 1 and isinstance(shown[0], PrintProgress)
    with reporter(10, stream=Terminal()) as shown:
        assert isinstance(shown[0], progress.BarProgress)
    with reporter(10, stream=Terminal(), quiet=True) as shown:
        assert shown == ()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_verbose_prints_the_tutorial_lines(capsys, tutorial):
    X, y = tutorial
    GDRegressor(verbose=1, epochs=20, tol=None).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 20 and lines[0] == "Epoch: 0 Cost: 30"
    GDRegressor(epochs=20).fit(X, y)
    assert capsys.readouterr().out == ""


# -- the live bar --------------------------------------------------------------------


def test_bar_shows_epochs_cost_and_rows_read(tmp_path):
    source = FileSource(write_csv(tmp_path / "d.csv", n=3000), target="y")
    terminal = Terminal()
    with reporter(40, stream=terminal, source=source) as shown:
        GDRegressor(engine="pass", epochs=40, tol=None).fit(source, callbacks=shown)
        assert "chunks" in vars(source)  # watched while the fit runs ...
    assert "chunks" not in vars(source)  # ... and left as it was
    text = terminal.getvalue()
    assert "40/40" in text and "cost" in text and "3000/3000" in text and "epochs/s" in text


def test_bar_is_closed_when_training_fails(tutorial):
    X, y = tutorial
    terminal = Terminal()
    with pytest.raises(ArithmeticError):
        with reporter(100, stream=terminal) as shown:
            GDRegressor(learning_rate=0.1, standardize=False, epochs=100, tol=None).fit(X, y, callbacks=shown)
    assert not shown[0].progress.live.is_started


def test_cli_shows_lines_when_not_on_a_terminal_and_nothing_when_quiet(tmp_path, capsys):
    data = str(write_csv(tmp_path / "d.csv", n=500))
    arguments = ["train", data, "--target", "y", "--epochs", "30", "--tol", "none"]
    assert main(arguments) == 0
    captured = capsys.readouterr()
    assert "Epoch: 0 Cost: " in captured.err and "Epoch: 29 Cost: " in captured.err
    assert "\x1b[" not in captured.err + captured.out  # no terminal codes
    assert main(arguments + ["--quiet"]) == 0
    assert "Epoch" not in capsys.readouterr().err


def test_cli_shows_a_live_bar_on_a_terminal(tmp_path):
    data = str(write_csv(tmp_path / "d.csv", n=500))
    command = [sys.executable, "-m", "gradfit", "train", data, "--target", "y", "--epochs", "30", "--tol", "none"]
    controller, terminal = pty.openpty()
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True,
                               env=dict(os.environ, COLUMNS="120", TERM="xterm"))
    os.close(terminal)
    output = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 120)
        if not ready:
            break
        try:
            data_read = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not data_read:
            break
        output += data_read
    os.close(controller)
    assert process.wait(timeout=120) == 0
    text = output.decode("utf-8", "replace")
    assert "epochs" in text and "30/30" in text and "━" in text and "Epoch: 0" not in text
    assert "trained on 500 rows" in text


# -- Ctrl-C ----------------------------------------------------------------------------


class SendSigint:
    """A callback that presses Ctrl-C (SIGINT to this process) ``times`` times after epoch ``epoch``."""

    def __init__(self, epoch, times=1):
        self.epoch, self.times = epoch, times

    def on_epoch_end(self, epoch, cost, params):
        if epoch == self.epoch:
            for _ in range(self.times):
                signal.raise_signal(signal.SIGINT)


def test_ctrl_c_stops_at_the_end_of_the_epoch_and_keeps_the_parameters(capsys):
    X, y = make_regression(n=200, d=3, seed=1)
    before = signal.getsignal(signal.SIGINT)
    model = GDRegressor(epochs=1000, tol=None, standardize=False).fit(X, y, callbacks=[SendSigint(6)])
    assert signal.getsignal(signal.SIGINT) is before
    assert model.stop_reason_ == "interrupted" and model.n_iter_ == 7 and not model.converged_
    assert model.fit_report_["stop_reason"] == "interrupted" and "interrupted" in model.fit_report_["message"]
    assert "stopping at the end of this epoch" in capsys.readouterr().err
    # The same parameters as seven epochs run on purpose; the estimator is usable.
    seven = GDRegressor(epochs=7, tol=None, standardize=False).fit(X, y)
    np.testing.assert_allclose(model.coef_, seven.coef_, rtol=1e-13)
    assert model.predict(X[:3]).shape == (3,)


def test_second_ctrl_c_aborts_at_once():
    X, y = make_regression(n=100, d=2, seed=2)
    before = signal.getsignal(signal.SIGINT)
    model = GDRegressor(epochs=1000, tol=None)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, callbacks=[SendSigint(3, times=2)])
    assert signal.getsignal(signal.SIGINT) is before
    assert not hasattr(model, "coef_")


def test_interrupt_outside_the_main_thread_installs_nothing():
    import threading

    seen = {}

    def run():
        with Interrupt() as interrupt:
            seen["installed"] = bool(interrupt._previous)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == {"installed": False}


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_ctrl_c_on_the_command_line_writes_the_model_and_says_so(tmp_path):
    """The real thing: ``gradfit train`` in a subprocess, SIGINT while it trains."""
    data = str(write_csv(tmp_path / "d.csv", n=20_000, d=5))
    output = tmp_path / "model.json"
    command = [sys.executable, "-m", "gradfit", "train", data, "--target", "y", "--engine", "pass",
               "--epochs", "1000000", "--tol", "none", "-o", str(output)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Wait until training runs (the first epoch line), then press Ctrl-C.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if line.startswith("Epoch: 0 ") or not line:
                break
        assert line.startswith("Epoch: 0 "), "training never started"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "stopping at the end of this epoch" in err
    assert "stopped early" in err and "model.json" in err
    assert "interrupted" in out and "model written to" in out
    model = load(output)
    assert model.stop_reason_ == "interrupted" and 1 <= model.n_iter_ < 1_000_000
    assert model.fit_report_["stop_reason"] == "interrupted"
    assert model.predict(np.zeros((1, 5))).shape == (1,)
