#!/usr/bin/env bash
# One call's worth of GPU work (for the lent GPU machine, which keeps nothing between machines and
# returns only a few files): build, the gpu test tier, the decode suite, the Python package's
# tests, and optionally a tuning sweep and ncu reports. Everything lands in $OUT (or ./device-out)
# as summary.txt (the headlines), device.tar.gz (every log), the bench JSON and the tuning JSON.
# Usage: tools/device_check.sh [bench args...]   e.g. tools/device_check.sh --shape S1 --shape S5
# Environment: DC_TUNE_BUDGET=<seconds> runs `mlajit tune` into $OUT/tuning.json (DC_TUNE_ARGS:
#              more tune flags, e.g. "--devices 0,1");
#              DC_NCU="S1 S2" profiles the stage-1 kernel of those suite shapes with ncu (DC_NCU_ARGS:
#              more bench flags for those runs, e.g. "--family wgmma --heads-per-cta 64");
#              DC_SKIP="tests bench pytest" skips those steps;
#              DC_VERIFY="args; args; ..." runs `mlajit verify <args>` for each (DC_VERIFY_TIMEOUT
#              seconds each, default 30) before the
#              gpu tier, and skips the tier if one hangs (a new kernel's pipeline deadlock would
#              otherwise cost every test its timeout); keep their problems small: the float32
#              reference runs on one CPU core, and heads 128 x s_q 3 x 6 requests x 3000 tokens
#              already take over the 30 s (which then reads as a hang);
#              DC_BENCH_EXTRA="args" runs a second `mlajit bench --no-roofline <args>` (e.g. a forced family);
#              DC_NCU_KERNELS="S5 S3" times every kernel of those shapes' decode calls (grid and
#              persistent paths) standalone under ncu, per-kernel averages (where the time goes
#              between stage 1, the combine, the metadata kernel and the reduce);
#              DC_TRACE="S7 S1 S3p" prints each shape's per-tile timeline (a -DMLJ_TRACE=1 build, 2
#              splits; an id ending in p: the persistent path, tools/trace_summary.py; DC_TRACE_ARGS: more bench flags) and keeps the
#              raw lines in device.tar.gz;
#              DC_PHASES="S3 S5" times those shapes' persistent path in a -DMLJ_TRACE_PHASES=1 build and
#              prints the medians of its phases (tools/trace_summary.py): where the time after
#              stage 1 goes (the last piece counted, the last tile's reduce past its wait, the last
#              reduce CTA in, the reduce's merge steps: LSEs read, sums done, ways exchanged, the end);
#              DC_AFTER="commands" runs them (bash -c, 400 s) after the steps above, before the
#              tuning sweep; the last 60 lines of their output land in summary.txt;
#              DC_ALT="bench args" A/B against a second tree: `device-alt/` (git-ignored; e.g.
#              `git archive main | tar -x -C device-alt`, passed with carry: ["device-alt"]) is
#              built while the gpu tier runs and, right after this tree's suite, timed with
#              `mlajit bench --no-roofline <args>` (e.g. "--persistent S3 S5"); its table lands in
#              summary.txt and its JSON in $OUT/alt/.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-device-out}
logs=$(mktemp -d)
mkdir -p "$out"
summary="$out/summary.txt"
say() { echo "$@" | tee -a "$summary"; }
skip() { [[ " ${DC_SKIP:-} " == *" $1 "* ]]; }
finish() {
  tar -C "$logs" -czf "$out/device.tar.gz" . 2>/dev/null
  cp "$logs"/*.json "$out"/ 2>/dev/null
}
trap finish EXIT

say "$(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader)"
cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release >"$logs/cfg.log" 2>&1 || { tail -30 "$logs/cfg.log" | tee -a "$summary"; exit 1; }
ninja -C build-device -j"$(nproc)" >"$logs/build.log" 2>&1 || { grep -E "error|FAILED" "$logs/build.log" | head -30 | tee -a "$summary"; exit 1; }
say "build ok"

alt_pid=""
if [[ -n "${DC_ALT+x}" ]]; then
  if [[ -d device-alt ]]; then
    # Fewer jobs than cores: the gpu tier runs meanwhile (it is not timed).
    (cmake -S device-alt -B build-alt -G Ninja -DCMAKE_BUILD_TYPE=Release >"$logs/alt_cfg.log" 2>&1 &&
      ninja -C build-alt -j"$(( $(nproc) / 2 ))" mlajit_cli >"$logs/alt_build.log" 2>&1) &
    alt_pid=$!
  else
    say "DC_ALT set but no device-alt/ tree: no A/B"
  fi
fi

hung=0
IFS=';' read -ra verify_runs <<<"${DC_VERIFY:-}"
for args in "${verify_runs[@]}"; do
  [[ -z "${args// /}" ]] && continue
  start=$SECONDS
  # shellcheck disable=SC2086  # each entry is a list of flags
  timeout "${DC_VERIFY_TIMEOUT:-30}" build-device/mlajit verify $args >"$logs/verify_one.txt" 2>&1
  rc=$?
  cat "$logs/verify_one.txt" >>"$logs/verify.txt"
  if [[ $rc -eq 124 ]]; then
    say "verify$args: timed out after $((SECONDS - start)) s (a hang, or a float32 reference too slow for DC_VERIFY_TIMEOUT)"
  else
    say "verify$args: exit $rc in $((SECONDS - start)) s: $(tail -1 "$logs/verify_one.txt")"
  fi
  [[ $rc -eq 124 ]] && hung=1
done
[[ $hung -eq 1 ]] && say "a verify run hung: gpu tier skipped"

if ! skip tests && [[ $hung -eq 0 ]]; then
  # -V keeps every test's output, so the numerics lines come from this one run.
  (cd build-device && ctest -L gpu -j6 -V --timeout 120 >"$logs/ctest_gpu.log" 2>&1)
  grep -E "tests passed|tests failed|\*\*\*Failed|Failed  " "$logs/ctest_gpu.log" | tee -a "$summary"
  grep -o "\[ numerics \].*" "$logs/ctest_gpu.log" >"$logs/numerics.txt"
  say "numerics lines: $(wc -l <"$logs/numerics.txt"); largest errors:"
  sort -k9 -g "$logs/numerics.txt" | tail -4 | tee -a "$summary"
  grep -o "\[ persistent \].*" "$logs/ctest_gpu.log" >"$logs/persistent.txt"
  say "persistent lines: $(wc -l <"$logs/persistent.txt"); largest errors:"
  sort -k7 -g "$logs/persistent.txt" | tail -3 | tee -a "$summary"
fi

alt_built=1
# The second tree's build must not share the CPUs with the timed runs.
[[ -n "$alt_pid" ]] && { wait "$alt_pid"; alt_built=$?; }

if ! skip bench; then
  timeout 300 build-device/mlajit bench --out-dir "$logs" "$@" 2>"$logs/bench_err.log" | tee "$logs/bench.txt" | tee -a "$summary"
  if [[ -n "${DC_BENCH_EXTRA:-}" ]]; then
    mkdir -p "$logs/extra"
    # shellcheck disable=SC2086  # a list of flags
    timeout 200 build-device/mlajit bench --no-roofline --out-dir "$logs/extra" $DC_BENCH_EXTRA 2>"$logs/bench_extra_err.log" |
      tee "$logs/bench_extra.txt" | tee -a "$summary"
    tail -3 "$logs/bench_extra_err.log" | tee -a "$summary"
  fi
fi

if [[ -n "$alt_pid" ]]; then
  if [[ $alt_built -eq 0 ]]; then
    mkdir -p "$out/alt"
    say "A/B: device-alt, mlajit bench --no-roofline ${DC_ALT}"
    # shellcheck disable=SC2086  # a list of flags
    timeout 300 build-alt/mlajit bench --no-roofline --out-dir "$out/alt" $DC_ALT 2>"$logs/bench_alt_err.log" |
      tee "$logs/bench_alt.txt" | tee -a "$summary"
  else
    say "device-alt did not build:"; tail -20 "$logs/alt_build.log" "$logs/alt_cfg.log" 2>/dev/null | tee -a "$summary"
  fi
fi

if ! skip pytest; then
  MLAJIT_LIBRARY=$PWD/build-device/runtime/libmlajit.so timeout 400 python3 -X faulthandler -m pytest python/tests -q \
    -p no:cacheprovider >"$logs/pytest.log" 2>&1
  say "pytest exit $?"; grep -E "passed|failed|error" "$logs/pytest.log" | tail -12 | tee -a "$summary"
fi

for shape in ${DC_NCU:-}; do
  # Sections, not --set full: ~20 s a shape instead of minutes.
  # shellcheck disable=SC2086  # DC_NCU_ARGS is a list of flags
  timeout 120 ncu --clock-control none --section SpeedOfLight --section WarpStateStats --section Occupancy \
    --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active" \
    -k regex:mla_decode_stage1 -c 1 build-device/mlajit bench --shape "$shape" \
    --runs 1 --warmup 0 --no-roofline --persistent none --out-dir /tmp ${DC_NCU_ARGS:-} >"$logs/ncu_$shape.txt" 2>&1
  say "ncu $shape:"
  grep -E "DRAM Throughput|Duration|Registers Per|Achieved Occupancy|Compute \(SM\) Throughput|L2 Hit Rate|Stall|tensor_op|Warp Cycles Per Issued" \
    "$logs/ncu_$shape.txt" | head -24 | tee -a "$summary"
done

for shape in ${DC_NCU_KERNELS:-}; do
  timeout 120 ncu --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel -k regex:mla_decode \
    build-device/mlajit bench --shape "$shape" --runs 3 --warmup 0 --no-roofline --persistent all --persistent-metadata each --out-dir /tmp \
    >"$logs/ncu_kernels_$shape.txt" 2>&1
  say "ncu per kernel, $shape (standalone, caches flushed by ncu; us: min max average):"
  grep -vE "==PROF==|^bench" "$logs/ncu_kernels_$shape.txt" | grep -E "mla_decode|gpu__time" | tee -a "$summary"
done

for shape in ${DC_TRACE:-}; do
  # The per-tile timeline of CTA 0 (templates/decode/trace.cuh): a traced build of the kernels
  # (its own cache entries), 2 splits so that the combine prints it, summarised by phase. An id
  # with a trailing p (S3p) traces the persistent path instead: the grid path runs unsplit (no
  # combine, so nothing of it is printed) and the persistent path's second call prints the first's
  # timeline, with the metadata / stage 1 / reduce boundaries.
  # Two prints either way (2 timed calls on the persistent path, whose next call prints), so
  # trace_summary can tell whether the same SMs are slow in both.
  if [[ $shape == *p ]]; then paths=(--shape "${shape%p}" --splits 1 --persistent "${shape%p}" --persistent-metadata each --runs 2)
  else paths=(--shape "$shape" --splits 2 --persistent none --runs 1); fi
  # shellcheck disable=SC2086  # DC_TRACE_ARGS is a list of flags
  MLAJIT_COMPILE_OPTIONS="-DMLJ_TRACE=1 ${MLAJIT_COMPILE_OPTIONS:-}" timeout 120 build-device/mlajit bench "${paths[@]}" \
    --warmup 0 --no-roofline --out-dir /tmp ${DC_TRACE_ARGS:-} 2>&1 |
    grep mlj-trace >"$logs/trace_$shape.txt"
  say "timeline $shape (${paths[*]}; SM cycles):"
  python3 tools/trace_summary.py "$logs/trace_$shape.txt" | tee -a "$summary"
done

for shape in ${DC_PHASES:-}; do
  # The persistent path's phases only (-DMLJ_TRACE_PHASES=1: a few atomics a CTA, no per-tile
  # timeline; about one call in four prints the previous call's), medians over the prints, and
  # the bench's own time of that build (compare with the untraced row of the suite).
  MLAJIT_COMPILE_OPTIONS="-DMLJ_TRACE_PHASES=1 ${MLAJIT_COMPILE_OPTIONS:-}" timeout 120 build-device/mlajit bench \
    --shape "$shape" --persistent "$shape" --persistent-metadata each --runs 40 --no-roofline --out-dir /tmp 2>&1 |
    grep -E "mlj-trace|^${shape}p " >"$logs/phases_$shape.txt"
  say "phases ${shape}p (-DMLJ_TRACE_PHASES=1):"
  grep -E "^${shape}p " "$logs/phases_$shape.txt" | tee -a "$summary"
  python3 tools/trace_summary.py "$logs/phases_$shape.txt" | grep -vE "^mlj-trace|^  metadata kernel" | tee -a "$summary"
done

if [[ -n "${DC_AFTER:-}" ]]; then
  # Free-form commands (e.g. an environment sweep of `mlajit bench`), with build-device/ built.
  say "DC_AFTER: ${DC_AFTER}"
  timeout 400 bash -c "$DC_AFTER" >"$logs/after.txt" 2>&1
  say "exit $?"; grep -v "^bench: " "$logs/after.txt" | tail -60 | tee -a "$summary"
fi

if [[ -n "${DC_TUNE_BUDGET:-}" ]]; then
  # shellcheck disable=SC2086  # DC_TUNE_ARGS is a list of flags, e.g. "--devices 0,1"
  build-device/mlajit tune --budget "$DC_TUNE_BUDGET" ${DC_TUNE_ARGS:-} --out "$logs/tuning.json" >"$logs/tune.txt" 2>"$logs/tune-progress.log"
  say "tune exit $?"; tail -30 "$logs/tune.txt" | tee -a "$summary"
fi
