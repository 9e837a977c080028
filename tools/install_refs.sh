#!/bin/sh
# Install the PyTorch reference implementations used by parity tests and benchmarks.
# torch is pinned (requirements/constraints.txt): an unpinned torch pulls GBs of CUDA packages.
# requirements/ref-*.txt install normally; requirements/ref-*.nodeps.txt with --no-deps (packages
# whose declared dependencies are GPU-only or pinned to old versions we do not need).
# Order matters: the normal files go first, in one resolver run, and the --no-deps packages
# last. pip checks the declared dependencies of what is already installed after every normal
# install, so a --no-deps package installed earlier made each later install print an "ERROR:
# pip's dependency resolver ..." block about the dependencies we leave out on purpose.
set -e
PIP=${1:-pip}
C=requirements/constraints.txt
NORMAL=""
NODEPS=""
for f in requirements/ref-*.txt; do
  case "$f" in
    *.nodeps.txt) NODEPS="$NODEPS -r $f" ;;
    *) NORMAL="$NORMAL -r $f" ;;
  esac
done
# shellcheck disable=SC2086  # word splitting of the -r lists is intended
$PIP install -q -c $C torch==2.13.0 $NORMAL
# shellcheck disable=SC2086
$PIP install -q -c $C --no-deps $NODEPS
