"""Checking, before any work, that no output lands on an input or on another output.

A command names its files as ``(flag, path)`` pairs: the outputs it will
write (``-o``, ``--report``, ``--checkpoint``, each plot of ``--plot``, …) and
the inputs it will read (DATA, MODEL, ``--resume``). :func:`check_outputs`
resolves every one of them (symbolic links followed to their real path, hard
links told by device and inode) and refuses, with one line naming both flags:

* an output that is an input file, counting every file inside a DATA folder
  or matched by a DATA glob (:func:`gradfit.sources.files.data_files`), and an
  output that would become one (a Parquet name inside a DATA folder, a name the
  DATA glob matches);
* two outputs that are the same file (a model overwritten by a report);
* an output that is a folder, or whose folder does not exist.

Special files (character devices such as ``/dev/null``, FIFOs, ``/dev/stdout``)
are streams, written through and never replaced (:mod:`gradfit.files_io`), so
they are exempt. The one allowed overlap, the documented one, is a
``--checkpoint`` on the ``--resume`` file it goes on from (:data:`ALLOWED`).
"""

from __future__ import annotations

import os

from .errors import GradfitError
from .files_io import is_special

#: (output flag, input flag) pairs that may name the same file: checkpointing over the checkpoint resumed
ALLOWED = {("--checkpoint", "--resume")}


class PathClash(GradfitError):
    """An output would replace an input or another output."""


def identity(path):
    """``(real path, (st_dev, st_ino) or None)``: what tells two names of one file apart from two files."""
    real = os.path.normcase(os.path.realpath(path))
    try:
        info = os.stat(real)
    except OSError:
        return real, None
    return real, (info.st_dev, info.st_ino)


def same_file(a, b):
    """Whether identities ``a`` and ``b`` (from :func:`identity`) are one file."""
    return a[0] == b[0] or (a[1] is not None and a[1] == b[1])


def check_output_path(flag, path):
    """Refuse an output that is a folder or whose folder does not exist (one line naming ``flag``)."""
    if is_special(path):
        return
    if os.path.isdir(path):
        raise PathClash(f"{flag} {path!r}: cannot write it, it is a folder")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise PathClash(f"{flag} {path!r}: cannot write it, folder {folder!r} does not exist")


def check_outputs(outputs, inputs, data_flags=("DATA",), folder_flags=("--plot",)):
    """Refuse any output that lands on an input or on another output, before any work.

    Parameters
    ----------
    outputs : list of (str, str or None)
        ``(flag, path)`` of every file the command will write; ``None`` paths
        (flags not given) are skipped. A new output flag is one more pair.
    inputs : list of (str, str or None)
        ``(flag, path)`` of every file the command reads. For the flags in
        ``data_flags`` the path is a data set: a file, a folder or a glob,
        expanded to the files it reads.
    folder_flags : tuple of str
        Output flags whose folder the command creates (``--plot DIR``): their
        folder need not exist yet.

    Raises
    ------
    PathClash
        One line naming both flags and both paths.
    """
    from .sources.files import data_files, data_would_read

    outputs = [(flag, os.fspath(path)) for flag, path in outputs if path is not None]
    inputs = [(flag, os.fspath(path)) for flag, path in inputs if path is not None]
    for flag, path in outputs:
        if flag not in folder_flags or os.path.isdir(os.path.dirname(os.path.abspath(path))):
            check_output_path(flag, path)
    streams = {path for _, path in outputs if is_special(path)}
    outputs = [(flag, path, identity(path)) for flag, path in outputs if path not in streams]
    for flag, path in inputs:
        is_data = flag in data_flags
        files = data_files(path) if is_data else [path]
        known = [(name, identity(name)) for name in files if os.path.exists(name)]
        for out_flag, out_path, out_id in outputs:
            if (out_flag, flag) in ALLOWED:
                continue
            for name, name_id in known:
                if same_file(out_id, name_id):
                    source = flag if name == path else f"{flag} {path!r}"
                    raise PathClash(
                        f"{out_flag} {out_path!r} would overwrite the input file {name!r} ({source}): "
                        f"choose another path for {out_flag}"
                    )
            if is_data and data_would_read(path, out_path):
                raise PathClash(
                    f"{out_flag} {out_path!r} would be read as data by {flag} {path!r} next time: "
                    f"choose a path outside it for {out_flag}"
                )
    for i, (flag, path, path_id) in enumerate(outputs):
        for other_flag, other_path, other_id in outputs[:i]:
            if same_file(path_id, other_id):
                raise PathClash(
                    f"{flag} {path!r} and {other_flag} {other_path!r} are the same file: "
                    "one output would overwrite the other; give them different paths"
                )

