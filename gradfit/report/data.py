"""What the predicted-against-actual and residual plots read: a sample of rows, predicted."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import predict

#: the most points a scatter plot shows; more only hide each other
MAX_POINTS = 5000


@dataclass
class PredictionSample:
    """Rows drawn uniformly from a source, with the model's predictions.

    ``actual`` and ``predicted`` have shape (n, n_outputs); ``n_rows`` is how
    many rows the source had.
    """

    actual: np.ndarray
    predicted: np.ndarray
    n_rows: int
    target_names: list

    @property
    def residuals(self):
        return self.actual - self.predicted


def sample_predictions(model, source, limit=MAX_POINTS, seed=0):
    """One pass over ``source``: up to ``limit`` rows, uniformly, predicted by ``model``.

    Parameters
    ----------
    model : fitted GDRegressor (anything with ``coef_`` and ``intercept_``)
    source : Source
        Rows with the model's features and targets.
    limit : int
    seed : int
        The draw is reproducible: the same rows every time.

    Rows are kept with probability ``limit / n_rows`` as they stream past
    (``n_rows`` known from training), so memory stays at about ``limit`` rows
    whatever the size of the data; a source of unknown length is thinned
    again whenever the sample grows past twice the limit.
    """
    known = source.n_samples or getattr(model, "n_samples_", None)
    keep = 1.0 if not known else min(1.0, limit / known)
    rng = np.random.default_rng(seed)
    actual, predicted, rows = [], [], 0
    for chunk in source.chunks():
        rows += chunk.n_rows
        chosen = rng.random(chunk.n_rows) < keep
        if not chosen.any():
            continue
        X = np.asarray(chunk.X[chosen], dtype=np.float64)
        codes = None if chunk.codes is None else chunk.codes[chosen]  # a column kept as level codes
        actual.append(chunk.y[chosen])
        predicted.append(predict(X, model.coef_, model.intercept_, codes, source.block_layout))
        if sum(len(a) for a in actual) > 2 * limit:
            keep /= 2
            actual, predicted = _thin(actual, predicted, rng)
    k = source.n_outputs
    actual = np.vstack(actual) if actual else np.empty((0, k))
    predicted = np.vstack(predicted) if predicted else np.empty((0, k))
    if len(actual) > limit:
        chosen = np.sort(rng.choice(len(actual), size=limit, replace=False))
        actual, predicted = actual[chosen], predicted[chosen]
    return PredictionSample(actual, predicted, rows, list(source.target_names))


def _thin(actual, predicted, rng):
    actual, predicted = np.vstack(actual), np.vstack(predicted)
    chosen = rng.random(len(actual)) < 0.5
    return [actual[chosen]], [predicted[chosen]]
