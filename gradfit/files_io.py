"""Files written so that nothing is lost, and JSON read so that nothing in it is trusted.

Shared by the model file (:mod:`gradfit.model`), checkpoints
(:mod:`gradfit.checkpoint`), plots and reports (:mod:`gradfit.report`) and
predictions:

* :func:`atomic_writer` writes a regular file through a temporary file in the
  same folder, renamed over the old one only when everything is written: a
  crash, an error or Ctrl-C leaves the old file whole. A symbolic link is
  followed and its *target* replaced, the link left in place. Special files are
  written through, never replaced: a character device (``/dev/null``, a
  terminal), a FIFO, or the process's own descriptors (``/dev/stdout``,
  ``/dev/stderr``, ``/dev/fd/N``) receive the output as a stream.
* Temporary files are named ``.gradfit-PID-XXXXXXXXXXXX.tmp``; one left by a
  process that no longer runs (``kill -9``, a power cut) is removed the next
  time gradfit writes into that folder.
* :func:`load_json` parses JSON within limits on size, count and depth, strict
  (no ``NaN``), with text checked to be Unicode.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import stat
import sys

#: names of gradfit's own temporary files: ``.gradfit-<pid>-<12 hex digits>.tmp``
TEMPORARY_NAME = re.compile(r"\.gradfit-(\d+)-[0-9a-f]{12}\.tmp")
#: the process's own descriptors, spelled as paths (written to the descriptor itself)
OWN_DESCRIPTOR = re.compile(r"/dev/(stdin|stdout|stderr)|/dev/fd/(\d+)|/proc/self/fd/(\d+)")
STANDARD_DESCRIPTORS = {"stdin": 0, "stdout": 1, "stderr": 2}


@contextlib.contextmanager
def atomic_writer(path, binary=False):
    """Open ``path`` for writing so that readers see the old file or the new one, never a part.

    Yields a text (or, with ``binary``, bytes) handle. For a regular file (or
    a new one) the handle is on a temporary file in the target's folder; when
    the ``with`` block ends normally it is flushed to disk and renamed over the
    target (``os.replace`` is atomic on POSIX and Windows). If the block
    raises, the temporary file is removed and ``path`` is left as it was. A
    symbolic link is followed: its target is replaced, the link kept.

    A special file is a stream, not a file to replace: a character device, a
    FIFO or one of this process's descriptors (``/dev/stdout``) is written
    through as the block writes (:func:`stream_target`).
    """
    path = os.fspath(path)
    target = stream_target(path)
    if target is not None:
        with _open_stream(target, binary) as handle:
            yield handle
        return
    given, path = path, os.path.realpath(path)  # a link's target is what gets replaced, not the link
    folder = os.path.dirname(path)
    try:
        handle, temp = _temporary_file(folder, _mode_for(path), binary)
    except OSError as exc:
        # Name the file asked for, not the temporary one nobody knows of.
        raise type(exc)(exc.errno, exc.strerror or str(exc), given) from None
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.replace(temp, path)
        except FileNotFoundError as exc:  # the folder went away while writing
            raise FileNotFoundError(exc.errno, exc.strerror, given) from None
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def recovery_path(path):
    """Where a file that cannot be written at ``path`` goes instead: a new name in the working folder.

    ``gradfit-recovered-NAME`` in the current folder if that can be written,
    else in the system's temporary folder; never an existing file.
    """
    import tempfile

    name = os.path.basename(os.fspath(path)) or "model.json"
    for folder in (os.getcwd(), tempfile.gettempdir()):
        if not os.access(folder, os.W_OK):
            continue
        stem, ext = os.path.splitext(f"gradfit-recovered-{name}")
        candidate, number = os.path.join(folder, stem + ext), 1
        while os.path.lexists(candidate):
            number += 1
            candidate = os.path.join(folder, f"{stem}-{number}{ext}")
        return candidate
    return None


def save_or_recover(save, path, what="model"):
    """``save(path)``; if that fails for want of its folder or room, ``save`` to :func:`recovery_path`.

    A finished fit is never lost to an output folder removed during training,
    a full disk or a permission changed meanwhile: the model goes to a new
    file, and the one-line error names both.

    Raises
    ------
    OSError
        With a message naming the recovery file (or saying there was none).
    """
    try:
        save(path)
        return path
    except OSError as exc:
        reason = exc.strerror or str(exc)
        spare = recovery_path(path)
        if spare is not None:
            try:
                save(spare)
            except OSError:
                spare = None
        where = f"the {what} was saved to {spare!r} instead" if spare else f"the {what} could not be saved anywhere"
        raise OSError(exc.errno, f"cannot write the {what} to {os.fspath(path)!r} ({reason}); {where}") from None


def stream_target(path):
    """What to write ``path`` through as a stream: a descriptor number, a path, or ``None``.

    ``None`` for a regular file, a folder or a path that does not exist yet
    (those are written atomically, or refused); an ``int`` for this process's
    own descriptors spelled as paths (``/dev/stdout``: writing to the
    descriptor keeps the shell's redirection, where replacing or truncating
    the file behind it would not); the path itself for any other special file
    (character device, FIFO, socket).
    """
    path = os.fspath(path)
    match = OWN_DESCRIPTOR.fullmatch(path)
    if match:
        name, fd, proc_fd = match.groups()
        return STANDARD_DESCRIPTORS[name] if name else int(fd or proc_fd)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return path


def is_special(path):
    """Whether ``path`` is written through as a stream (see :func:`stream_target`)."""
    return stream_target(path) is not None


@contextlib.contextmanager
def _open_stream(target, binary):
    if isinstance(target, int):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()  # what Python printed before must come first
            except (OSError, ValueError, AttributeError):
                pass
        fd = os.dup(target)
    else:
        # O_TRUNC would be refused by some devices and means nothing to a FIFO or terminal
        fd = os.open(target, os.O_WRONLY)
    handle = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="", encoding="utf-8")
    with handle:
        yield handle


def _mode_for(path):
    """The permissions the written file should get: those of the file it replaces, else the umask's.

    ``tempfile.mkstemp`` would make every output owner-only (0600), which is
    not what a user who writes a model or a CSV expects.
    """
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask():
    # The only portable way to read the umask is to set it and put it back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_name(folder):
    """A fresh name for one of gradfit's temporary files in ``folder`` (it names this process)."""
    return os.path.join(folder, f".gradfit-{os.getpid()}-{secrets.token_hex(6)}.tmp")


def remove_stale_temporaries(folder):
    """Remove gradfit's temporary files in ``folder`` left by processes that no longer run.

    Only names gradfit makes (:data:`TEMPORARY_NAME`) are touched, and only
    when the process they name is gone: another gradfit writing into the same
    folder keeps its file. Returns the paths removed.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = TEMPORARY_NAME.fullmatch(entry.name)
        if match is None or _running(int(match.group(1))):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(entry.path)
        except OSError:
            pass  # another process cleaned it first, or the folder is not ours to clean
    return removed


def _running(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # it exists (another user's), or cannot be told: keep the file
    return True


def _temporary_file(folder, mode, binary=False):
    """A new file ``.gradfit-PID-*.tmp`` in ``folder``, opened for writing; returns (handle, path)."""
    remove_stale_temporaries(folder)
    for _ in range(100):
        temp = temporary_name(folder)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            os.chmod(temp, mode)
            if binary:
                return os.fdopen(fd, "wb"), temp
            return os.fdopen(fd, "w", newline="", encoding="utf-8"), temp
        except BaseException:
            os.close(fd)
            os.unlink(temp)
            raise
    raise FileExistsError(f"no free temporary file name in {folder!r}")


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as handle:
        handle.write(text)


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, binary=True) as handle:
        handle.write(data)



def _reject_constant(name):
    # Python's json accepts NaN and Infinity, which are not JSON; gradfit never writes them.
    raise ValueError(f"{name} is not a JSON value")


def load_json(path, *, what, max_bytes, max_values, max_depth, error):
    """The parsed JSON of ``path``, within limits, or ``error(message)`` raised.

    Parameters
    ----------
    path : str
    what : str
        The kind of file for messages (``"model file"``, ``"checkpoint"``).
    max_bytes, max_values, max_depth : int
        Refused before parsing: a larger file, or more values than
        ``max_values`` (commas counted, an upper bound); after: nesting deeper
        than ``max_depth``. Parsing and every check are linear in the size.
    error : type
        The exception class to raise, with a one-line message.

    Strict JSON only: ``NaN``/``Infinity`` are refused, as are integers too long
    to convert and strings that are not Unicode text (lone surrogates).
    """
    name = f"{what} {path!r}"
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise error(f"{name}: {size} bytes is larger than the {max_bytes}-byte limit for {what}s")
        with open(path, "rb") as handle:
            # read(n) reserves n bytes up front: ask for the size found, not the limit
            data = handle.read(size + 1)
            if len(data) > size:  # it grew since: read on, up to the limit
                data += handle.read(max_bytes + 1 - len(data))
        if len(data) > max_bytes:
            raise error(f"{name}: larger than the {max_bytes}-byte limit for {what}s")
        text = data.decode("utf-8-sig")
        del data
        values = text.count(",") + 1
        if values > max_values:
            raise error(f"{name}: more than {max_values} values, the limit for {what}s")
        document = json.loads(text, parse_constant=_reject_constant)
    except FileNotFoundError:
        raise error(f"{name} not found") from None
    except IsADirectoryError:
        raise error(f"{name} is a folder, not a file") from None
    except RecursionError:
        raise error(f"{name} is nested too deeply") from None
    except UnicodeDecodeError:
        raise error(f"{name} is not valid JSON (not UTF-8 text)") from None
    except ValueError as exc:
        if isinstance(exc, error):
            raise
        # JSONDecodeError, NaN/Infinity, or an integer too long to convert
        raise error(f"{name} is not valid JSON ({_first_line(exc)})") from None
    except OSError as exc:
        raise error(f"{name} cannot be read ({exc.strerror or exc})") from None
    why = _check_tree(document, max_depth)
    if why:
        raise error(f"{name}: {why}")
    return document


def _check_tree(document, max_depth):
    """Why ``document`` is refused (too deep, or text that is not Unicode), or ``None``.

    Walks with an explicit stack of containers, not recursion: the depth is
    what is checked, so it must not be able to exhaust Python's stack.
    """
    stack = [(document, 1)] if isinstance(document, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return f"nested too deeply (more than {max_depth} levels)"
        if isinstance(node, dict):
            for key in node:
                if not _is_text(key):
                    return f"key {_show(key)} is not Unicode text"
            node = node.values()
        for value in node:
            if isinstance(value, (dict, list)):
                stack.append((value, depth + 1))
            elif isinstance(value, str) and not _is_text(value):
                return f"string {_show(value)} is not Unicode text"
    return None


def _is_text(value):
    """No lone surrogates (JSON's ``"\\ud800"``): such a name could not be printed or written."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__



def _is_number(value):
    """A finite JSON number (``bool`` is not one; an integer too large for a float is not finite)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False



def _show(value):
    """A short rendering of a JSON value for a message (never the whole of a big one)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list) and len(value) > 8:
        return f"a list of {len(value)} values"
    # json.dumps escapes what cannot be printed (lone surrogates, control characters)
    text = repr(value) if isinstance(value, float) else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


