"""Training callbacks that show progress (the tutorial's ``Epoch: i Cost: c`` lines)."""

from __future__ import annotations

import sys


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

    def _print(self, epoch, cost):
        print(f"Epoch: {epoch} Cost: {cost:.10g}", file=self.stream or sys.stdout, flush=True)
