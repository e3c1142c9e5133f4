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

import numpy as np

from .errors import GradfitError
from .files_io import _is_number, _show, atomic_write_text, load_json

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


def decode_tree(node, template, where="opt_state"):
    """Rebuild a state shaped like ``template`` (``optimizer.init(params)``) from JSON."""
    if isinstance(template, tuple):
        if not isinstance(node, dict) or list(node) != ["tuple"] or not isinstance(node["tuple"], list):
            raise CheckpointError(f"{where}: expected a tuple")
        children = node["tuple"]
        if len(children) != len(template):
            raise CheckpointError(f"{where}: {len(children)} entries, the optimizer has {len(template)}")
        rebuilt = [decode_tree(c, t, f"{where}[{i}]") for i, (c, t) in enumerate(zip(children, template))]
        return type(template)._make(rebuilt) if hasattr(template, "_make") else tuple(rebuilt)
    if node is None:
        return None
    if isinstance(node, dict):
        array = decode_array(node, where)
        if isinstance(template, np.ndarray) and array.shape != template.shape:
            raise CheckpointError(f"{where}: shape {array.shape}, expected {template.shape}")
        return array
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise CheckpointError(f"{where}: unexpected {type(node).__name__}")
    return node


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
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 128 for n in numbers):
        raise CheckpointError(f"{where}: generator state must be non-negative integers below 2**128")
    generator = np.random.Generator(np.random.PCG64())
    generator.bit_generator.state = state
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
        save(self.path, document)
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


def restore(document, path, params_shape):
    """``(params, loss_curve, rng, learning_rate)`` from a checked checkpoint document."""
    where = f"checkpoint {os.fspath(path)!r}"
    params = decode_array(document["params"], f"{where}: params")
    if params.shape != tuple(params_shape):
        raise CheckpointError(f"{where}: params of shape {params.shape}, the model needs {tuple(params_shape)}")
    rate = document.get("learning_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0):
        raise CheckpointError(f"{where}: 'learning_rate' must be a positive number or null")
    return params, list(document["loss_curve"]), decode_rng(document.get("rng"), f"{where}: rng"), rate
