"""Dask arrays, dataframes and files: the chunks stay on the workers, partial sums come back.

One module a job:

* :mod:`~gradfit.sources.dask.source`: :class:`DaskSource`, the blocks and their reduction on the cluster;
* :mod:`~gradfit.sources.dask.tasks`: what runs on the workers for every block;
* :mod:`~gradfit.sources.dask.names`: :class:`SourceNames`, what of a source travels with its closures;
* :mod:`~gradfit.sources.dask.arrays`: dataframes, series and NumPy inputs as row-aligned Dask arrays;
* :mod:`~gradfit.sources.dask.categories`: which columns of a dataframe are categorical (by dtype);
* :mod:`~gradfit.sources.dask.frame_blocks`: a dataframe's levels and missing values found on the
  workers, its partitions encoded there (rows with gaps dropped, a column of many levels as codes);
* :mod:`~gradfit.sources.dask.file_blocks`: CSV and Parquet files read by the workers, through
  the file source's decoding (:mod:`gradfit.sources.decode`);
* :mod:`~gradfit.sources.dask.predict`: a model's predictions on Dask collections;
* :mod:`~gradfit.sources.dask.compute`: computing on a cluster, and its failures in one line;
* :mod:`~gradfit.sources.dask.connect`: ``--dask`` addresses and clients;
* :mod:`~gradfit.sources.dask.optional`: Dask imported only when used.

Dask is an optional dependency (``pip install gradfit[dask]``): none of these
modules imports it until a Dask source is made or a cluster is reached.
"""

from ...errors import ClusterError
from .compute import (
    ANSWER_TIMEOUT,
    NO_WORKERS_TIMEOUT,
    WATCH_SECONDS,
    cluster_failure,
    compute,
    no_workers_timeout,
)
from .connect import connect, parse_address
from .names import SourceNames
from .optional import INSTALL_HINT, MissingDependencyError, is_dask_collection, require
from .predict import predict_dask
from .source import BLOCK_BYTES, DaskSource
from .tasks import FAN_IN

__all__ = [
    "ANSWER_TIMEOUT",
    "BLOCK_BYTES",
    "FAN_IN",
    "INSTALL_HINT",
    "NO_WORKERS_TIMEOUT",
    "WATCH_SECONDS",
    "ClusterError",
    "DaskSource",
    "MissingDependencyError",
    "SourceNames",
    "cluster_failure",
    "compute",
    "connect",
    "is_dask_collection",
    "no_workers_timeout",
    "parse_address",
    "predict_dask",
    "require",
]
