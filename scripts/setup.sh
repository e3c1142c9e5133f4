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

# Chromium (Debian's package) for tests/test_report.py, which opens the HTML
# report in a real headless browser. Installed only for the test run, only when
# missing, and only where packages may be installed (root, or sudo without a
# password); elsewhere, or if the install fails, that test skips and says why.
if [ "$(basename "$0")" = "test" ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  as_root=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then as_root="sudo -n"; else as_root="no"; fi
  fi
  if [ "$as_root" != "no" ]; then
    echo "installing chromium for the HTML report test (first run only)..." >&2
    { $as_root apt-get update -qq && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2 \
      || echo "warning: could not install chromium; the report's browser test will be skipped" >&2
  fi
fi
