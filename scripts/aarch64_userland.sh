#!/usr/bin/env bash
# Prepare an aarch64 (arm64) Python 3.11 userland that runs under qemu-aarch64-static,
# to check a Raspberry Pi bundle without a Pi.
#
#   scripts/aarch64_userland.sh DEST [REQUIREMENTS]
#
# DEST/rootfs  arm64 Debian 12 debs (python3.11 + the C libraries it needs), unpacked with dpkg -x
# DEST/site    aarch64 manylinux wheels for CPython 3.11, unzipped (use it as PYTHONPATH)
# DEST/env.sh  prints how to run:  qemu-aarch64-static -L DEST/rootfs DEST/rootfs/usr/bin/python3.11 ...
#
# REQUIREMENTS is a pip requirements file (default: the numpy, onnxruntime and ai-edge-litert pins
# of edgecomp's Raspberry Pi bundles);
# the wheels are fetched with `pip download --platform manylinux_2_28_aarch64 --python-version 3.11
# --only-binary=:all:` (dependencies included, so the site matches `pip install -r` on a Pi).
#
# Idempotent: each step leaves a stamp in DEST and is skipped on the next run; a changed
# requirements file refreshes the site folder only.  Needs root (dpkg --add-architecture,
# apt-get update) the first time on a fresh Debian 12 machine; needs network access to the
# Debian mirror and PyPI the first time only.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 DEST [REQUIREMENTS]" >&2
  exit 2
fi
DEST=$(mkdir -p "$1" && cd "$1" && pwd)
REQ=${2:-}
PY=${PYTHON:-python3}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

# arm64 debs for python3.11 on Debian 12 (bookworm) and the shared libraries its stdlib and
# the numpy / onnxruntime wheels load (the wheels bring their own openblas; onnxruntime needs
# libstdc++ and libgcc_s).
DEBS="libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libzstd1
libcrypt1 libuuid1 libsqlite3-0 libncursesw6 libtinfo6 libreadline8 libdb5.3 libnsl2 libtirpc3
libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
python3.11-minimal libpython3.11-minimal libpython3.11-stdlib"

command -v qemu-aarch64-static >/dev/null || { echo "qemu-aarch64-static is missing: apt-get install qemu-user-static" >&2; exit 1; }

with_apt_lock() {  # other apt users on the machine: retry a few times on the lock
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    if "$@"; then return 0; fi
    echo "apt busy or failed, retrying ($i)..." >&2
    sleep 6
  done
  "$@"
}

# 1. arm64 package lists
if [ ! -f "$DEST/.stamp-apt" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
  fi
  if ! apt-cache show python3.11-minimal:arm64 >/dev/null 2>&1; then
    with_apt_lock $SUDO apt-get update -qq
  fi
  touch "$DEST/.stamp-apt"
fi

# 2. download and unpack the debs into DEST/rootfs
if [ ! -f "$DEST/.stamp-rootfs" ]; then
  mkdir -p "$DEST/debs"
  pkgs=""
  for p in $DEBS; do
    ls "$DEST/debs/${p}_"*_arm64.deb "$DEST/debs/${p}_"*_all.deb >/dev/null 2>&1 || pkgs="$pkgs $p:arm64"
  done
  if [ -n "$pkgs" ]; then
    # apt-get download writes into the current folder; it runs as the _apt user when root,
    # which needs write access
    chmod 0777 "$DEST/debs" 2>/dev/null || true
    (cd "$DEST/debs" && with_apt_lock apt-get download -q $pkgs)
  fi
  rm -rf "$DEST/rootfs.tmp"
  mkdir -p "$DEST/rootfs.tmp"
  for d in "$DEST"/debs/*.deb; do
    dpkg -x "$d" "$DEST/rootfs.tmp"
  done
  # Debian 12 is merged-/usr: the dynamic loader is looked up as /lib/ld-linux-aarch64.so.1
  for l in lib bin sbin; do
    if [ ! -e "$DEST/rootfs.tmp/$l" ]; then ln -s "usr/$l" "$DEST/rootfs.tmp/$l"; fi
  done
  test -x "$DEST/rootfs.tmp/usr/bin/python3.11"
  rm -rf "$DEST/rootfs"
  mv "$DEST/rootfs.tmp" "$DEST/rootfs"
  touch "$DEST/.stamp-rootfs"
fi

# 3. aarch64 wheels for CPython 3.11, unzipped into DEST/site
if [ -z "$REQ" ]; then
  REQ="$DEST/requirements.default.txt"
  # the pins of edgecomp's Raspberry Pi bundles (edgecomp/backends/rpi.py: NUMPY_PIN, ORT_PIN, LITERT_PIN)
  printf '%s\n' "numpy==2.2.6" "onnxruntime==1.27.0" "ai-edge-litert==2.3.0" > "$REQ.new"
  cmp -s "$REQ.new" "$REQ" 2>/dev/null && rm "$REQ.new" || mv "$REQ.new" "$REQ"
fi
REQ_HASH=$(sha256sum "$REQ" | cut -c1-16)
if [ ! -f "$DEST/.stamp-site-$REQ_HASH" ]; then
  mkdir -p "$DEST/wheels"
  $PY -m pip download -q --disable-pip-version-check --only-binary=:all: \
      --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 \
      --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
      --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
      -r "$REQ" -d "$DEST/wheels/$REQ_HASH"
  rm -rf "$DEST/site.tmp"
  mkdir -p "$DEST/site.tmp"
  for w in "$DEST/wheels/$REQ_HASH"/*.whl; do
    $PY -m zipfile -e "$w" "$DEST/site.tmp"
  done
  rm -rf "$DEST/site"
  mv "$DEST/site.tmp" "$DEST/site"
  rm -f "$DEST"/.stamp-site-*
  touch "$DEST/.stamp-site-$REQ_HASH"
fi

cat > "$DEST/env.sh" <<EOF
# source this file, then: \$AARCH64_PYTHON script.py
export QEMU_LD_PREFIX="$DEST/rootfs"
export AARCH64_PYTHON="qemu-aarch64-static -L $DEST/rootfs $DEST/rootfs/usr/bin/python3.11"
export PYTHONPATH="$DEST/site"
EOF
echo "$DEST"
