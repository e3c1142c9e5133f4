"""What a data file is, and whether it is still the file training started on.

* :func:`sniff_csv` looks at the first bytes of a file named as CSV: compressed
  data (gzip, bzip2, xz, zstd, zip), a Parquet file, or a header line longer
  than the reader's block are named for what they are, not reported as "an
  empty first line"; it returns the block size that holds the header.
* :class:`Stamps` records each data file's device, inode, size and
  modification time when the source opens, and :meth:`Stamps.check` (at the
  start and end of every pass) refuses a file replaced, rewritten, grown or
  truncated under a running fit: training on two versions of the data at once
  gives a model of neither.
"""

from __future__ import annotations

import os

from ..errors import DataError

#: pyarrow's CSV block: a row (or the header) longer than the block cannot be read
BLOCK_BYTES = 1 << 20
#: the longest header line read (the block grows to hold it, up to this)
MAX_HEADER_BYTES = 1 << 26

#: leading bytes of what is not CSV text, and what to call it
MAGIC = (
    (b"\x1f\x8b", "gzip-compressed data", True),
    (b"BZh", "bzip2-compressed data", False),
    (b"\xfd7zXZ\x00", "xz-compressed data", False),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data", False),
    (b"PK\x03\x04", "a zip archive", False),
    (b"PAR1", "a Parquet file", False),
)


def sniff_csv(path, describe):
    """Refuse compressed or binary data named as CSV; return the block size that holds the header.

    Parameters
    ----------
    path : str
        A file named ``.csv`` (or ``.tsv``, ``.txt``); ``.gz`` names are
        decompressed by pyarrow and only checked to be gzip.
    describe : str
        The file as messages name it (``"file 'x.csv'"``).

    Returns
    -------
    int
        pyarrow's ``block_size``: :data:`BLOCK_BYTES`, or twice the header
        line's length when that is longer.
    """
    compressed = path.lower().endswith(".gz")
    try:
        with open(path, "rb") as handle:
            start = handle.read(8)
            if compressed:
                if not start.startswith(b"\x1f\x8b"):
                    raise DataError(f"{describe} is named .gz but is not gzip-compressed data")
                return BLOCK_BYTES
            for magic, what, gzip in MAGIC:
                if start.startswith(magic):
                    advice = "name it .csv.gz (gradfit decompresses that)" if gzip else "decompress it first"
                    if what == "a Parquet file":
                        advice = "name it .parquet"
                    raise DataError(f"{describe} is {what}, not CSV text: {advice}")
            handle.seek(0)
            header = _header_length(handle)
    except OSError:
        return BLOCK_BYTES  # pyarrow's own error names the problem
    if header is None:
        raise DataError(
            f"{describe}: the header line is longer than {MAX_HEADER_BYTES >> 20} MB; gradfit reads headers up to that"
        )
    return max(BLOCK_BYTES, 2 * header + 1024)


def _header_length(handle):
    """Bytes up to the first line break (quotes ignored: names rarely hold one), or None past the limit."""
    length = 0
    while length <= MAX_HEADER_BYTES:
        piece = handle.read(1 << 16)
        if not piece:
            return length
        end = piece.find(b"\n")
        if end >= 0:
            return length + end
        length += len(piece)
    return None


#: a gzip file's text is taken to be this many times its size (a typical ratio for numbers)
GZIP_RATIO = 5


def estimate_rows(path, header_bytes):
    """About how many data rows a CSV file holds: its size over the mean length of its first lines.

    The engine's cost model needs the rows before the first pass has counted
    them; assuming a huge number made ``engine="auto"`` build a d × d Gram
    for 20,000 columns and a hundred rows.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            sample = handle.read(header_bytes + (1 << 20))
    except OSError:
        return None
    if path.lower().endswith(".gz"):
        import gzip
        import io

        try:
            sample = gzip.GzipFile(fileobj=io.BytesIO(sample)).read(header_bytes + (1 << 20))
        except (OSError, EOFError):
            pass  # a truncated sample: what was decompressed is enough
        size *= GZIP_RATIO
    lines = sample.count(b"\n")
    if lines <= 1:
        return 1
    body = sample[sample.find(b"\n") + 1 :]
    per_row = max(1.0, len(body) / max(1, body.count(b"\n")))
    return max(1, int(size / per_row))


def _stamp(path):
    info = os.stat(path)
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


class Stamps:
    """The identity and state of every file of a data source, to notice a change during training.

    Parameters
    ----------
    paths : list of str
        The files read (a CSV file, or every Parquet file of a folder or glob).
    describe : str
        The source as messages name it.
    """

    def __init__(self, paths, describe):
        self.describe = describe
        self.stamps = {path: _stamp(path) for path in paths}

    def check(self):
        """Raise :class:`DataError` if a file was replaced, removed or rewritten since the source opened."""
        for path, (device, inode, size, mtime) in self.stamps.items():
            try:
                now = _stamp(path)
            except OSError:
                raise DataError(f"{self.describe}: {path!r} was removed during training; the fit stopped") from None
            if (now[0], now[1]) != (device, inode):
                what = "was replaced by another file"
            elif now[2] > size:
                what = f"grew from {size} to {now[2]} bytes"
            elif now[2] < size:
                what = f"shrank from {size} to {now[2]} bytes"
            elif now[3] != mtime:
                what = "was rewritten"
            else:
                continue
            raise DataError(
                f"{self.describe}: {path!r} {what} during training; the fit stopped rather than mix two "
                "versions of the data: train again on a file that does not change"
            )
