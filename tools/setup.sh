#!/usr/bin/env bash
# Installs what the build needs (Debian packages, when missing and apt is usable) and builds
# mlajit into ./build. Used by tools/main.sh, tools/test.sh and CI. The CUDA toolkit (headers,
# NVRTC) must already be on the machine (it is on ours: /usr/local/cuda).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake ninja-build g++ libfmt-dev nlohmann-json3-dev libcli11-dev libgtest-dev libssl-dev python3-pytest libzstd-dev
          libamdhip64-dev llvm-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: not installing ${missing[*]} (no apt or not root); the build uses what is present" >&2
  fi
fi

jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="${MLAJIT_BUILD_TYPE:-Release}" -DMLAJIT_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
