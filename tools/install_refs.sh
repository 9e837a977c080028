#!/bin/sh
# Install the PyTorch reference implementations used by parity tests and benchmarks.
# torch is pinned (requirements/constraints.txt): an unpinned torch pulls GBs of CUDA packages.
# requirements/ref-*.txt install normally; requirements/ref-*.nodeps.txt with --no-deps (packages
# whose declared dependencies are GPU-only or pinned to old versions we do not need).
set -e
PIP=${1:-pip}
C=requirements/constraints.txt
$PIP install -q -c $C torch==2.13.0
for f in requirements/ref-*.txt; do
  case "$f" in
    *.nodeps.txt) $PIP install -q -c $C --no-deps -r "$f" ;;
    *) $PIP install -q -c $C -r "$f" ;;
  esac
done
