// Host-side cost of planning one decode call (no GPU): argument checks + Spec (decode_spec), the
// tuning lookup (shipped database, else the model) and the persistent plan. Part of the "hot
// dispatch" time that `mlajit bench` reports per call; the launches themselves are the rest.
// Run: build/bench/host/plan_bench   (built when Google Benchmark is installed)
#include <benchmark/benchmark.h>

#include "runtime/engine.hpp"
#include "runtime/persistent_plan.hpp"
#include "tuning/registry.hpp"
#include "tuning/select.hpp"

namespace {

using namespace mlajit;

// S1 of BENCH.md: 128 requests x 4096 tokens, 16 heads, page 64, bf16. Pointers are never read.
DecodeArgs s1_args() {
  static int dummy[4] = {};
  DecodeArgs a;
  a.q = a.kv_buffer = a.out = dummy;
  a.qo_indptr = a.kv_indptr = a.kv_indices = a.kv_last_page_lens = dummy;
  a.batch = 128;
  a.total_q = 128;
  a.num_heads = 16;
  a.page_size = 64;
  a.num_kv_indices = 128 * 64;
  return a;
}

const Target& sm90a() {
  static const Target t = parse_target("sm_90a");
  return t;
}

void DecodeSpecChecks(benchmark::State& state) {
  const DecodeArgs a = s1_args();
  for (auto _ : state) benchmark::DoNotOptimize(decode_spec(a));
}
BENCHMARK(DecodeSpecChecks);

// The tuning lookup as Engine::plan_decode does it; `db` null: the model alone.
void select_tile(benchmark::State& state, const tuning::Database* db) {
  const DecodeArgs a = s1_args();
  const Spec spec = decode_spec(a);
  tuning::DecodeShape shape;
  shape.batch = a.batch;
  shape.mean_kv_tokens = double(a.num_kv_indices) * spec.page_size / a.batch;
  for (auto _ : state) benchmark::DoNotOptimize(tuning::select(spec, sm90a(), shape, db));
}

void TuningSelectFromShippedDatabase(benchmark::State& state) { select_tile(state, tuning::database_for(sm90a().arch)); }
BENCHMARK(TuningSelectFromShippedDatabase);

void TuningSelectFromTheModel(benchmark::State& state) { select_tile(state, nullptr); }
BENCHMARK(TuningSelectFromTheModel);

void PersistentPlan(benchmark::State& state) {
  const DecodeArgs a = s1_args();
  for (auto _ : state) benchmark::DoNotOptimize(plan_persistent(a, sm90a(), 132));
}
BENCHMARK(PersistentPlan);

}  // namespace

BENCHMARK_MAIN();
