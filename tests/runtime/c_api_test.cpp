// The C ABI: status codes and messages; what works without a GPU.
#include <gtest/gtest.h>

#include <cstddef>
#include <string>

#include "mlajit/mlajit.h"

namespace {

TEST(CApi, StatusStringsAndVersion) {
  EXPECT_STREQ(mlajit_status_string(MLAJIT_OK), "ok");
  EXPECT_STREQ(mlajit_status_string(MLAJIT_ERROR_INVALID_ARGUMENT), "invalid argument");
  EXPECT_STRNE(mlajit_version(), "");
}

TEST(CApi, InitSetsAiterDefaults) {
  mlajit_decode_args a;
  mlajit_decode_args_init(&a);
  EXPECT_EQ(a.struct_size, sizeof(mlajit_decode_args));
  EXPECT_EQ(a.kv_lora_rank, 512);
  EXPECT_EQ(a.rope_dim, 64);
  EXPECT_EQ(a.causal, 1);
  EXPECT_EQ(a.q_scale, 1.0f);
  EXPECT_EQ(a.num_kv_splits, 0);
  EXPECT_EQ(a.rope, MLAJIT_ROPE_NONE);
  EXPECT_EQ(a.cos_sin_dtype, MLAJIT_BF16);
  EXPECT_EQ(a.k_pe_out, nullptr);
}

TEST(CApi, RopeFieldsComeAfterEveryOlderField) {
  // Appended, so a caller built against the older header has a smaller struct_size.
  EXPECT_GT(offsetof(mlajit_decode_args, rope), offsetof(mlajit_decode_args, stream));
  EXPECT_GT(offsetof(mlajit_decode_args, k_pe_out), offsetof(mlajit_decode_args, cos_sin_cache));
  EXPECT_GT(offsetof(mlajit_decode_args, positions), offsetof(mlajit_decode_args, max_positions));
}

TEST(CApi, NullArgumentsAreNamed) {
  EXPECT_EQ(mlajit_context_create(MLAJIT_BACKEND_CUDA, 0, nullptr), MLAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(mlajit_last_error()).find("'context'"), std::string::npos) << mlajit_last_error();
  mlajit_decode_args a;
  mlajit_decode_args_init(&a);
  EXPECT_EQ(mlajit_decode(nullptr, &a), MLAJIT_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(mlajit_last_error()).find("'context'"), std::string::npos);
}

TEST(CApi, ContextWithoutDeviceFailsClearly) {
  mlajit_context* ctx = reinterpret_cast<mlajit_context*>(0x1);
  const mlajit_status s = mlajit_context_create(MLAJIT_BACKEND_CUDA, 0, &ctx);
  if (s == MLAJIT_OK) {
    mlajit_context_destroy(ctx);
    GTEST_SKIP() << "a CUDA device is present; this test covers machines without one";
  }
  EXPECT_EQ(s, MLAJIT_ERROR_BACKEND_UNAVAILABLE) << mlajit_last_error();
  EXPECT_EQ(ctx, nullptr);
  EXPECT_NE(std::string(mlajit_last_error()).find("CUDA"), std::string::npos) << mlajit_last_error();
}

}  // namespace
