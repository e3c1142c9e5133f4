"""Training checkpoints: the whole state of a fit in one JSON file, and back.

A checkpoint holds what the training loop needs to go on exactly where it
stopped: parameters, optimizer state, the cost curve, the shuffling stream's
state, the step size, the standardization, and (for the statistics engine) the
sufficient statistics; plus a fingerprint of the data and the settings, so that
resuming against anything else is refused.

Arrays are stored as ``{"dtype": "<f8", "shape": [...], "base64": "..."}``:
their exact bytes, in a container with no code in it. Floats elsewhere are JSON
numbers, which Python writes and reads back bit for bit. Loading validates
every field and never executes anything; files are written atomically.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import sys

import numpy as np

from . import registry
from .errors import GradfitError
from .files_io import _first_line, _is_number, _show, atomic_write_text, load_json

FORMAT = "gradfit-checkpoint"
FORMAT_VERSION = 1
#: checkpoint files larger than this are refused before parsing
MAX_BYTES = 1 << 30
#: most JSON values a checkpoint may hold (arrays are one base64 string each;
#: the cost curve is the long list): counted before parsing
MAX_VALUES = 1 << 24
#: deepest nesting (the optimizer's state is a tree of tuples)
MAX_DEPTH = 64
#: dtypes an array in a checkpoint may have
ALLOWED_DTYPES = ("<f8", "<i8")
#: settings that may change between a run and its resumption
RESUMABLE_CHANGES = ("epochs", "verbose", "warm_start")


#: how far (relative) a saved learning_rate="auto" may lie above the resuming run's own estimate of 1/L
RATE_TOLERANCE = 1e-3


class CheckpointError(GradfitError, ValueError):
    """A checkpoint is damaged, foreign, or belongs to other data or settings."""


# -- arrays and trees -------------------------------------------------------------


def encode_array(array):
    array = np.ascontiguousarray(array)
    dtype = array.dtype.newbyteorder("<").str
    if dtype not in ALLOWED_DTYPES:
        array, dtype = array.astype("<f8"), "<f8"
    return {"dtype": dtype, "shape": list(array.shape), "base64": base64.b64encode(array.astype(dtype).tobytes()).decode()}


def decode_array(node, where):
    if not isinstance(node, dict) or set(node) != {"dtype", "shape", "base64"}:
        raise CheckpointError(f"{where}: not an encoded array")
    dtype, shape, data = node["dtype"], node["shape"], node["base64"]
    if dtype not in ALLOWED_DTYPES:
        raise CheckpointError(f"{where}: dtype {_show(dtype)} is not one of {', '.join(ALLOWED_DTYPES)}")
    if not (isinstance(shape, list) and len(shape) <= 2
            and all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 31 for n in shape)):
        raise CheckpointError(f"{where}: bad shape {_show(shape)}")
    if not isinstance(data, str):
        raise CheckpointError(f"{where}: array data must be a base64 string")
    # The declared size is checked against the text before anything is decoded
    # or allocated: a shape that would need terabytes is refused here.
    size = 8 * math.prod(shape)
    if len(data) != 4 * -(-size // 3):
        held = len(data) * 3 // 4 - data[-2:].count("=")
        raise CheckpointError(f"{where}: shape {shape} needs {size} bytes, but the data hold {held}")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raise CheckpointError(f"{where}: array data is not valid base64") from None
    if len(raw) != size:
        raise CheckpointError(f"{where}: {len(raw)} bytes do not make an array of shape {shape}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype[1:]).copy()


def encode_tree(node):
    """Optimizer state (nested tuples of ints, floats, arrays and None) as JSON."""
    if node is None or isinstance(node, (bool, int, float)) and not isinstance(node, np.generic):
        return node
    if isinstance(node, np.generic):
        return node.item()
    if isinstance(node, np.ndarray):
        return encode_array(node)
    if isinstance(node, tuple):
        return {"tuple": [encode_tree(child) for child in node]}
    raise TypeError(f"cannot checkpoint a {type(node).__name__}")


#: optimizer-state fields (of the NamedTuples in :mod:`gradfit.optimizers`) holding one value per
#: output, shape (k,); other arrays have the parameters' shape (n_params, k)
PER_OUTPUT_FIELDS = frozenset({"since_restart", "previous_beta", "initial_norm"})


def decode_tree(node, template, where="opt_state", *, params_shape=None, max_count=None, field=None, kind=None):
    """Rebuild a state shaped like ``template`` (``optimizer.init(params)``) from JSON.

    Every leaf is checked against what the optimizer's state declares
    (its NamedTuple annotations): an ``int`` counter is an integer in
    ``[0, max_count]`` (the steps taken so far), a ``float`` a finite number,
    an array finite and of the parameters' shape (or ``(k,)`` for the
    per-output fields), ``None`` only where the state may hold it.
    """
    if isinstance(template, tuple):
        if not isinstance(node, dict) or list(node) != ["tuple"] or not isinstance(node["tuple"], list):
            raise CheckpointError(f"{where}: expected a tuple")
        children = node["tuple"]
        if len(children) != len(template):
            raise CheckpointError(f"{where}: {len(children)} entries, the optimizer has {len(template)}")
        names = getattr(template, "_fields", None) or [None] * len(template)
        hints = getattr(type(template), "__annotations__", {})
        rebuilt = [
            decode_tree(c, t, f"{where}[{i}]", params_shape=params_shape, max_count=max_count, field=name,
                        kind=str(hints.get(name, "")) if name else None)
            for i, (c, t, name) in enumerate(zip(children, template, names))
        ]
        return type(template)._make(rebuilt) if hasattr(template, "_make") else tuple(rebuilt)
    kind = kind or ""
    if node is None:
        if kind and "None" not in kind:
            raise CheckpointError(f"{where}: null where the optimizer keeps {type(template).__name__}")
        return None
    if isinstance(node, dict):
        if isinstance(template, (int, float)) or (kind and "ndarray" not in kind):
            raise CheckpointError(f"{where}: an array where the optimizer keeps a number")
        array = decode_array(node, where)
        expected = template.shape if isinstance(template, np.ndarray) else None
        if expected is None and params_shape is not None:
            expected = (params_shape[1],) if field in PER_OUTPUT_FIELDS else tuple(params_shape)
        if expected is not None and array.shape != tuple(expected):
            raise CheckpointError(f"{where}: shape {array.shape}, expected {tuple(expected)}")
        if not np.all(np.isfinite(array)):
            raise CheckpointError(f"{where}: holds NaN or infinite values")
        return array
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise CheckpointError(f"{where}: unexpected {type(node).__name__}")
    if isinstance(template, np.ndarray) or "ndarray" in kind and "float" not in kind and "int" not in kind:
        raise CheckpointError(f"{where}: a number where the optimizer keeps an array")
    if isinstance(template, int) and not isinstance(template, bool) or kind == "int":
        if not isinstance(node, int) or node < 0 or (max_count is not None and node > max_count):
            limit = "" if max_count is None else f" up to {max_count} (the steps of the epochs in the cost curve)"
            raise CheckpointError(f"{where}: the step counter {_show(node)} must be an integer from 0{limit}")
        return node
    if not _is_number(node):
        raise CheckpointError(f"{where}: {_show(node)} is not a finite number")
    return float(node) if isinstance(node, int) else node


# -- fingerprints -------------------------------------------------------------------


def data_fingerprint(statistics, feature_names, target_names):
    """A hash of the data as the first pass saw it: names, counts and moments.

    Computed from the statistics every fit collects anyway, so checking it
    costs no extra pass; it changes with any value that changes a moment.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([list(feature_names), list(target_names), int(statistics.n_samples)]).encode())
    for array in (np.float64(statistics.sum_weights), statistics.mean, statistics.scatter_diagonal):
        digest.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
    return digest.hexdigest()


def comparable_settings(settings):
    return {k: v for k, v in settings.items() if k not in RESUMABLE_CHANGES}


# -- files --------------------------------------------------------------------------


def save(path, document):
    """Write a checkpoint document atomically."""
    atomic_write_text(path, json.dumps(document, allow_nan=False, separators=(",", ":")) + "\n")


def read(path):
    """Read and validate the envelope of a checkpoint; returns the document.

    Within the limits of :func:`gradfit.model.load_json`: at most
    :data:`MAX_BYTES` bytes, :data:`MAX_VALUES` values and :data:`MAX_DEPTH`
    levels; strict JSON; nothing in the file is ever executed.
    """
    path = os.fspath(path)
    document = load_json(path, what="checkpoint", max_bytes=MAX_BYTES, max_values=MAX_VALUES,
                         max_depth=MAX_DEPTH, error=CheckpointError)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{path!r} is not a gradfit checkpoint")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path!r}: format version {_show(version)} is not one this gradfit reads")
    for key, kind in (("settings", dict), ("fingerprint", str), ("loss_curve", list), ("params", dict)):
        if not isinstance(document.get(key), kind):
            raise CheckpointError(f"checkpoint {path!r}: {key!r} is missing or of the wrong type")
    if not all(_is_number(v) for v in document["loss_curve"]):
        raise CheckpointError(f"checkpoint {path!r}: 'loss_curve' must hold finite numbers")
    return document


# -- training integration -----------------------------------------------------------


def encode_rng(rng):
    """A NumPy Generator's state as JSON (ints and strings only), or None."""
    return None if rng is None else rng.bit_generator.state


def decode_rng(state, where="rng"):
    """Rebuild the Generator a checkpoint saved (PCG64 only: the one gradfit uses)."""
    if state is None:
        return None
    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
        raise CheckpointError(f"{where}: not a PCG64 generator state")
    inner = state.get("state")
    numbers = [inner.get("state"), inner.get("inc")] if isinstance(inner, dict) else [None]
    numbers += [state.get("has_uint32"), state.get("uinteger")]
    limits = [1 << 128, 1 << 128, 2, 1 << 32]  # state, inc, has_uint32 (a flag), uinteger (32 bits)
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < limit for n, limit in zip(numbers, limits)):
        raise CheckpointError(
            f"{where}: generator state must be integers below 2**128 (state, inc), 0 or 1 (has_uint32) "
            "and below 2**32 (uinteger)"
        )
    generator = np.random.Generator(np.random.PCG64())
    try:
        generator.bit_generator.state = state
    except (ValueError, TypeError, OverflowError) as exc:
        raise CheckpointError(f"{where}: not a PCG64 generator state ({_first_line(exc)})") from None
    return generator


def encode_statistics(statistics):
    """The sufficient statistics (the statistics engine's whole view of the data)."""
    return {
        "n_features": statistics.n_features,
        "n_outputs": statistics.n_outputs,
        "n_samples": statistics.n_samples,
        "sum_weights": statistics.sum_weights,
        "mean": encode_array(statistics.mean),
        "scatter": None if statistics.scatter is None else encode_array(statistics.scatter),
        "scatter_diagonal": encode_array(statistics.scatter_diagonal),
    }


class Checkpointer:
    """A training callback that writes the whole state every ``every`` epochs.

    Parameters
    ----------
    path : str
        Where the checkpoint goes (written atomically: a crash leaves the
        previous checkpoint whole).
    every : int
        Epochs between checkpoints; the last epoch is always written.
    header : dict
        What does not change during training: settings, fingerprint,
        standardization, step size, statistics (see :func:`header`).
    """

    wants_state = True

    def __init__(self, path, every, header):
        self.path = os.fspath(path)
        self.every = int(every)
        self.header = header
        self._pending = None
        self._warned = False

    def on_epoch_end(self, epoch, cost, params, *, opt_state, loss_curve, rng):
        self._pending = (params, opt_state, list(loss_curve), encode_rng(rng))
        if (epoch + 1) % self.every == 0:
            self._write()

    def on_train_end(self):
        self._write()

    def _write(self):
        if self._pending is None:
            return
        params, opt_state, curve, rng = self._pending
        document = dict(self.header)
        document.update(
            {"loss_curve": curve, "params": encode_array(params), "opt_state": encode_tree(opt_state), "rng": rng}
        )
        try:
            save(self.path, document)
        except OSError as exc:
            # Its folder removed, the disk full: the fit itself is not lost for that,
            # so training goes on (the model is still written at the end), and says so once.
            if not self._warned:
                self._warned = True
                print(f"gradfit: warning: checkpoint {self.path!r} cannot be written "
                      f"({exc.strerror or exc}); training goes on without it", file=sys.stderr)
        self._pending = None


def header(settings, fingerprint, scaling, learning_rate, statistics, engine):
    """The unchanging part of a checkpoint document."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "settings": settings,
        "fingerprint": fingerprint,
        "engine": engine,
        "learning_rate": learning_rate,
        "scaling": {"center": encode_array(scaling.center), "scale": encode_array(scaling.scale)},
        "statistics": encode_statistics(statistics) if statistics.scatter is not None else None,
    }


def check_compatible(document, path, settings, fingerprint):
    """Refuse to resume ``document`` against other settings or other data."""
    saved = comparable_settings(document["settings"])
    now = comparable_settings(settings)
    for name, param in registry.owned_params().items():
        # a part's parameter added after the checkpoint was written: it ran at the default
        if name not in saved and name in now:
            saved[name] = param.default
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if changed:
        name = changed[0]
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} was made with {name}={saved.get(name)!r}, not "
            f"{now.get(name)!r}; resume with the same settings (only epochs may change)"
        )
    if document["fingerprint"] != fingerprint:
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} was made on other data (its fingerprint differs): "
            "resume on the same data, or start afresh"
        )


def restore(document, path, params_shape, *, uses_rate=True, expected_rate=None, minibatches=None, engine=None):
    """``(params, loss_curve, rng, learning_rate)`` from a checked checkpoint document.

    Every field is checked for type, range and consistency with the others and
    with the run that resumes it: finite parameters of the model's shape, a
    cost curve of finite non-negative costs no longer than the epochs it was
    made with, a positive finite step size (``null`` only for ``cg``, which has
    none), a generator state exactly when minibatches are shuffled, the
    engine that made it. Anything else is a damaged checkpoint, and said so.
    """
    where = f"checkpoint {os.fspath(path)!r}"
    try:
        return _restore(document, where, params_shape, uses_rate, expected_rate, minibatches, engine)
    except CheckpointError as exc:
        text = str(exc)
        if text.startswith(where) and "damaged" not in text:
            text = f"{where} is damaged: {text[len(where):].lstrip(': ')}"
        raise CheckpointError(text) from None


def _restore(document, where, params_shape, uses_rate, expected_rate, minibatches, engine):
    params = decode_array(document["params"], f"{where}: params")
    if params.shape != tuple(params_shape):
        raise CheckpointError(f"{where}: params of shape {params.shape}, the model needs {tuple(params_shape)}")
    if not np.all(np.isfinite(params)):
        raise CheckpointError(f"{where}: the parameters hold NaN or infinite values")
    fingerprint = document["fingerprint"]
    if len(fingerprint) != 64 or any(c not in "0123456789abcdef" for c in fingerprint):
        raise CheckpointError(f"{where}: 'fingerprint' is not a SHA-256 digest")
    epochs = document["settings"].get("epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise CheckpointError(f"{where}: settings 'epochs' is {_show(epochs)}, not a positive integer")
    curve = list(document["loss_curve"])
    if len(curve) > epochs:
        raise CheckpointError(f"{where}: a cost curve of {len(curve)} epochs, but it was made to run {epochs}")
    if any(cost < 0 for cost in curve):
        raise CheckpointError(f"{where}: 'loss_curve' holds a negative cost")
    rate = document.get("learning_rate")
    if not uses_rate:
        if rate is not None:
            raise CheckpointError(f"{where}: 'learning_rate' must be null for an optimizer without a step size")
    elif not _is_number(rate) or not rate > 0:
        raise CheckpointError(f"{where}: 'learning_rate' is {_show(rate)}, not a positive finite number")
    elif expected_rate is not None and not rate <= expected_rate * (1 + RATE_TOLERANCE):
        # A given --lr is saved as it is; "auto" as 1/L, which the resuming run has just
        # estimated again (to within the Lanczos estimate's rounding): a larger one is no 1/L.
        raise CheckpointError(
            f"{where}: 'learning_rate' {rate:.6g} is not the step size this run uses ({expected_rate:.6g})"
        )
    rng = decode_rng(document.get("rng"), f"{where}: rng")
    if minibatches is not None and (rng is not None) != minibatches:
        raise CheckpointError(
            f"{where}: " + ("no generator state for shuffling minibatches" if minibatches
                            else "a generator state, but full-batch training shuffles nothing")
        )
    if engine is not None and document.get("engine") != engine:
        saved = document.get("engine")
        engines = [name for name, part in registry.ENGINES.items() if part.build is not None]
        if saved not in engines:
            raise CheckpointError(f"{where}: 'engine' is {_show(saved)}, not {' or '.join(map(repr, engines))}")
        raise CheckpointError(
            f"{where} was made with engine {saved!r}, not {engine!r}; resume with --engine {saved}"
        )
    _check_scaling(document.get("scaling"), where, params_shape)
    return params, curve, rng, rate


def _check_scaling(scaling, where, params_shape):
    if not isinstance(scaling, dict) or set(scaling) != {"center", "scale"}:
        raise CheckpointError(f"{where}: 'scaling' must hold 'center' and 'scale'")
    for key in ("center", "scale"):
        array = decode_array(scaling[key], f"{where}: scaling {key}")
        if array.ndim != 1 or not np.all(np.isfinite(array)) or (key == "scale" and not np.all(array > 0)):
            raise CheckpointError(f"{where}: scaling {key} must be finite numbers (scales positive), one per feature")
