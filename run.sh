#!/usr/bin/env bash
# One entry point that also sets everything up on a fresh machine:
#   bash run.sh demo [--data DIR] [--out DIR]   explain a classifier end to end, write WAVs and a report
#   bash run.sh test [pytest args]              the test suite (what CI runs)
#   bash run.sh bench [args]                    the evaluation benchmark (benchmarks/esc10.py; --quick: < 10 min)
#   bash run.sh cli [args]                      the nmfinterp command line (fit, explain, report, bench)
#   bash run.sh docs                            build the documentation into docs/_build/html
set -euo pipefail
cd "$(dirname "$0")"

setup() {
  if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    # torch first, pinned to the CPU wheel: an unpinned torch pulls a multi-GB CUDA build.
    .venv/bin/pip install -q torch==2.13.0
    .venv/bin/pip install -q -e ".[test]"
    touch .venv/.installed
  fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  demo) setup; exec .venv/bin/python -m nmfinterp.demo "$@" ;;
  test) setup; exec .venv/bin/python -m pytest "$@" ;;
  bench) setup; exec .venv/bin/python benchmarks/esc10.py "$@" ;;
  cli) setup; exec .venv/bin/nmfinterp "$@" ;;
  docs) setup; exec .venv/bin/python -m sphinx -W -b html docs docs/_build/html ;;
  *) echo "usage: bash run.sh {demo|test|bench|cli|docs} [args]" >&2; exit 2 ;;
esac
