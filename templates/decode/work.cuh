// What one stage-1 CTA computes, and the two ways of deriving it: from the launch grid
// (request x row group x KV split) and from a persistent worker's items (decode/schedule.cuh).
// Every stage-1 family (portable.cuh, mma.cuh) is a body `work(p, DecodeWork)`; the grid kernel
// and the persistent kernel of each family are these two walkers around that one body.
#pragma once

#include "decode/numeric.cuh"
#include "decode/params.cuh"
#include "decode/schedule.cuh"

namespace mlj {

// Rows row0 .. row0 + rows - 1 of request `request` (row = token * heads + head over its query
// tokens) over its KV tokens [kv_begin, kv_end) (relative to the request's start), with each row's
// causal limit. partial_out null: the final output (+ LSE). Otherwise the normalised fp32 partial
// of row `row` goes to partial_out row partial_base + row (x v_dim) and its natural-log LSE to
// partial_lse[partial_base + row]. zero_keyless: this CTA writes the zeros of the request's
// keyless query tokens to k_pe_out (fused RoPE; exactly one CTA per row group may do so).
// span: the request's (schedule.cuh's RequestSpan); on the persistent path a worker's first item
// brings its own (its head).
struct DecodeWork {
  RequestSpan span;  // of `request`
  int request;
  int row0;
  int kv_begin;
  int kv_end;
  bool zero_keyless;
  float* partial_out;
  float* partial_lse;
  long long partial_base;
};

// Tokens of request b's KV cache (mla-semantics §1.1).
template <int kPageSize>
MLJ_DEVICE int request_kv_len(const MljDecodeParams& p, int b) {
  const int num_pages = p.kv_indptr[b + 1] - p.kv_indptr[b];
  return num_pages > 0 ? (num_pages - 1) * kPageSize + p.kv_last_page_lens[b] : 0;
}

template <int kPageSize>
MLJ_DEVICE RequestSpan request_span(const MljDecodeParams& p, int b) {
  RequestSpan span;
  span.q_begin = p.qo_indptr[b];
  span.q_count = p.qo_indptr[b + 1] - span.q_begin;
  span.page_begin = p.kv_indptr[b];
  span.kv_len = request_kv_len<kPageSize>(p, b);
  return span;
}

// Grid form: x = group of kRows query rows, y = request, z = KV split. Each split covers whole
// tiles of kTile tokens so that splits never share a tile. Returns false when the CTA's rows lie
// past its request's query tokens (nothing to do).
template <class Cfg, int kRows, int kTile>
MLJ_DEVICE bool grid_work(const MljDecodeParams& p, DecodeWork& work) {
  const int request = blockIdx.y;
  const int split = blockIdx.z;
  const int row0 = blockIdx.x * kRows;
  work.span = request_span<Cfg::kPageSize>(p, request);
  const int q_begin = work.span.q_begin;
  if (row0 >= work.span.q_count * Cfg::kHeads) return false;
  const int kv_len = work.span.kv_len;
  const int chunk = ceil_div(ceil_div(kv_len, p.num_splits), kTile) * kTile;
  work.request = request;
  work.row0 = row0;
  work.kv_begin = min_int(kv_len, split * chunk);
  work.kv_end = min_int(kv_len, work.kv_begin + chunk);
  work.zero_keyless = split == 0;
  const bool final_output = p.num_splits == 1;
  work.partial_out = final_output ? nullptr : p.partial_out;
  work.partial_lse = final_output ? nullptr : p.partial_lse;
  work.partial_base = ((long long)split * p.total_q + q_begin) * Cfg::kHeads;
  return true;
}

// Persistent form (decode/schedule.cuh's design note): grid x = the schedule's workers. CTA w runs
// its items work_indptr[w] .. work_indptr[w+1] one after another through `body`, rows
// row_group * kRows .. of the item's request over its KV range; the schedule must have been built
// with rows_per_item == kRows. An unsplit tile (slot -1) writes o (+ LSE); a piece of a split tile
// writes its normalised fp32 partial and natural-log LSE to rows slot * kRows + r of
// p.partial_out / p.partial_lse ([max_partials * rows_per_item] rows, persistent_layout), merged
// by decode_persistent_reduce (decode/combine.cuh). p.num_splits is not read.
// An item's fields as the work of its rows (all but the request's span).
template <int kRows>
MLJ_DEVICE DecodeWork persistent_work(const MljDecodeParams& p, const int* item) {
  DecodeWork work;
  work.request = item[kItemRequest];
  work.row0 = item[kItemRowGroup] * kRows;
  work.kv_begin = item[kItemKvBegin];
  work.kv_end = item[kItemKvEnd];
  work.zero_keyless = item[kItemPiece] == 0;
  const int slot = item[kItemPartial];
  work.partial_out = slot < 0 ? nullptr : p.partial_out;
  work.partial_lse = slot < 0 ? nullptr : p.partial_lse;
  work.partial_base = (long long)slot * kRows - work.row0;  // row row0 + r -> slot row r
  return work;
}

// PersistentList is CTA w's list, from its head (schedule.cuh): its item count and item i, the first
// from the head itself (with its request's span), the others from work_items (and the indptrs);
// persistent_walk runs a worker's items through a block-wide `body` (a warp-specialised family
// walks the items itself, per role: wgmma.cuh) and counts each split piece in layout.pieces_done
// once it is written (PersistentPieceCount).
template <class Cfg, int kRows>
struct PersistentList {
  const MljDecodeParams& p;
  const MljPersistentLayout& layout;
  const int* head;
  int begin;
  int count;

  MLJ_DEVICE PersistentList(const MljDecodeParams& params, const MljPersistentLayout& l, int worker)
      : p(params), layout(l), head(l.worker_heads + worker * kMljWorkerHeadInts) {
    begin = head[kHeadBegin];
    count = head[kHeadEnd] - begin;
  }

  MLJ_DEVICE DecodeWork item(int i) const {
    const int* fields = i == 0 ? head + kHeadItem : layout.work_items + (long long)(begin + i) * kItemInts;
    DecodeWork work = persistent_work<kRows>(p, fields);
    if (i == 0) {
      work.span = RequestSpan{head[kHeadQBegin], head[kHeadQCount], head[kHeadPageBegin], head[kHeadKvLen]};
    } else {
      work.span = request_span<Cfg::kPageSize>(p, work.request);
    }
    return work;
  }
};

// What a stage-1 CTA does once a split piece is written (its partial rows and LSEs, by every
// writer thread, each after mlj_fence_device, then a barrier): nothing on the grid path (its
// combine waits for the whole grid); on the persistent path one thread counts the piece for the
// reduce, which waits for its tile's count (decode_persistent_reduce) instead of for all of stage 1.
struct NoPieceCount {
  static constexpr bool kCounts = false;
  MLJ_DEVICE void operator()(const DecodeWork&) const {}
};
template <int kRows>
struct PersistentPieceCount {
  static constexpr bool kCounts = true;
  const MljPersistentLayout& layout;
  MLJ_DEVICE void operator()(const DecodeWork& work) const {
    mlj_atomic_add(layout.pieces_done + work.request * layout.groups + work.row0 / kRows, 1);
    trace_phase_now_last(kPhasePieceLast);  // MLJ_TRACE / MLJ_TRACE_PHASES only (decode/trace.cuh)
  }
};

template <class Cfg, int kRows, class Body>
MLJ_DEVICE void persistent_walk(const MljDecodeParams& p, const MljPersistentLayout& layout, Body body) {
  const PersistentList<Cfg, kRows> list(p, layout, blockIdx.x);
  for (int i = 0; i < list.count; ++i) {
    if (i > 0) mlj_barrier();  // the previous item's readers of shared memory are done
    const DecodeWork work = list.item(i);
    body(work);
    if (work.partial_out != nullptr) {
      mlj_fence_device();
      mlj_barrier();
      if (threadIdx.x == 0) PersistentPieceCount<kRows>{layout}(work);
    }
  }
}

}  // namespace mlj
