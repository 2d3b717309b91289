// Compile tier: every default catalogue entry compiles with NVRTC (sm_80, sm_90a) and, where
// hipRTC is present, for gfx90a; compile errors carry the compiler log. No GPU needed.
#include <gtest/gtest.h>

#include "codegen/error.hpp"
#include "runtime/jit.hpp"
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

class CatalogCompile : public ::testing::TestWithParam<std::string> {};

TEST_P(CatalogCompile, EveryDefaultEntryCompiles) {
  const Target target = parse_target(GetParam());
  skip_without_compiler(target.backend);
  for (const Spec& spec : tools::default_catalog()) {
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
}

}  // namespace
}  // namespace mlajit
