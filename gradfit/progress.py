"""Training callbacks that show progress (the tutorial's ``Epoch: i Cost: c`` lines)."""

from __future__ import annotations

import sys


def thinning(epochs, lines=20):
    """Print every epoch of short runs, about ``lines`` lines of long ones."""
    return 1 if epochs <= 2 * lines else max(1, epochs // lines)


class PrintProgress:
    """Print ``Epoch: i Cost: c`` every ``every`` epochs (and the last), to ``stream``."""

    def __init__(self, epochs, every=None, stream=None):
        self.epochs = epochs
        self.every = every or thinning(epochs)
        self.stream = stream

    def on_epoch_end(self, epoch, cost, params):
        if epoch % self.every == 0 or epoch == self.epochs - 1:
            print(f"Epoch: {epoch} Cost: {cost:.10g}", file=self.stream or sys.stdout, flush=True)
