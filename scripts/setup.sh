# Sourced by scripts/demo and scripts/test: make .venv with gradfit and its
# test dependencies, once (again whenever pyproject.toml changes).
# Needs only python3 with pip and venv.
set -euo pipefail
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.gradfit-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setting up .venv (first run only)..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip >&2
  .venv/bin/python -m pip install --quiet -e ".[test,dask]" >&2
  touch "$stamp"
fi
