#!/usr/bin/env bash
# One call's worth of GPU work (for the lent GPU machine, which keeps nothing between machines):
# build, the gpu test tier, the decode suite, the Python package's tests. Results go to $OUT
# (or ./device-out): ctest_gpu.log, numerics.txt, persistent.txt, bench JSON + table, pytest.log.
# Usage: tools/device_check.sh [bench args...]   e.g. tools/device_check.sh --shape S1 --shape S5
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$out/card.txt"
cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release >"$out/cfg.log" 2>&1 || { tail -30 "$out/cfg.log"; exit 1; }
ninja -C build-device -j"$(nproc)" >"$out/build.log" 2>&1 || { grep -E "error|FAILED" "$out/build.log" | head -30; exit 1; }
(cd build-device && ctest -L gpu >"$out/ctest_gpu.log" 2>&1; grep -E "tests passed|Failed" "$out/ctest_gpu.log" | head -5)
build-device/tests/gpu_decode_test 2>&1 | grep numerics >"$out/numerics.txt"
build-device/tests/gpu_persistent_test 2>&1 | grep -E "\[ persistent \]|FAILED" >"$out/persistent.txt"
echo "largest errors:"; sort -k9 -g "$out/numerics.txt" | tail -3
build-device/mlajit bench --out-dir "$out" "$@" 2>"$out/bench_err.log" | tee "$out/bench.txt"
MLAJIT_LIBRARY=$PWD/build-device/runtime/libmlajit.so timeout 300 python3 -X faulthandler -m pytest python/tests -q \
  -p no:cacheprovider >"$out/pytest.log" 2>&1
echo "pytest exit $?"; tail -3 "$out/pytest.log"
