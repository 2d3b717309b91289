#!/usr/bin/env bash
# Builds and runs every test tier with ctest: cpu, compile (NVRTC / hipRTC, no GPU needed) and
# gpu (each gpu test skips with a message on a machine without an NVIDIA GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
