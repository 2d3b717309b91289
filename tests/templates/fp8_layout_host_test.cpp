// CPU tier: the fp8 tile maps of the wgmma decode (decode/fp8_layout.cuh). The consumer reads raw
// fp8 bytes straight into wgmma's register A fragments, which permutes the K dimension of both
// products and the M dimension of O^T; these tests replay each thread's reads and check that the
// permutations are bijections that match the staged Q, the written P^T and the written output,
// and that the raw tile's swizzle keeps every V load free of shared-memory bank conflicts.
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "tests/templates/host_platform.hpp"
#include "decode/fp8_layout.cuh"

namespace {

using mlj::fp8_p_position;
using mlj::fp8_q_column;
using mlj::fp8_raw_offset;
using mlj::fp8_v_dim;

// The m64nNk16 A fragment: register r (0..3) of lane holds row g (+ 8 for r odd) and columns
// 2 u + e (+ 8 for r >= 2), e = 0 in the low half.
int fragment_column(int lane, int r, int e) { return 2 * (lane % 4) + 8 * (r / 2) + e; }

TEST(Fp8Layout, QColumnOrderIsAPermutationMatchingTheFragmentsBytes) {
  std::set<int> seen;
  for (int x = 0; x < 64; ++x) seen.insert(fp8_q_column(x));
  EXPECT_EQ(seen.size(), 64u);
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), 63);
  // Thread lane loads bytes 16 u .. 16 u + 15 of a row; k-step i takes bytes 4 i .. 4 i + 3 of
  // them: low pair (bytes 4 i, 4 i + 1) -> registers 0 / 1, high pair -> registers 2 / 3. The
  // fragment's column c of k-step i is Q's staged column 16 i + c, which must be the byte's.
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 4; ++i) {
      for (int r = 0; r < 4; ++r) {
        for (int e = 0; e < 2; ++e) {
          const int physical = 16 * (lane % 4) + 4 * i + 2 * (r / 2) + e;
          EXPECT_EQ(fp8_q_column(physical), 16 * i + fragment_column(lane, r, e)) << lane << " " << i << " " << r;
        }
      }
    }
  }
}

TEST(Fp8Layout, PPositionIsAPermutationMatchingTheVLoads) {
  std::set<int> seen;
  for (int t = 0; t < 64; ++t) {
    seen.insert(fp8_p_position(t));
    EXPECT_EQ(fp8_p_position(t) / 16, t / 16) << t;  // a k-step's tokens stay in it
  }
  EXPECT_EQ(seen.size(), 64u);
  // k-step kk, half h: thread u pairs tokens 16 kk + 8 h + u (low) and + 4 (high) into the
  // fragment's columns 2 u + 8 h (+ 1): P^T's K order must put those tokens there.
  for (int lane = 0; lane < 32; ++lane) {
    for (int kk = 0; kk < 4; ++kk) {
      for (int h = 0; h < 2; ++h) {
        for (int e = 0; e < 2; ++e) {
          const int token = 16 * kk + 8 * h + lane % 4 + 4 * e;
          EXPECT_EQ(fp8_p_position(token), 16 * kk + fragment_column(lane, 2 * h, e));
        }
      }
    }
  }
}

TEST(Fp8Layout, VDimsCoverTheOutputOnceAndMatchTheLoadedBytes) {
  std::vector<int> count(512, 0);
  for (int vb = 0; vb < 8; ++vb) {
    for (int warp = 0; warp < 4; ++warp) {
      for (int g = 0; g < 8; ++g) {  // one M row pair per lane / 4; every lane % 4 holds the same dims
        for (int t2 = 0; t2 < 2; ++t2) {
          const int dim = fp8_v_dim(vb, warp, 4 * g, t2);
          ASSERT_GE(dim, 0);
          ASSERT_LT(dim, 512);
          ++count[dim];
          for (int u = 1; u < 4; ++u) EXPECT_EQ(fp8_v_dim(vb, warp, 4 * g + u, t2), dim);
          // The byte the thread took it from: block 2 (vb / 2) + warp / 2, dword 8 (warp % 2) + g,
          // byte 2 (vb % 2) + t2.
          const int block = 2 * (vb / 2) + warp / 2;
          const int dword = 8 * (warp % 2) + g;
          EXPECT_EQ(dim, 64 * block + 4 * dword + 2 * (vb % 2) + t2);
        }
      }
    }
  }
  for (int d = 0; d < 512; ++d) EXPECT_EQ(count[d], 1) << d;
}

TEST(Fp8Layout, RawRowsHoldEveryChunkOnce) {
  for (int token = 0; token < 64; ++token) {
    std::set<int> chunks;
    for (int c = 0; c < 4; ++c) {
      const int at = fp8_raw_offset(token, c);
      EXPECT_EQ(at / 64, token);
      EXPECT_EQ(at % 16, 0);
      chunks.insert(at % 64);
    }
    EXPECT_EQ(chunks.size(), 4u) << token;
  }
}

// Shared memory: 32 banks of 4 bytes. A warp's 4-byte loads are conflict-free when its 32
// addresses fall in 32 different banks.
TEST(Fp8Layout, VLoadsOfAWarpHitEveryBankOnce) {
  for (int warp = 0; warp < 4; ++warp) {
    for (int kk = 0; kk < 4; ++kk) {
      for (int h = 0; h < 2; ++h) {
        for (int e = 0; e < 2; ++e) {
          std::set<int> banks;
          for (int lane = 0; lane < 32; ++lane) {
            const int v_chunk = 2 * (warp % 2) + lane / 16;
            const int v_byte = 4 * ((lane / 4) % 4);
            const int token = 16 * kk + 8 * h + lane % 4 + 4 * e;
            banks.insert(((fp8_raw_offset(token, v_chunk) + v_byte) / 4) % 32);
          }
          EXPECT_EQ(banks.size(), 32u) << warp << " " << kk << " " << h << " " << e;
        }
      }
    }
  }
}

// 16-byte loads go in phases of 8 threads (128 bytes); each phase must touch 32 different banks.
TEST(Fp8Layout, SLoadsOfEachPhaseHitEveryBankOnce) {
  for (int warp = 0; warp < 4; ++warp) {
    for (int half = 0; half < 2; ++half) {  // rows 16 w + g and + 8
      for (int phase = 0; phase < 4; ++phase) {
        std::set<int> banks;
        for (int lane = 8 * phase; lane < 8 * phase + 8; ++lane) {
          const int at = fp8_raw_offset(16 * warp + lane / 4 + 8 * half, lane % 4);
          for (int w = 0; w < 4; ++w) banks.insert((at / 4 + w) % 32);
        }
        EXPECT_EQ(banks.size(), 32u) << warp << " " << half << " " << phase;
      }
    }
  }
}

}  // namespace
