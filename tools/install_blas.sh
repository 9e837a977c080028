#!/bin/sh
# Install Debian/Ubuntu's pthread OpenBLAS when it is missing (MLX's CPU backend loads it, see
# mlx_audio_stack/_blas.py) and say what happened: already there, installed, or failed (why).
# Needs root or password-less sudo; otherwise says how and goes on. BLAS_PATHS (space-separated)
# overrides the libraries looked for (the tests use it).
PKG=libopenblas0-pthread
PATHS=${BLAS_PATHS:-"/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3
/usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3
/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3
/usr/lib/aarch64-linux-gnu/openblas-openmp/libblas.so.3"}
found() {
  for f in $PATHS; do
    [ -e "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}
if f=$(found); then echo "OpenBLAS: already installed ($f)"; exit 0; fi
command -v apt-get >/dev/null 2>&1 || {
  echo "OpenBLAS: not found and no apt-get: install an OpenBLAS and set MAS_BLAS=/path/to/libblas.so"
  exit 0
}
if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "OpenBLAS: not installed (needs root): run 'sudo apt-get install $PKG'"
  exit 0
fi
LOG=$(mktemp)
echo "OpenBLAS: installing $PKG with apt-get"
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $PKG >"$LOG" 2>&1 || {
  # an out-of-date package list is the usual cause: update it once and try again
  $SUDO apt-get update -q >>"$LOG" 2>&1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $PKG >>"$LOG" 2>&1
}
if f=$(found); then
  echo "OpenBLAS: installed ($f)"
else
  why=$(grep -E '^(E|W):' "$LOG" | tail -n 1)
  [ -n "$why" ] || why=$(tail -n 1 "$LOG")
  echo "OpenBLAS: apt-get install $PKG failed (${why:-no output}); MLX will run with its slow BLAS"
fi
rm -f "$LOG"
exit 0
