"""Watching training run, and stopping it cleanly with Ctrl-C.

Both are training-loop callbacks (``on_epoch_end(epoch, cost, params)``, see
:func:`gradfit.train.train`), used alike by the estimator (``verbose``) and the
command line:

* :func:`reporter` picks how progress is shown: on a terminal a live bar
  (rich: epoch, cost, epochs per second, time left, and rows read for a file
  source); elsewhere (a pipe, a log file, a notebook's captured output) the
  tutorial's ``Epoch: i Cost: c`` lines, thinned for long runs; nothing when quiet.
* :class:`Interrupt` turns the first Ctrl-C during a fit into a request to stop
  at the end of the current epoch, so the parameters reached so far are kept
  (``stop_reason="interrupted"``); a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
import time

#: seconds between redraws of the live bar: at most 10 a second, drawn by the
#: fit's own thread between epochs or chunks (a redraw costs rich about 2 ms:
#: one every epoch of a 60 µs epoch, or rich's own refresh thread contending
#: for the GIL, made a fit 4 times slower)
REFRESH_SECONDS = 0.1


def thinning(epochs, lines=50):
    """Print every epoch of runs up to 100 epochs (the tutorial's), about ``lines`` lines of longer ones."""
    return 1 if epochs <= 100 else max(1, epochs // lines)


class PrintProgress:
    """Print ``Epoch: i Cost: c`` every ``every`` epochs (and the last), to ``stream``."""

    def __init__(self, epochs, every=None, stream=None):
        self.epochs = epochs
        self.every = every or thinning(epochs)
        self.stream = stream

    def on_epoch_end(self, epoch, cost, params):
        self.last = (epoch, cost)
        if epoch % self.every == 0 or epoch == self.epochs - 1:
            self._print(epoch, cost)
            self.last = None

    def on_train_end(self):
        """Print the last epoch if thinning skipped it (training stopped early)."""
        if getattr(self, "last", None) is not None:
            self._print(*self.last)
            self.last = None

    def _print(self, epoch, cost):
        if getattr(self, "broken", False):
            return
        try:
            print(f"Epoch: {epoch} Cost: {cost:.10g}", file=self.stream or sys.stdout, flush=True)
        except (BrokenPipeError, ValueError):
            # The reader went away (``| head``) or the stream was closed: the progress
            # stops, the training does not.
            self.broken = True


class BarProgress:
    """A live progress bar on a terminal (rich); use as a context manager around the fit.

    One row for the epochs (done/total, the last cost, epochs per second, time
    left) and, when ``source`` is given, one for the rows read in the current
    pass over it (the statistics pass, or every epoch of the pass engine).
    """

    def __init__(self, epochs, stream, source=None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.epochs = epochs
        self.source = source
        self.progress = Progress(
            TextColumn("{task.description:<7}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            _rate_column(),
            TimeRemainingColumn(),
            console=Console(file=stream),
            auto_refresh=False,  # redrawn by _show, at most every REFRESH_SECONDS
        )
        self.done = 0
        self.cost = None
        self.shown = 0.0
        self.rows_task = None
        self.pass_rows = 0  # rows read in the current pass
        self.rows_read = 0  # ... and in all passes, for the rows per second
        self.started = None

    def __enter__(self):
        self.progress.start()
        self.started = time.monotonic()
        if self.source is not None:
            self.rows_task = self.progress.add_task(
                "rows", total=self.source.n_samples, info="", unit="rows", rate=None
            )
            self._restore = _watch_chunks(self.source, self._on_chunk)
        self.epoch_task = self.progress.add_task("epochs", total=self.epochs, info="", unit="epochs", rate=None)
        return self

    def __exit__(self, *exc):
        if self.rows_task is not None:
            self._restore()
        self._show()
        self.progress.stop()
        return False

    def _on_chunk(self, chunk):
        """Count the rows read; the bar shows them at its next redraw (rich's reset redraws at once)."""
        if chunk is None:  # the pass ended: a CSV's row count is known from now on
            self.pass_total = self.source.n_samples or self.pass_rows
            self.pass_rows = self.pass_total
            return
        if chunk.start == 0:  # a new pass over the source
            self.pass_rows = 0
        self.pass_rows += chunk.n_rows
        self.rows_read += chunk.n_rows
        self._maybe_show()

    def on_epoch_end(self, epoch, cost, params):
        self.done += 1
        self.cost = cost
        self._maybe_show()

    def on_train_end(self):
        """Training ended before ``epochs`` (converged, or Ctrl-C): the bar ends full, not frozen mid-way."""
        self.progress.update(self.epoch_task, total=max(self.done, 1))

    def _maybe_show(self):
        now = time.monotonic()
        if now - self.shown >= REFRESH_SECONDS:
            self.shown = now
            self._show()

    def _show(self):
        info = "" if self.cost is None else f"cost {self.cost:.6g}"
        elapsed = time.monotonic() - self.started
        # Rates of our own: rich's come from the samples of its updates, which
        # the throttle makes too few in a short fit.
        self.progress.update(self.epoch_task, completed=self.done, info=info,
                             rate=self.done / elapsed if self.done and elapsed > 0 else None)
        if self.rows_task is not None:
            total = self.source.n_samples or getattr(self, "pass_total", None)
            self.progress.update(self.rows_task, completed=self.pass_rows, total=total,
                                 rate=self.rows_read / elapsed if elapsed > 0 else None)
        self.progress.refresh()


def _rate_column():
    """A rich column: items per second in the task's unit (rich is imported only for a bar)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second, in the task's own unit (epochs/s, rows/s)."""

        def render(self, task):
            # BarProgress's own rate (the rows' bar restarts every pass, which rich's speed cannot follow)
            speed = task.fields.get("rate") or task.finished_speed or task.speed
            return Text("" if not speed else f"{speed:,.0f} {task.fields['unit']}/s", style="progress.data.speed")

    return RateColumn()



def _watch_chunks(source, on_chunk):
    """Call ``on_chunk`` for every chunk ``source`` yields, and with ``None`` when a pass ends.

    Until the returned function is called, which undoes it.

    The engines read a source only through ``chunks()`` (directly or via
    ``reduce``), so shadowing that method on this one object, for the length of
    the fit, sees every row read without the engines knowing.
    """
    had_own = "chunks" in vars(source)
    original = source.chunks

    def chunks(*args, **kwargs):
        for chunk in original(*args, **kwargs):
            on_chunk(chunk)
            yield chunk
        on_chunk(None)

    source.chunks = chunks

    def restore():
        if had_own:
            source.chunks = original
        else:
            del source.chunks

    return restore


@contextlib.contextmanager
def reporter(epochs, *, stream=None, quiet=False, every=None, source=None):
    """The progress callbacks for one fit, as a context manager yielding a tuple.

    Parameters
    ----------
    epochs : int
        The most epochs the fit will run (the bar's total).
    stream : file, default sys.stdout
    quiet : bool
        Show nothing (yields an empty tuple).
    every : int, optional
        For the printed lines: every ``every`` epochs (default: :func:`thinning`).
    source : Source, optional
        A file source: the live bar also shows the rows read.
    """
    stream = stream or sys.stdout
    if quiet:
        yield ()
        return
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from .sources import FileSource

        with BarProgress(epochs, stream, source if isinstance(source, FileSource) else None) as bar:
            yield (bar,)
        return
    yield (PrintProgress(epochs, every=every, stream=stream),)


class PipeSafe:
    """A text stream whose reader may go away: after a broken pipe, writes are dropped, not raised.

    ``gradfit train … 2>&1 | head -2`` closes the pipe after two lines; the
    fit must still end and write its model, so what it prints afterwards goes
    nowhere instead of raising :class:`BrokenPipeError` out of the training.
    """

    def __init__(self, stream, escape=False):
        self._stream = stream
        self.broken = False
        self.escape = escape

    def write(self, text):
        if self.escape:
            text = CONTROLS.sub(_escaped, text)
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._break()
        return len(text)

    def flush(self):
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._break()

    def _break(self):
        self.broken = True
        # Python flushes the standard streams at exit and would meet the broken pipe
        # again: point the descriptor at /dev/null.
        try:
            fd = self._stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


#: control characters but line break and tab: ANSI escapes in a column name must not drive the terminal
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escaped(match):
    return f"\\x{ord(match.group()):02x}"


def _is_terminal(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


@contextlib.contextmanager
def pipe_safe():
    """``sys.stdout`` and ``sys.stderr`` as :class:`PipeSafe` streams while the block runs.

    On a terminal, control characters in what goes to stdout (a column named
    ``"\x1b[2J"``) are shown escaped (``\x1b``), never sent raw; in a pipe or a
    file (predictions as CSV) every byte is written as it is. stderr is left
    alone: the progress bar draws with escapes there, and messages quote names.
    """
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = PipeSafe(sys.stdout, escape=_is_terminal(sys.stdout)), PipeSafe(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


class Interrupt:
    """While active (``with``), Ctrl-C asks training to stop at the end of the epoch.

    A callback: :meth:`on_epoch_end` returns true once SIGINT has arrived, and
    the training loop then stops with ``stop_reason="interrupted"``, keeping the
    parameters of the last finished epoch. A second Ctrl-C raises
    ``KeyboardInterrupt`` at once (an epoch over a large file can be long).
    The previous handler is restored on exit. Outside the main thread, where
    Python cannot install signal handlers, it does nothing. ``signals`` are the
    signals that ask for the stop (SIGTERM too, when a checkpoint is kept, so
    that a stopped run leaves its last epoch on disk).
    """

    message = "gradfit: stopping at the end of this epoch (Ctrl-C again to abort now)"

    def __init__(self, stream=None, signals=(signal.SIGINT,)):
        self.stream = stream
        self.signals = tuple(signals)
        self.requested = False
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in self.signals:
                previous = signal.getsignal(number)
                # None: a handler installed from C, which could not be put back.
                if previous is not None:
                    signal.signal(number, self._handle)
                    self._previous[number] = previous
        return self

    def __exit__(self, *exc):
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous = {}
        return False

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        stream = self.stream or sys.stderr
        try:
            print(f"\n{self.message}", file=stream, flush=True)
        except (OSError, ValueError):  # a closed stream must not turn Ctrl-C into a crash
            pass

    def on_epoch_end(self, epoch, cost, params):
        return self.requested
