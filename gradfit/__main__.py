"""``python -m gradfit`` and the ``gradfit`` command.

Ctrl-C can come at any moment, also while the command is still importing
NumPy, scikit-learn and the rest (a second or more): :func:`run` catches it
there too, so every interruption ends in one line and exit code 130, never a
traceback. Python may swallow a ``KeyboardInterrupt`` raised inside an
import's clean-up ("Exception ignored in …"), so the signal is also recorded,
and a run that saw one ends with 130 even if the exception was lost.
"""

import signal
import sys


class _Signals:
    """SIGINT raises ``KeyboardInterrupt`` as usual, and is remembered."""

    def __init__(self):
        self.seen = False

    def __call__(self, signum, frame):
        if self.seen:
            return  # the first one is being handled: one line, not a second traceback
        self.seen = True
        raise KeyboardInterrupt


def run(argv=None):
    """Entry point of the ``gradfit`` command; returns the exit code."""
    signals = _Signals()
    previous = None
    hook = sys.unraisablehook

    def unraisable(info):
        # A KeyboardInterrupt raised inside a clean-up that Python cannot propagate
        # (an import lock's callback): remembered, not printed as "Exception ignored".
        if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
            signals.seen = True
            return
        hook(info)

    sys.unraisablehook = unraisable
    try:
        try:
            try:
                previous = signal.signal(signal.SIGINT, signals)
            except ValueError:  # not the main thread: nothing to catch here
                pass
            from .cli import main
        except KeyboardInterrupt:
            return _interrupted()
        if signals.seen:
            return _interrupted()
        try:
            code = main(argv)
        except KeyboardInterrupt:  # between main's own handlers, e.g. while it returns
            return _interrupted()
        if signals.seen and code == 0:
            return _interrupted()
        return code
    finally:
        sys.unraisablehook = hook
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _interrupted():
    try:
        print("gradfit: interrupted", file=sys.stderr)
    except (OSError, ValueError):
        pass
    return 130


if __name__ == "__main__":
    try:
        sys.exit(run())
    except KeyboardInterrupt:
        sys.exit(_interrupted())
