"""Values a few parameters choose among, named once (standard library only).

The estimator's parameter table (:mod:`gradfit.parameters`) and the sources
that carry these choices out (:mod:`gradfit.sources.encoding`) both read them
here, so neither imports the other.
"""

#: what ``missing`` may be: stop at a missing value, or leave that row out
MISSING = ("error", "drop")
#: what ``handle_unknown`` may be: a level not seen in training is an error, or has no effect
HANDLE_UNKNOWN = ("error", "ignore")
