#!/bin/sh
# Install Debian/Ubuntu's pthread OpenBLAS when it is missing (MLX's CPU backend loads it, see
# mlx_audio_stack/_blas.py). Needs root or password-less sudo; otherwise says how and goes on.
for f in /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 \
         /usr/lib/aarch64-linux-gnu/openblas-pthread/libblas.so.3; do
  [ -e "$f" ] && exit 0
done
command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install an OpenBLAS and set MAS_BLAS"; exit 0; }
if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "cannot install libopenblas0-pthread without root: run 'sudo apt-get install libopenblas0-pthread'"
  exit 0
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q libopenblas0-pthread >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q libopenblas0-pthread >/dev/null 2>&1 \
    || echo "apt-get install libopenblas0-pthread failed: MLX will run with its slow BLAS"
}
