// The wgmma decode's fp8 tiles (decode/wgmma.cuh): raw bytes straight into wgmma's register
// operand. Integer layout maps only, so the CPU tier checks them (tests/templates/).
//
// The producer lands token row t of raw column block b (64 B: four 16-byte chunks) at
// 64 t of block b (b kRawBlockBytes into the slot), chunk c at position c ^ (t & 2): the swizzle that makes the
// V reads below free of bank conflicts. Consumer thread (warp w, lane: g = lane / 4, u = lane % 4):
//   S^T = K Q^T: for block b it loads chunk u of tokens 16 w + g and + 8 (16 contiguous bytes each)
//     and makes k-step i of the block from bytes 4 i .. 4 i + 3: the A fragment's columns 2 u + e
//     and 2 u + 8 + e are bytes 4 i + e and 4 i + 2 + e. So the fragment's logical column
//     16 i + 8 h + 2 u + e of block b is physical column 16 u + 4 i + 2 h + e; Q is staged in that
//     logical order (fp8_q_column), which leaves Q . K^T unchanged.
//   O^T += V^T P^T: a pair of 64-dim M blocks (2 q, 2 q + 1) takes dword 8 (w % 2) + g of raw
//     block 2 q + w / 2 (4 V dims); byte 0 / 1 are rows g / g + 8 of M block 2 q, bytes 2 / 3 those
//     of M block 2 q + 1 (fp8_v_dim maps back). k-step kk's logical tokens 2 u + e + 8 h are
//     physical tokens 16 kk + 8 h + 4 e + u (four consecutive tokens a load across u: with the
//     swizzle, every bank once); two tokens' dwords pair up byte by byte (prmt) into e4m3x2 pairs.
//     P^T is written in that logical token order (fp8_p_position).
// The slot is free once the last V bytes are in registers, before the P.V products finish.
#pragma once

namespace mlj {

MLJ_DEVICE int fp8_raw_offset(int token, int chunk) { return token * 64 + ((chunk ^ (token & 2)) << 4); }
// Physical column x (0..63) of a 64-column block -> its logical position in the staged Q.
MLJ_DEVICE int fp8_q_column(int x) { return 16 * ((x % 16) / 4) + 8 * ((x / 2) % 2) + 2 * (x / 16) + x % 2; }
// Physical token (0..63) of a tile -> its position in P^T (the K order of V^T P^T).
MLJ_DEVICE int fp8_p_position(int token) {
  return (token & ~15) | ((token & 3) << 1) | ((token >> 2) & 1) | (token & 8);
}
// The V dimension of accumulator block vb, row half t2 (0: row g, 1: g + 8) of this thread.
MLJ_DEVICE int fp8_v_dim(int vb, int warp, int lane, int t2) {
  return 64 * (2 * (vb / 2) + warp / 2) + 32 * (warp % 2) + 4 * (lane / 4) + 2 * (vb % 2) + t2;
}

}  // namespace mlj
