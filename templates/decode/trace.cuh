// Per-tile timeline of the wgmma tiles, for developers: with MLAJIT_COMPILE_OPTIONS=-DMLJ_TRACE=1
// the producer and the consumers of CTA (0, 0, 0) record clock64() (SM cycles since the role
// started) at their events for the CTA's first kTraceTiles tiles in a module-global buffer, and
// the split-K combine of the same module prints it once stage 1 is done (so run with at least 2
// splits, e.g. `mlajit bench --splits 2`); on the persistent path the next call's metadata kernel
// prints the previous call's, with its kernels' boundaries (trace_print_phases). Then the spread
// of every CTA's start and end (global timer, ns after the first start: min / mean / max; with
// at most kTracePrintEachCta CTAs also each CTA's: `mlj-trace cta <c> sm <smid> ns: <start> <end>`):
//   mlj-trace producer0 tile <g>: <before the slot wait> <slot free> <copies issued> 0
//   mlj-trace consumer<c> tile <t>: <before the wait> <tile landed> <S done> <P.V done>
//   wide tiles (printed as consumer<c>), per tile pair: tile <first of the pair>: <before the wait
//   for its own tile> <own tile landed> <S done> <P.V of both tiles done>; tile <first + 1>:
//   <row maxima exchanged> <P written> <both P written> <the other tile landed>
// Stage 1 itself calls nothing external (a printf there would make ptxas serialise its wgmmas).
// With -DMLJ_TRACE_PHASES=1 instead, only the persistent path's phases below are stamped (a few
// atomics a CTA, no per-tile timeline, no per-CTA record), and the metadata kernel prints the
// previous call's at every fourth call only, so that a bench's median is of calls without a
// printf. Without either, nothing here generates code.
#pragma once

namespace mlj {

// The persistent path's kernel boundaries on the global timer (one module: metadata kernel, stage 1,
// reduce): each kernel's first CTA in, its first CTA past the wait for the kernel before it, and
// its last CTA out; then the last split piece counted by stage 1, the last reduce CTA past its
// tile's wait (when the merge after the last piece starts), the last reduce CTA in (whether
// the reduce's CTAs get SMs late), and the reduce's merge steps (merge_partials: the last warp
// past its LSE reads, its sums, the ways' exchange). The next call's metadata kernel prints them
// (trace_print_phases), so a bench of n calls prints n - 1 timelines (MLJ_TRACE) or about a
// quarter of them (MLJ_TRACE_PHASES).
enum TracePhase : int {
  kPhaseMetadataIn,
  kPhaseMetadataOut,
  kPhaseStage1In,
  kPhaseStage1Waited,
  kPhaseStage1Out,
  kPhaseReduceIn,
  kPhaseReduceWaited,
  kPhaseReduceOut,
  kPhasePieceLast,
  kPhaseReduceWaitedLast,
  kPhaseReduceInLast,
  kPhaseMergeLseLast,        // the reduce's merge: the last warp past its LSE reads (the row maximum)
  kPhaseMergeSummedLast,     // ... past its weighted sums (its partials' values read)
  kPhaseMergeExchangedLast,  // ... past the exchange of the ways' sums (before the stores)
  kTracePhases,
};

#if defined(MLJ_TRACE) || defined(MLJ_TRACE_PHASES)
MLJ_DEVICE unsigned long long trace_global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
// The same, read once `v` is computed (the timer read takes it as an operand, so it cannot run
// before the instructions, and the loads, that produce it).
MLJ_DEVICE unsigned long long trace_global_ns_after(float v) {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t) : "f"(v));
  return t;
}

__device__ unsigned long long mlj_trace_phase_ns[kTracePhases];
// First: the CTA's first thread; last: each warp's first lane, for warps that end on their own.
MLJ_DEVICE void trace_phase_first(int phase) {
  if (threadIdx.x == 0) atomicCAS(&mlj_trace_phase_ns[phase], 0ull, trace_global_ns());
}
// The calling thread's time, if it is the latest so far.
MLJ_DEVICE void trace_phase_now_last(int phase) { atomicMax(&mlj_trace_phase_ns[phase], trace_global_ns()); }
// The same once `v` is computed.
MLJ_DEVICE void trace_phase_now_last_after(int phase, float v) {
  atomicMax(&mlj_trace_phase_ns[phase], trace_global_ns_after(v));
}
MLJ_DEVICE void trace_phase_last(int phase) {
  if (threadIdx.x % MLJ_WARP_SIZE == 0) trace_phase_now_last(phase);
}
// The whole CTA is done (its other threads' writes too).
MLJ_DEVICE void trace_phase_block_last(int phase) {
  __syncthreads();
  if (threadIdx.x == 0) trace_phase_now_last(phase);
}
#else
MLJ_DEVICE void trace_phase_first(int) {}
MLJ_DEVICE void trace_phase_last(int) {}
MLJ_DEVICE void trace_phase_now_last(int) {}
MLJ_DEVICE void trace_phase_now_last_after(int, float) {}
MLJ_DEVICE void trace_phase_block_last(int) {}
#endif

#if defined(MLJ_TRACE)
constexpr int kTraceTiles = 48;
constexpr int kTraceRoles = 3;  // producer, consumer 0, consumer 1
__device__ long long mlj_trace_buffer[kTraceRoles][kTraceTiles][4];

struct TileTrace {
  long long start;
  int role;
  MLJ_DEVICE TileTrace(long long role_start, int role_index) : start(role_start), role(role_index) {}
  MLJ_DEVICE void mark(int tile, int event) const {
    if (blockIdx.x + blockIdx.y + blockIdx.z == 0 && threadIdx.x % 128 == 0 && tile < kTraceTiles) {
      mlj_trace_buffer[role][tile][event] = (long long)clock64() - start;
    }
  }
};
MLJ_DEVICE long long trace_clock() { return (long long)clock64(); }

// Every CTA's start (its first thread) and end (its last role to finish) on the GPU's global
// nanosecond timer, for the spread of start and finish times across the grid.
constexpr int kTraceCtas = 8192;
__device__ unsigned long long mlj_trace_cta_ns[kTraceCtas][2];
__device__ int mlj_trace_cta_sm[kTraceCtas];  // the SM the CTA ran on (%smid)
// Grids of at most this many CTAs (a persistent wave) also print every CTA's line.
constexpr int kTracePrintEachCta = 1024;
MLJ_DEVICE int trace_cta_index() { return blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z); }
MLJ_DEVICE void trace_cta_start() {
  if (threadIdx.x == 0 && trace_cta_index() < kTraceCtas) {
    unsigned int sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    mlj_trace_cta_sm[trace_cta_index()] = (int)sm;
    mlj_trace_cta_ns[trace_cta_index()][0] = trace_global_ns();
  }
}
// Called by each role's first thread when it is done.
MLJ_DEVICE void trace_cta_end() {
  if (threadIdx.x % 128 != 0) return;
  const unsigned long long now = trace_global_ns();
  if (trace_cta_index() < kTraceCtas) atomicMax(&mlj_trace_cta_ns[trace_cta_index()][1], now);
  atomicMax(&mlj_trace_phase_ns[kPhaseStage1Out], now);
}

// Inside the metadata kernel (decode/schedule.cuh): its first thread's time at the end of each
// pass and scan, printed with the phases (where its ~6 us go).
constexpr int kTraceMetadataMarks = 9;
__device__ unsigned long long mlj_trace_metadata_ns[kTraceMetadataMarks];
MLJ_DEVICE void trace_metadata_mark(int k) {
  if (blockIdx.x == 0 && threadIdx.x == 0) mlj_trace_metadata_ns[k] = trace_global_ns();
}

// One thread of the module's stage 2, after stage 1 has finished: print and clear.
MLJ_DEVICE void trace_print_stage1() {
  if (blockIdx.x + blockIdx.y + blockIdx.z != 0 || threadIdx.x != 0) return;
  mlj_wait_for_previous_grid();  // stage 1 has finished (a programmatic dependent may start early)
  const char* names[kTraceRoles] = {"producer0", "consumer0", "consumer1"};
  for (int r = 0; r < kTraceRoles; ++r) {
    for (int t = 0; t < kTraceTiles; ++t) {
      long long* e = mlj_trace_buffer[r][t];
      if (e[0] == 0 && e[1] == 0) continue;  // not this role's tile, or past the CTA's
      printf("mlj-trace %s tile %d: %lld %lld %lld %lld\n", names[r], t, e[0], e[1], e[2], e[3]);
      e[0] = e[1] = e[2] = e[3] = 0;
    }
  }
  // The CTAs' start and end, in ns after the first start: min / mean / max of each, and of the
  // durations.
  unsigned long long first = ~0ull;
  int ctas = 0;
  for (int c = 0; c < kTraceCtas; ++c) {
    if (mlj_trace_cta_ns[c][0] != 0) {
      first = mlj_trace_cta_ns[c][0] < first ? mlj_trace_cta_ns[c][0] : first;
      ++ctas;
    }
  }
  if (ctas == 0) return;
  double sum[3] = {0, 0, 0};
  long long lo[3] = {1ll << 62, 1ll << 62, 1ll << 62}, hi[3] = {0, 0, 0};
  for (int c = 0; c < kTraceCtas; ++c) {
    unsigned long long* e = mlj_trace_cta_ns[c];
    if (e[0] == 0) continue;
    const long long v[3] = {(long long)(e[0] - first), (long long)(e[1] - first), (long long)(e[1] - e[0])};
    if (ctas <= kTracePrintEachCta) {
      printf("mlj-trace cta %d sm %d ns: %lld %lld\n", c, mlj_trace_cta_sm[c], v[0], v[1]);
    }
    for (int k = 0; k < 3; ++k) {
      sum[k] += (double)v[k];
      lo[k] = v[k] < lo[k] ? v[k] : lo[k];
      hi[k] = v[k] > hi[k] ? v[k] : hi[k];
    }
    e[0] = e[1] = 0;
  }
  const char* what[3] = {"start", "end", "duration"};
  for (int k = 0; k < 3; ++k) {
    printf("mlj-trace ctas %d %s ns: min %lld mean %.0f max %lld\n", ctas, what[k], lo[k], sum[k] / ctas, hi[k]);
  }
}
#else
struct TileTrace {
  MLJ_DEVICE TileTrace(long long, int) {}
  MLJ_DEVICE void mark(int, int) const {}
};
MLJ_DEVICE long long trace_clock() { return 0; }
MLJ_DEVICE void trace_cta_start() {}
#if defined(MLJ_TRACE_PHASES)
// Called by each role's first thread when it is done: stage 1's last CTA out.
MLJ_DEVICE void trace_cta_end() {
  if (threadIdx.x % 128 == 0) trace_phase_now_last(kPhaseStage1Out);
}
#else
MLJ_DEVICE void trace_cta_end() {}
#endif
MLJ_DEVICE void trace_print_stage1() {}
MLJ_DEVICE void trace_metadata_mark(int) {}
#endif

#if defined(MLJ_TRACE) || defined(MLJ_TRACE_PHASES)
__device__ int mlj_trace_calls;  // metadata kernels so far (MLJ_TRACE_PHASES prints every fourth)
// The metadata kernel's first thread, first thing: the previous call's phases, in ns after its
// metadata kernel started; then cleared.
MLJ_DEVICE void trace_print_phases() {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  unsigned long long* e = mlj_trace_phase_ns;
#if defined(MLJ_TRACE)
  const bool print = true;
#else
  const bool print = mlj_trace_calls++ % 4 == 3;
#endif
  if (print && e[kPhaseMetadataIn] != 0) {
    long long v[kTracePhases];
    for (int k = 0; k < kTracePhases; ++k) v[k] = e[k] == 0 ? -1 : (long long)(e[k] - e[kPhaseMetadataIn]);
    printf("mlj-trace phases ns: metadata %lld %lld stage1 %lld %lld %lld reduce %lld %lld %lld last piece %lld "
           "last tile waited %lld last reduce in %lld merge lse %lld summed %lld exchanged %lld\n",
           v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13]);
#if defined(MLJ_TRACE)
    long long m[kTraceMetadataMarks];
    for (int k = 0; k < kTraceMetadataMarks; ++k) {
      m[k] = mlj_trace_metadata_ns[k] == 0 ? -1 : (long long)(mlj_trace_metadata_ns[k] - e[kPhaseMetadataIn]);
    }
    printf("mlj-trace metadata marks ns: pass1 %lld scan1 %lld pass2 %lld scan2 %lld pass3a %lld pass3b: segments shared "
           "%lld, search %lld, walk %lld, end %lld\n", m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8]);
#endif
  }
  for (int k = 0; k < kTracePhases; ++k) e[k] = 0;
#if defined(MLJ_TRACE)
  for (int k = 0; k < kTraceMetadataMarks; ++k) mlj_trace_metadata_ns[k] = 0;
#endif
}
#else
MLJ_DEVICE void trace_print_phases() {}
#endif

}  // namespace mlj
