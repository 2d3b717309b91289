// Tests of cache/explain: field differences and the nearest stored key of a target. CPU only.
#include "cache/explain.hpp"

#include <gtest/gtest.h>

#include "tests/cache/cache_test_support.hpp"

namespace mlajit::cache {
namespace {

using namespace test_support;

class ExplainTest : public CacheDirTest {};

TEST(DiffFields, WalksObjectsAndComparesArraysWhole) {
  const nlohmann::json wanted = {{"a", 1}, {"spec", {{"heads", 16}, {"lse", true}}}, {"options", {"-O3", "-g"}}};
  const nlohmann::json found = {{"a", 1}, {"spec", {{"heads", 32}}}, {"options", {"-O3"}}, {"extra", "x"}};
  const std::vector<FieldDifference> d = diff_fields(wanted, found);
  ASSERT_EQ(d.size(), 4u);
  EXPECT_EQ(d[0].field, "extra");
  EXPECT_TRUE(d[0].wanted.is_null());
  EXPECT_EQ(d[0].found, "x");
  EXPECT_EQ(d[1].field, "options");
  EXPECT_EQ(d[2].field, "spec.heads");
  EXPECT_EQ(d[2].wanted, 16);
  EXPECT_EQ(d[2].found, 32);
  EXPECT_EQ(d[3].field, "spec.lse");
  EXPECT_TRUE(diff_fields(wanted, wanted).empty());
}

TEST(DiffFields, AgainstAnEmptyObjectListsEveryLeaf) {
  const std::vector<FieldDifference> leaves = diff_fields(golden_key().fields, nlohmann::json::object());
  EXPECT_EQ(leaves.size(), 7u + 8u + 4u + 1u);  // top-level scalars and arrays, spec, tile, digest
  for (const FieldDifference& leaf : leaves) EXPECT_TRUE(leaf.found.is_null()) << leaf.field;
}

TEST(DiffFields, NamesTheTemplateThatChanged) {
  const nlohmann::json wanted = {{"template_digest", "stub.cu.in=aaa;decode/mma.cuh=bbb;platform/nvidia.cuh=ccc"}};
  const nlohmann::json found = {{"template_digest", "stub.cu.in=aaa;decode/mma.cuh=bbX;platform/nvidia.cuh=ccc"}};
  const std::vector<FieldDifference> d = diff_fields(wanted, found);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].field, "template_digest.decode/mma.cuh");
  EXPECT_EQ(d[0].wanted, "bbb");
  EXPECT_EQ(d[0].found, "bbX");
}

TEST_F(ExplainTest, NearestKeyHasTheFewestDifferencesWithinTheTarget) {
  const DiskStore store(root_);
  ASSERT_TRUE(store.store(golden_key(), make_entry("a", "cubin")));
  ASSERT_TRUE(store.store(key_with_heads(128), make_entry("b", "cubin")));
  KeyFields other_arch = golden_fields();
  other_arch.arch = "sm_80";
  other_arch.compiler_version = "12.9";
  ASSERT_TRUE(store.store(make_key(other_arch, k_name), make_entry("c", "cubin")));

  // Same as the golden key but compiled by a newer NVRTC with heads 128: the heads-128 entry is
  // one field away, the golden entry two, the sm_80 entry is another target.
  KeyFields wanted = golden_fields();
  wanted.compiler_version = "12.9";
  wanted.spec["num_heads"] = 128;
  const std::optional<NearestKey> nearest = nearest_key(root_, make_key(wanted, k_name));
  ASSERT_TRUE(nearest.has_value());
  EXPECT_EQ(nearest->key.hash, key_with_heads(128).hash);
  ASSERT_EQ(nearest->differences.size(), 1u);
  EXPECT_EQ(nearest->differences[0].field, "compiler_version");
  EXPECT_EQ(nearest->differences[0].wanted, "12.9");
  EXPECT_EQ(nearest->differences[0].found, "12.8");

  KeyFields amd = golden_fields();
  amd.backend = "hip";
  amd.arch = "gfx942";
  EXPECT_FALSE(nearest_key(root_, make_key(amd, k_name)).has_value());
}

}  // namespace
}  // namespace mlajit::cache
