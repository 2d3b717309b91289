// Parsing of NVRTC's ptxas -v log into per-kernel resources.
#include <gtest/gtest.h>

#include "runtime/cuda/ptxas_log.hpp"

namespace mlajit::runtime::cuda {
namespace {

TEST(PtxasLog, ReadsEveryEntry) {
  const std::string log =
      "ptxas info    : 0 bytes gmem\n"
      "ptxas info    : Compiling entry function 'mla_decode_stage1' for 'sm_90a'\n"
      "ptxas info    : Function properties for mla_decode_stage1\n"
      "    16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n"
      "ptxas info    : Used 128 registers, used 1 barriers, 2048 bytes smem, 400 bytes cmem[0]\n"
      "ptxas info    : Function properties for mla_decode_combine\n"
      "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
      "ptxas info    : Used 32 registers, used 0 barriers, 392 bytes cmem[0]\n";
  const auto r = parse_ptxas_log(log);
  ASSERT_EQ(r.size(), 2u);
  const KernelResources& s1 = r.at("mla_decode_stage1");
  EXPECT_EQ(s1.registers, 128);
  EXPECT_EQ(s1.shared_bytes, 2048);
  EXPECT_EQ(s1.local_bytes, 16);
  EXPECT_EQ(s1.spill_stores, 8);
  EXPECT_EQ(s1.spill_loads, 12);
  EXPECT_EQ(s1.origin, "ptxas");
  EXPECT_EQ(r.at("mla_decode_combine").registers, 32);
  EXPECT_EQ(r.at("mla_decode_combine").shared_bytes, 0);
}

TEST(PtxasLog, SurvivesHugeAndOddLines) {
  std::string log = "warning: " + std::string(500000, 'x') + "\n";
  log += "ptxas info    : Function properties for k\n";
  log += std::string(300000, '9') + " registers Used\n";  // garbage that looks half like a line
  log += "ptxas info    : Used 40 registers\n";
  const auto r = parse_ptxas_log(log);
  ASSERT_EQ(r.count("k"), 1u);
  EXPECT_EQ(r.at("k").registers, 40);
  EXPECT_TRUE(parse_ptxas_log("").empty());
}

}  // namespace
}  // namespace mlajit::runtime::cuda
