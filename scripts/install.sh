#!/usr/bin/env bash
# Installs everything edgecomp needs on a fresh Debian 12 machine (run as root or with sudo):
# the Arm cross compiler + newlib, QEMU (system and aarch64 user mode), OpenSSH (deploy tests), CMake
# (the bundle's CMakeLists.txt is built in the tests),
# then the Python package with its pinned dependencies (torch 2.13.0, CPU build).
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES="gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm qemu-user-static openssh-server openssh-client rsync make gcc cmake"
missing=""
for p in $DEB_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PY=${PYTHON:-python3}
# torch first and pinned: a bare `torch` would pull a multi-GB CUDA build
$PY -m pip install -q --disable-pip-version-check "torch==2.13.0"
$PY -m pip install -q --disable-pip-version-check ".[test]"
echo "edgecomp installed: $($PY -c 'import edgecomp; print(edgecomp.__version__)')"
