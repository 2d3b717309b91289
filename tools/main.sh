#!/usr/bin/env bash
# The main job: build, compile the default DeepSeek-V3 decode catalogue ahead of time for
# sm_90a (H100/H200) and gfx90a (where hipRTC is installed) and print the table; on a machine
# with an NVIDIA GPU, also run one decode and check it against the float32 reference.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
archs=(--arch sm_90a)
if build/mlajit info --json | grep -q '"compiler": "hiprtc"'; then archs+=(--arch gfx90a); fi
build/mlajit warm "${archs[@]}" --jobs "$(nproc)"
if build/mlajit info --json | grep -q '"arch": "sm_'; then
  build/mlajit verify --heads 16 --page-size 64 --batch 4 --kv-len 4096
  build/mlajit verify --heads 128 --page-size 1 --sq 2 --batch 3 --kv-len 1000 --lse
else
  echo "no NVIDIA GPU here: skipped the verified decode (run this on a GPU machine for it)"
fi
