// Compile tier: every default catalogue entry compiles with NVRTC (sm_80, sm_90a) and, where
// hipRTC is present, its bf16 / fp16 entries for gfx90a; so does a matrix of the decode features
// (FP8, fused RoPE, soft-cap, s_q 1..8, pages 1..256). Compile errors carry the compiler log.
// No GPU needed.
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "codegen/error.hpp"
#include "runtime/jit.hpp"
#include "tests/runtime/scoped_env.hpp"
#include "tools/catalog.hpp"
#include "tuning/choose.hpp"

namespace mlajit {
namespace {

void skip_without_compiler(Backend kind) {
  if (!runtime::backend(kind).compiler_available()) {
    GTEST_SKIP() << backend_name(kind) << " compiler library not found on this machine; "
                 << "compile tests for it are skipped";
  }
}

bool is_fp8(const Spec& spec) { return spec.q_dtype == DType::fp8_e4m3 || spec.kv_dtype == DType::fp8_e4m3; }

class CatalogCompile : public ::testing::TestWithParam<std::string> {};

TEST_P(CatalogCompile, EveryDefaultEntryCompiles) {
  const Target target = parse_target(GetParam());
  skip_without_compiler(target.backend);
  for (const Spec& spec : tools::default_catalog()) {
    if (target.backend == Backend::hip && is_fp8(spec)) continue;  // AMD CI promises the bf16 / fp16 kernels
    const TileConfig tile = tuning::choose_tile(spec, target);
    const runtime::JitResult r = runtime::jit_compile(spec, tile, target, nullptr);
    EXPECT_GT(r.code.binary.size(), 1000u) << r.key.readable_name;
    if (target.backend == Backend::cuda) {
      // ptxas reports registers and spills for every entry, without a device.
      ASSERT_TRUE(r.code.resources.count("mla_decode_stage1")) << r.code.log;
      const runtime::KernelResources& res = r.code.resources.at("mla_decode_stage1");
      EXPECT_GT(res.registers, 0);
      EXPECT_EQ(res.spill_stores, 0) << r.key.readable_name << " spills";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, CatalogCompile, ::testing::Values("sm_80", "sm_90a", "gfx90a"));

TEST(Compile, OddShapesCompileForEveryTarget) {
  for (const char* arch : {"sm_90a", "gfx90a"}) {
    const Target target = parse_target(arch);
    if (!runtime::backend(target.backend).compiler_available()) continue;
    for (int heads : {1, 20, 100}) {
      for (DType dtype : {DType::bf16, DType::fp16}) {
        Spec spec;
        spec.heads = heads;
        spec.q_dtype = spec.kv_dtype = spec.out_dtype = dtype;
        spec.page_size = 16;
        spec.s_q = 3;
        spec.return_lse = true;
        EXPECT_NO_THROW(runtime::jit_compile(spec, tuning::choose_tile(spec, target), target, nullptr))
            << arch << " heads " << heads;
      }
    }
  }
}

// FP8 (both forms), fused RoPE (both styles), soft-cap, s_q 1..8, pages 1..256, causal and not,
// odd head counts: 12 specs whose fields cycle through the values with different periods.
std::vector<Spec> feature_matrix() {
  struct Form {
    DType q, kv, out;
  };
  const Form forms[] = {{DType::bf16, DType::bf16, DType::bf16},
                        {DType::fp16, DType::fp16, DType::fp16},
                        {DType::bf16, DType::fp8_e4m3, DType::bf16},
                        {DType::fp8_e4m3, DType::fp8_e4m3, DType::fp32}};
  const int heads[] = {1, 20, 100, 128};
  const int page_sizes[] = {1, 16, 128, 256};
  std::vector<Spec> specs;
  int i = 0;
  for (RopeStyle rope : {RopeStyle::none, RopeStyle::neox, RopeStyle::gptj}) {
    for (const Form& form : forms) {
      Spec s;
      s.q_dtype = form.q;
      s.kv_dtype = form.kv;
      s.out_dtype = form.out;
      s.rope = rope;
      s.heads = heads[i % 4];
      s.page_size = page_sizes[(i + i / 4) % 4];
      s.s_q = 1 + (3 * i) % 8;  // 1, 4, 7, 2, 5, 8, 3, 6, ...
      s.causal = i % 3 != 1;
      s.logit_cap = i % 5 == 2 ? 30.0f : 0.0f;
      s.return_lse = i % 2 == 0;
      specs.push_back(s);
      ++i;
    }
  }
  return specs;
}

// Compiles every spec with every family that serves it, for sm_90a and gfx90a where the compiler
// is present (fp8 only on NVIDIA), and hands each result to `check`. Returns how many compiled.
template <class Check>
int compile_every_family(const std::vector<Spec>& specs, Check check) {
  int compiled = 0;
  for (const char* arch : {"sm_90a", "gfx90a"}) {
    const Target target = parse_target(arch);
    if (!runtime::backend(target.backend).compiler_available()) continue;
    for (const Spec& spec : specs) {
      if (target.backend == Backend::hip && is_fp8(spec)) continue;
      for (KernelFamily family : families_serving(spec, target)) {
        const TileConfig tile = tuning::choose_tile(spec, target, family);
        runtime::JitResult r;
        try {
          r = runtime::jit_compile(spec, tile, target, nullptr);
        } catch (const std::exception& e) {
          ADD_FAILURE() << kernel_base_name(spec, tile) << " " << arch << ": " << e.what();
          continue;
        }
        ++compiled;
        check(target, r);
      }
    }
  }
  return compiled;
}

// ptxas falls back to issuing every wgmma of a kernel one at a time (each followed by its wait)
// when it cannot prove that no other instruction touches the accumulators of one in flight, e.g.
// when a wgmma's issue is conditional in a software-pipelined loop. It compiles, runs correctly
// and is about 1.5x slower (wide tile, session 5), so the compile tier rejects it.
void expect_no_wgmma_serialization(const runtime::JitResult& r) {
  for (const char* code : {"C7510", "C7511", "C7512", "C7513", "C7514", "C7515", "C7516", "C7517", "C7518"}) {
    EXPECT_EQ(r.code.log.find(code), std::string::npos)
        << r.key.readable_name << ": ptxas serialises its wgmmas (" << code << "):\n" << r.code.log;
  }
  EXPECT_EQ(r.code.log.find("are serialized"), std::string::npos) << r.key.readable_name << ":\n" << r.code.log;
}

TEST(Compile, FeatureMatrixCompilesWithEveryFamilyWithoutSpills) {
  compile_every_family(feature_matrix(), [](const Target& target, const runtime::JitResult& r) {
    if (target.backend != Backend::cuda) return;
    expect_no_wgmma_serialization(r);
    for (const std::string& entry : r.source.entries()) {
      ASSERT_TRUE(r.code.resources.count(entry)) << entry << " missing: " << r.code.log;
      EXPECT_EQ(r.code.resources.at(entry).spill_stores, 0) << r.key.readable_name << " " << entry << " spills";
    }
  });
}

// The split-K combine and the persistent reduce (decode/combine.cuh) for kv_lora_rank 16 .. 1024:
// no spills or local memory on either vendor, and on sm_90a more than 40 registers, i.e. room for
// the 8 x 16-byte loads a thread keeps in flight (32 registers of values alone): the stub's
// __launch_bounds__ minimum CTAs per SM is what gets them (ptxas otherwise allots 32).
TEST(Compile, CombineKernelsKeepTheirLoadsInRegisters) {
  std::vector<Spec> specs;
  for (Op op : {Op::decode, Op::persistent_decode}) {
    for (int rank : {16, 144, 512, 1024}) {
      Spec s;
      s.op = op;
      s.kv_lora_rank = rank;
      s.page_size = 64;
      s.return_lse = rank == 512;
      specs.push_back(s);
    }
  }
  const int compiled = compile_every_family(specs, [](const Target& target, const runtime::JitResult& r) {
    const std::string& entry = r.source.combine_entry;
    ASSERT_TRUE(r.code.resources.count(entry)) << entry << " missing from " << r.key.readable_name;
    const runtime::KernelResources& res = r.code.resources.at(entry);
    std::printf("[ combine ] %-8s %-90s %3d registers, %d B shared\n", target.arch.c_str(), r.key.readable_name.c_str(),
                res.registers, res.shared_bytes);
    EXPECT_EQ(res.spill_stores, 0) << r.key.readable_name << " " << entry << " spills";
    EXPECT_EQ(res.local_bytes, 0) << r.key.readable_name << " " << entry << " uses local memory";
    if (target.backend == Backend::cuda) {
      EXPECT_GT(res.registers, 40) << r.key.readable_name << " " << entry;
    }
  });
  if (compiled == 0) GTEST_SKIP() << "neither NVRTC nor hipRTC found on this machine";
}

// The model's mma tile for `spec` with its shape forced.
TileConfig mma_tile(const Spec& spec, const Target& target, int rows, int tokens, int stages) {
  TileConfig tile = tuning::choose_tile(spec, target, KernelFamily::mma);
  tile.heads_per_cta = rows;
  tile.tokens_per_tile = tokens;
  tile.stages = stages;
  return tile;
}

// Compiles (spec, tile) and checks that stage 1 spills at most `spill_bytes` (0: neither spills nor
// uses local memory) and that its wgmmas (if any) are not serialised; prints its registers, shared
// memory and CTAs per SM under `label`.
void expect_stage1_compiles_clean(const Spec& spec, const TileConfig& tile, const Target& target, const char* label,
                                  int spill_bytes = 0) {
  runtime::JitResult r;
  ASSERT_NO_THROW(r = runtime::jit_compile(spec, tile, target, nullptr)) << kernel_base_name(spec, tile);
  ASSERT_TRUE(r.code.resources.count("mla_decode_stage1")) << r.code.log;
  const runtime::KernelResources& res = r.code.resources.at("mla_decode_stage1");
  std::printf("[ %s ] %-90s %3d registers, %d B shared, %d CTA/SM\n", label, r.key.readable_name.c_str(),
              res.registers, decode_shared_bytes(spec, tile), decode_ctas_per_sm(spec, tile, target));
  EXPECT_LE(res.spill_stores, spill_bytes) << r.key.readable_name << " spills";
  EXPECT_LE(res.spill_loads, spill_bytes) << r.key.readable_name << " spills";
  EXPECT_LE(res.local_bytes, spill_bytes) << r.key.readable_name << " uses local memory";
  expect_no_wgmma_serialization(r);
}

// Multi-row mma CTAs (2 and 4 M tiles, 32 / 64 rows): every tile shape that fits sm_90a's shared
// memory compiles without spills, with the features that add registers (fused RoPE, soft-cap,
// LSE, fp16, fp32 output; soft-cap and fp32 output not together, see below). 64 rows hold 128 fp32 accumulators per thread at one CTA per SM.
TEST(Compile, MultiRowMmaTilesCompileWithoutSpills) {
  const Target target = parse_target("sm_90a");
  skip_without_compiler(target.backend);
  struct Shape {
    int rows, tokens, stages;
  };
  int i = 0;
  for (const Shape& shape : {Shape{32, 32, 4}, Shape{32, 64, 2}, Shape{64, 32, 3}, Shape{64, 32, 2}}) {
    for (int variant = 0; variant < 3; ++variant, ++i) {
      Spec spec;
      spec.heads = i % 2 == 0 ? 128 : 20;
      spec.s_q = i % 3 + 1;
      spec.page_size = i % 2 == 0 ? 64 : 1;
      if (variant == 1) {
        spec.q_dtype = spec.kv_dtype = DType::fp16;
        spec.out_dtype = DType::fp32;
        spec.rope = RopeStyle::neox;
        spec.return_lse = true;
      } else if (variant == 2) {
        // Soft-cap with bf16 output. Known issue (bench/NOTES.md, mma v3): 64 rows + soft-cap +
        // fp32 output spill 4 B (255 registers); not asserted here until that is fixed.
        spec.logit_cap = 30.0f;
        spec.return_lse = true;
        spec.rope = RopeStyle::gptj;
      }
      const TileConfig tile = mma_tile(spec, target, shape.rows, shape.tokens, shape.stages);
      expect_stage1_compiles_clean(spec, tile, target, "mma rows");
      EXPECT_EQ(decode_ctas_per_sm(spec, tile, target), 1);
    }
  }
}

// The wide wgmma tile (64 rows: 2 consumer warpgroups on every tile, m64n64 S, m64n256 RS PV)
// compiles for sm_90a without spills with bf16 / fp16, LSE, the soft-cap, fp32 output, s_q > 1
// and the persistent walker.
TEST(Compile, WideWgmmaTilesCompileWithoutSpills) {
  const Target target = parse_target("sm_90a");
  skip_without_compiler(target.backend);
  int i = 0;
  for (int round = 0; round < 2; ++round) {  // pages 64 and 1 alternate; 64-token tiles, then 32
    for (int variant = 0; variant < 3; ++variant, ++i) {
      Spec spec;
      spec.heads = variant == 0 ? 128 : 64;
      spec.s_q = variant == 2 ? 2 : 1;
      spec.page_size = i % 2 == 0 ? 64 : 1;
      if (variant == 1) {
        spec.q_dtype = spec.kv_dtype = DType::fp16;
        spec.out_dtype = DType::fp32;
        spec.return_lse = true;
      } else if (variant == 2) {
        spec.logit_cap = 30.0f;
        spec.return_lse = true;
      }
      TileConfig tile = tuning::choose_tile(spec, target, KernelFamily::wgmma);
      tile.heads_per_cta = 64;
      tile.tokens_per_tile = round == 0 ? 64 : 32;  // 2 slots of 64 tokens, 4 of 32
      tile.stages = wgmma_stages(tile);
      ASSERT_NO_THROW(validate(tile, spec, target)) << kernel_base_name(spec, tile);
      // The soft-cap (tanhf on 32 logits next to 128 accumulators) tips the consumer's 224
      // registers over by one 8-byte spill, reloaded once a tile pair; nothing else may spill.
      expect_stage1_compiles_clean(spec, tile, target, "wgmma 64", spec.logit_cap > 0.0f ? 8 : 0);
    }
  }
  Spec persistent;
  persistent.op = Op::persistent_decode;
  persistent.heads = 128;
  persistent.s_q = 2;
  persistent.return_lse = true;
  TileConfig wide = tuning::choose_tile(persistent, target, KernelFamily::wgmma);
  wide.heads_per_cta = 64;
  runtime::JitResult r;
  ASSERT_NO_THROW(r = runtime::jit_compile(persistent, wide, target, nullptr));
  expect_no_wgmma_serialization(r);
  for (const std::string& entry : r.source.entries()) {
    ASSERT_TRUE(r.code.resources.count(entry)) << entry;
    EXPECT_EQ(r.code.resources.at(entry).spill_stores, 0) << r.key.readable_name << " " << entry << " spills";
  }
  Spec fp8;
  fp8.kv_dtype = DType::fp8_e4m3;
  fp8.heads = 128;
  TileConfig tile = tuning::choose_tile(fp8, target, KernelFamily::wgmma);
  tile.heads_per_cta = 64;
  EXPECT_THROW(validate(tile, fp8, target), Error);  // fp8 stays on the narrow tiles
}

// fp8 (e4m3) caches on the mma family: every q dtype (bf16, fp16, fp8) at 16 / 32 / 64 rows (1, 2,
// 4 M tiles), 32- and 64-token tiles where they fit, compile for sm_90a without spills; so do the
// model's tiles with LSE, s_q 3, page 1 and fp32 output. Every e4m3 value is exact in the mma type.
TEST(Compile, Fp8CacheMmaTilesCompileWithoutSpills) {
  const Target target = parse_target("sm_90a");
  skip_without_compiler(target.backend);
  struct Shape {
    int rows, tokens, stages;
  };
  int i = 0;
  for (DType q : {DType::bf16, DType::fp8_e4m3, DType::fp16}) {
    for (const Shape& shape : {Shape{16, 32, 2}, Shape{16, 64, 2}, Shape{32, 32, 4}, Shape{32, 64, 2},
                               Shape{64, 32, 3}, Shape{64, 32, 4}}) {
      Spec spec;
      spec.q_dtype = q;
      spec.kv_dtype = DType::fp8_e4m3;
      spec.heads = shape.rows == 16 ? 16 : 128;
      spec.page_size = 64;
      if (i++ % 3 == 1) {
        spec.s_q = 3;
        spec.return_lse = true;
        spec.page_size = 1;
      }
      ASSERT_TRUE(mma_family_supports(spec, target));
      expect_stage1_compiles_clean(spec, mma_tile(spec, target, shape.rows, shape.tokens, shape.stages), target,
                                   "fp8 mma ");
    }
  }
  // The model's tiles of both matrix-core families, including fp32 output (which caps mma rows at
  // 32) and the persistent walker; on wgmma (fp8: 24 rows per CTA at most) also the soft-cap.
  for (DType q : {DType::bf16, DType::fp8_e4m3, DType::fp16}) {
    for (Op op : {Op::decode, Op::persistent_decode}) {
      for (KernelFamily family : {KernelFamily::mma, KernelFamily::wgmma}) {
      Spec spec;
      spec.op = op;
      spec.q_dtype = q;
      spec.kv_dtype = DType::fp8_e4m3;
      spec.out_dtype = DType::fp32;
      spec.heads = 20;
      spec.s_q = 3;
      spec.return_lse = true;
      if (family == KernelFamily::wgmma && q == DType::fp16) spec.logit_cap = 30.0f;
      const TileConfig tile = tuning::choose_tile(spec, target, family);
      ASSERT_EQ(tile.family, family);
      runtime::JitResult r;
      ASSERT_NO_THROW(r = runtime::jit_compile(spec, tile, target, nullptr)) << kernel_base_name(spec, tile);
      expect_no_wgmma_serialization(r);
      for (const std::string& entry : r.source.entries()) {
        ASSERT_TRUE(r.code.resources.count(entry)) << entry;
        EXPECT_EQ(r.code.resources.at(entry).spill_stores, 0) << r.key.readable_name << " " << entry << " spills";
      }
      }
    }
  }
}

TEST(Compile, FeatureMatrixCoversTheIssue) {
  std::set<int> s_q, pages;
  std::set<RopeStyle> ropes;
  bool capped = false, non_causal = false, fp8_q = false, fp8_kv_only = false;
  for (const Spec& s : feature_matrix()) {
    s_q.insert(s.s_q);
    pages.insert(s.page_size);
    ropes.insert(s.rope);
    capped |= s.logit_cap > 0;
    non_causal |= !s.causal && s.s_q > 1;
    fp8_q |= s.q_dtype == DType::fp8_e4m3;
    fp8_kv_only |= s.q_dtype == DType::bf16 && s.kv_dtype == DType::fp8_e4m3;
  }
  EXPECT_EQ(s_q, (std::set<int>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(pages, (std::set<int>{1, 16, 128, 256}));
  EXPECT_EQ(ropes.size(), 3u);
  EXPECT_TRUE(capped && non_causal && fp8_q && fp8_kv_only);
}

// Persistent decode (Op::persistent_decode): the metadata kernel, the persistent stage 1 of every
// family serving the spec and the reduce compile for sm_90a without spills, and for gfx90a
// (portable; bf16 / fp16 as AMD CI promises) where hipRTC is present.
std::vector<Spec> persistent_specs() {
  std::vector<Spec> specs;
  Spec s;
  s.op = Op::persistent_decode;
  s.page_size = 64;
  specs.push_back(s);  // DeepSeek TP8: 16 heads, s_q 1
  s.heads = 20;
  s.s_q = 3;
  s.page_size = 16;
  s.q_dtype = s.kv_dtype = s.out_dtype = DType::fp16;
  s.return_lse = true;
  specs.push_back(s);
  s = Spec{};
  s.op = Op::persistent_decode;
  s.heads = 128;
  s.rope = RopeStyle::neox;
  specs.push_back(s);
  s = Spec{};
  s.op = Op::persistent_decode;
  s.kv_dtype = DType::fp8_e4m3;  // both families (mma widens the fp8 tile)
  s.s_q = 3;
  s.page_size = 64;
  specs.push_back(s);
  return specs;
}

TEST(Compile, PersistentEntriesCompileForEveryFamilyWithoutSpills) {
  const int compiled = compile_every_family(persistent_specs(), [](const Target& target, const runtime::JitResult& r) {
    ASSERT_EQ(r.source.entries().size(), 3u);
    for (const std::string& entry : r.source.entries()) {
      ASSERT_TRUE(r.code.resources.count(entry)) << entry << " missing from " << r.key.readable_name;
      if (target.backend == Backend::cuda) {
        EXPECT_GT(r.code.resources.at(entry).registers, 0) << entry;
        EXPECT_EQ(r.code.resources.at(entry).spill_stores, 0) << r.key.readable_name << " " << entry << " spills";
      }
    }
  });
  if (compiled == 0) GTEST_SKIP() << "neither NVRTC nor hipRTC found on this machine";
}

// The developers' timeline builds (templates/decode/trace.cuh) compile, so they are there when a
// GPU session needs them: the per-tile one (-DMLJ_TRACE=1) and the phases-only one
// (-DMLJ_TRACE_PHASES=1), which must leave the kernels' registers unspilled (it is meant to
// time the persistent path with little distortion).
TEST(Compile, TraceBuildsCompileForNvidia) {
  const Target target = parse_target("sm_90a");
  skip_without_compiler(target.backend);
  for (const char* option : {"-DMLJ_TRACE=1", "-DMLJ_TRACE_PHASES=1"}) {
    ScopedEnv env("MLAJIT_COMPILE_OPTIONS", option);
    for (Op op : {Op::decode, Op::persistent_decode}) {
      Spec spec;
      spec.op = op;
      spec.page_size = 64;
      const runtime::JitResult r = runtime::jit_compile(spec, tuning::choose_tile(spec, target), target, nullptr);
      for (const std::string& entry : r.source.entries()) {
        ASSERT_TRUE(r.code.resources.count(entry)) << entry << " missing from " << r.key.readable_name << " " << option;
        if (std::string(option) == "-DMLJ_TRACE_PHASES=1") {
          EXPECT_EQ(r.code.resources.at(entry).spill_stores, 0) << r.key.readable_name << " " << entry << " spills";
        }
      }
    }
  }
}

TEST(Compile, Fp8AndSoftCapCompileForNvidia) {
  const Target target = parse_target("sm_90a");
  skip_without_compiler(target.backend);
  Spec spec;
  spec.q_dtype = DType::fp8_e4m3;
  spec.kv_dtype = DType::fp8_e4m3;
  spec.logit_cap = 30.0f;
  EXPECT_NO_THROW(runtime::jit_compile(spec, tuning::choose_tile(spec, target), target, nullptr));
}

TEST(Compile, FailureCarriesTheCompilerLog) {
  const Target target = parse_target("sm_90a");
  skip_without_compiler(target.backend);
  Source broken = generate(Spec{}, TileConfig{}, target);
  broken.text += "\nthis_is_not_cuda x y z;\n";
  try {
    runtime::backend(Backend::cuda).compile(broken, target);
    FAIL() << "compiled broken source";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::compile_failed);
    EXPECT_NE(std::string(e.what()).find("this_is_not_cuda"), std::string::npos) << e.what();
  }
}

TEST(Compile, KeyChangesWithTargetAndSpecButNotSplits) {
  const Target sm90 = parse_target("sm_90a");
  skip_without_compiler(sm90.backend);
  auto key = [](const Spec& s, const TileConfig& t, const Target& target) {
    const Source src = generate(s, t, target);
    return runtime::kernel_key(src, s, t, target, runtime::backend(target.backend)).hash;
  };
  Spec s;
  TileConfig t;
  const std::string base = key(s, t, sm90);
  EXPECT_EQ(base, key(s, t, sm90));
  EXPECT_NE(base, key(s, t, parse_target("sm_80")));
  Spec other = s;
  other.page_size = 64;
  EXPECT_NE(base, key(other, t, sm90));
  TileConfig split = t;
  split.num_splits = 9;
  EXPECT_EQ(base, key(s, split, sm90));
  Spec persistent = s;
  persistent.op = Op::persistent_decode;
  EXPECT_NE(base, key(persistent, t, sm90));
}

// A generator constant (block size, minimum CTAs an SM, ...) lives only in the rendered stub; the
// key hashes it, so changing one cannot serve a kernel built with the old value (session 11 lost a
// device call to that before the stub was in the key).
TEST(Compile, KeyChangesWithTheRenderedStub) {
  const Target sm90 = parse_target("sm_90a");
  skip_without_compiler(sm90.backend);
  Spec s;
  s.op = Op::persistent_decode;
  const TileConfig t;
  Source src = generate(s, t, sm90);
  const std::string base = runtime::kernel_key(src, s, t, sm90, runtime::backend(sm90.backend)).hash;
  const std::string threads = "__launch_bounds__(" + std::to_string(src.schedule_threads) + ")";
  const std::size_t at = src.text.find(threads);
  ASSERT_NE(at, std::string::npos) << "the metadata kernel's block size in the stub";
  src.text.replace(at, threads.size(), "__launch_bounds__(128)");
  const cache::KernelKey changed = runtime::kernel_key(src, s, t, sm90, runtime::backend(sm90.backend));
  EXPECT_NE(base, changed.hash);
  EXPECT_NE(changed.fields["template_digest"].get<std::string>().find(";rendered="), std::string::npos);
}

}  // namespace
}  // namespace mlajit
