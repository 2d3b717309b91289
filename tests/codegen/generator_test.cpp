// The generator: golden stub, headers, digest, validation before rendering.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "cache/kernel_cache.hpp"
#include "codegen/error.hpp"
#include "codegen/generator.hpp"
#include "tuning/choose.hpp"

namespace mlajit {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Spec golden_spec() {
  Spec s;
  s.heads = 20;
  s.page_size = 16;
  s.s_q = 3;
  return s;
}

// Regenerate after an intended change with:
//   build/mlajit gen --heads 20 --page-size 16 --sq 3 --arch sm_90a --family mma --stub > tests/codegen/golden/decode_h20_ps16_sq3_sm90a.cu
TEST(Generator, StubMatchesGoldenFile) {
  const Target target = parse_target("sm_90a");
  TileConfig tile;  // the mma family's model tile for this spec (60 rows: one 64-row CTA)
  tile.family = KernelFamily::mma;
  tile.heads_per_cta = 64;
  tile.stages = 3;
  EXPECT_EQ(tile, tuning::choose_tile(golden_spec(), target, KernelFamily::mma));
  const Source source = generate(golden_spec(), tile, target);
  const std::string golden = read_file(std::string(MLAJIT_TEST_DATA_DIR) + "/codegen/golden/decode_h20_ps16_sq3_sm90a.cu");
  ASSERT_FALSE(golden.empty()) << "golden file missing";
  EXPECT_EQ(source.text, golden);
}

TEST(Generator, PicksThePlatformPreludePerTarget) {
  TileConfig tile;
  tile.tokens_per_tile = 16;
  tile.warps = 4;
  const Source nv = generate(golden_spec(), tile, parse_target("sm_80"));
  const Source amd = generate(golden_spec(), tile, parse_target("gfx90a"));
  EXPECT_NE(nv.text.find("#include \"platform/nvidia.cuh\""), std::string::npos);
  EXPECT_NE(amd.text.find("#include \"platform/amd.cuh\""), std::string::npos);
  EXPECT_EQ(nv.stage1_threads, 128);
  EXPECT_EQ(amd.stage1_threads, 256);  // 4 wavefronts of 64
  // Kernel bodies are headers; the rendered stub stays small.
  EXPECT_LT(nv.text.size(), 2500u);
}

TEST(Generator, DigestCoversEveryTemplateAndMatchesItsText) {
  const Source s = generate(golden_spec(), TileConfig{}, parse_target("sm_90a"));
  const std::string digest = s.template_digest();
  for (const SourceHeader& h : s.headers) {
    EXPECT_EQ(std::string(h.sha256), cache::sha256_hex(h.text.data(), h.text.size())) << h.include_name;
    EXPECT_NE(digest.find(h.include_name + "=" + std::string(h.sha256)), std::string::npos);
  }
  EXPECT_NE(digest.find("decode/stub.cu.in="), std::string::npos);
}

TEST(Generator, FlattenInlinesEachHeaderOnce) {
  const Source s = generate(golden_spec(), TileConfig{}, parse_target("sm_90a"));
  const std::string flat = flatten(s);
  EXPECT_EQ(flat.find("#include \""), std::string::npos) << "an include was left in the flattened source";
  const std::string marker = "// ---- begin decode/numeric.cuh ----";
  const auto first = flat.find(marker);
  ASSERT_NE(first, std::string::npos);
  EXPECT_EQ(flat.find(marker, first + 1), std::string::npos);
}

TEST(Generator, RopeStyleReachesTheStubAndItsHeaderIsGiven) {
  Spec spec = golden_spec();
  spec.rope = RopeStyle::gptj;
  const Source s = generate(spec, TileConfig{}, parse_target("sm_90a"));
  EXPECT_NE(s.text.find("kRope = mlj::RopeStyle::gptj;"), std::string::npos) << s.text;
  EXPECT_NE(s.kernel_name.find("_rope-gptj"), std::string::npos) << s.kernel_name;
  bool has_rope_header = false;
  for (const SourceHeader& h : s.headers) has_rope_header |= h.include_name == "decode/rope.cuh";
  EXPECT_TRUE(has_rope_header);
}

TEST(Generator, PersistentOpRendersTheMetadataKernelPersistentStage1AndReduce) {
  Spec spec = golden_spec();
  spec.op = Op::persistent_decode;
  for (KernelFamily family : {KernelFamily::portable, KernelFamily::mma}) {
    TileConfig tile;
    tile.family = family;
    if (family == KernelFamily::mma) tile.stages = 2;
    const Source s = generate(spec, tile, parse_target("sm_90a"));
    EXPECT_EQ(s.stage1_entry, "mla_decode_persistent");
    EXPECT_EQ(s.combine_entry, "mla_decode_persistent_reduce");
    EXPECT_EQ(s.schedule_entry, "mla_decode_schedule");
    EXPECT_EQ(s.entries().size(), 3u);
    EXPECT_GT(s.schedule_threads, 0);
    EXPECT_EQ(s.schedule_shared_bytes, 8 * s.schedule_threads * 4);
    for (const std::string& e : s.entries()) EXPECT_NE(s.text.find(e + "("), std::string::npos) << e;
    const std::string body = family == KernelFamily::mma ? "decode_persistent_mma" : "decode_persistent_portable";
    EXPECT_NE(s.text.find("mlj::" + body + "<MljDecodeConfig>(p, layout)"), std::string::npos) << s.text;
    EXPECT_NE(s.text.find("mlj::persistent_schedule<"), std::string::npos);
    EXPECT_NE(s.text.find("\"op\":\"persistent-decode\""), std::string::npos);
    EXPECT_EQ(s.kernel_name.rfind("mla_persistent-decode_", 0), 0u) << s.kernel_name;
    const std::string digest = s.template_digest();
    EXPECT_NE(digest.find("decode/persistent.cu.in="), std::string::npos) << digest;
    EXPECT_NE(digest.find("decode/config.cu.in="), std::string::npos) << digest;
    EXPECT_EQ(digest.find("decode/stub.cu.in="), std::string::npos) << digest;
  }
  // The grid decode keeps its two entries; the same spec and tile as decode is a different source.
  const Source grid = generate(golden_spec(), TileConfig{}, parse_target("sm_90a"));
  EXPECT_TRUE(grid.schedule_entry.empty());
  EXPECT_EQ(grid.entries().size(), 2u);
  EXPECT_NE(generate(spec, TileConfig{}, parse_target("sm_90a")).text, grid.text);
}

TEST(Generator, OpNamesParse) {
  EXPECT_EQ(parse_op("decode"), Op::decode);
  EXPECT_EQ(parse_op("persistent-decode"), Op::persistent_decode);
  EXPECT_EQ(op_name(Op::persistent_decode), "persistent-decode");
  try {
    parse_op("persistent", "--op");
    FAIL() << "accepted an unknown op";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'--op'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("persistent-decode"), std::string::npos) << e.what();
  }
  Spec spec;
  spec.op = Op::persistent_decode;
  EXPECT_EQ(spec_from_json(to_json(spec)).op, Op::persistent_decode);
}

TEST(Generator, ValidatesBeforeRendering) {
  Spec bad = golden_spec();
  bad.heads = 0;
  EXPECT_THROW(generate(bad, TileConfig{}, parse_target("sm_90a")), Error);
  TileConfig bad_tile;
  bad_tile.warps = 3;
  EXPECT_THROW(generate(golden_spec(), bad_tile, parse_target("sm_90a")), Error);
}

}  // namespace
}  // namespace mlajit
