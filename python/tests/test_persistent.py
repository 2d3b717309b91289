"""The persistent form of mla_decode_fwd with get_mla_metadata_info_v1 / get_mla_metadata_v1 on a
GPU, against the float32 reference of test_decode: any GQA (1, 16, 20, 128), s_q 1 and 3, pages
1 / 16 / 64, ragged batches with empty and one-token requests, batch 1 and 1024, bf16 / fp16 /
fp8 KV, LSE, a captured CUDA graph (metadata + decode) replayed with new lengths, and one fill
serving three layers' decodes.

Skips cleanly without PyTorch, a CUDA device or libmlajit (as test_decode does)."""

import random

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to PyTorch: GPU tests skipped", allow_module_level=True)

from mlajit import _lib, get_mla_metadata_info_v1, get_mla_metadata_v1  # noqa: E402

try:
    _lib.load()
except _lib.LibraryNotFoundError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"libmlajit not found ({e}): GPU tests skipped", allow_module_level=True)

from test_decode import DEVICE, FP8, Problem, assert_matches  # noqa: E402

NAMES = ("work_meta_data", "work_indptr", "work_info_set", "reduce_indptr", "reduce_final_map", "reduce_partial_map")


def allocate_metadata(p, batch=None):
    info = get_mla_metadata_info_v1(batch or len(p.kv_lens), p.max_seqlen_q, p.heads, p.q.dtype, p.kv_buffer.dtype,
                                    False, page_size=p.page_size)
    assert len(info) == 6
    return {name: torch.empty(shape, dtype=dtype, device=DEVICE) for name, (shape, dtype) in zip(NAMES, info)}


def fill_metadata(p, md, causal=True):
    # AITER's positional order: work_info_set before work_indptr.
    get_mla_metadata_v1(p.qo_indptr, p.kv_indptr, p.kv_last_page_lens, p.heads, 1, causal,
                        md["work_meta_data"], md["work_info_set"], md["work_indptr"], md["reduce_indptr"],
                        md["reduce_final_map"], md["reduce_partial_map"], page_size=p.page_size,
                        kv_granularity=max(p.page_size, 16), max_seqlen_qo=p.max_seqlen_q,
                        uni_seqlen_qo=p.max_seqlen_q, dtype_q=p.q.dtype, dtype_kv=p.kv_buffer.dtype)


def run_persistent(p, md, **kwargs):
    return p.run(**md, **kwargs)


def _cases():
    cases = []
    for hi, heads in enumerate([1, 16, 20, 128]):
        for si, s_q in enumerate([1, 3]):
            for pi, page in enumerate([1, 16, 64]):
                k = hi + si + pi
                dtype = [torch.bfloat16, torch.float16][k % 2]
                lse = (hi + pi) % 2 == 0
                cases.append(pytest.param(heads, s_q, page, dtype, lse,
                                          id=f"h{heads}-sq{s_q}-ps{page}-{str(dtype)[6:]}{'-lse' if lse else ''}"))
    return cases


@pytest.mark.parametrize("heads,s_q,page_size,dtype,return_lse", _cases())
def test_persistent_matches_reference(heads, s_q, page_size, dtype, return_lse):
    # Ragged: empty, one token, a partial page, long enough to be split across workers.
    kv_lens = [0, 1, page_size + 3, 517, 4100, 9]
    p = Problem(kv_lens, [s_q] * len(kv_lens), heads, page_size, s_q, dtype, seed=heads * 31 + s_q * 7 + page_size)
    md = allocate_metadata(p)
    fill_metadata(p, md)
    logits, final_lse = run_persistent(p, md, return_lse=return_lse)
    assert_matches(p, logits, final_lse, return_lse)


def test_batch_one_long_context_is_split_across_workers():
    p = Problem([32768], [1], 16, 64, 1, torch.bfloat16, seed=5)
    md = allocate_metadata(p)
    fill_metadata(p, md)
    logits, final_lse = run_persistent(p, md, return_lse=True)
    assert_matches(p, logits, final_lse, True)
    torch.cuda.synchronize()
    header = md["work_meta_data"].cpu().tolist()
    assert header[1] == 1, f"one request longer than the rest of the wave is one split tile, header {header}"


def test_batch_1024_ragged():
    rng = random.Random(11)
    kv_lens = [rng.choice([0, 1, 2, 63, 64, 65, 300, 1500]) for _ in range(1024)]
    p = Problem(kv_lens, [1] * 1024, 16, 16, 1, torch.bfloat16, seed=12)
    md = allocate_metadata(p)
    fill_metadata(p, md)
    logits, final_lse = run_persistent(p, md, return_lse=True)
    assert_matches(p, logits, final_lse, True)


def test_ragged_query_lengths_and_not_causal():
    p = Problem([700, 0, 40, 2000], [3, 0, 2, 1], 20, 16, 3, torch.bfloat16, seed=13)
    md = allocate_metadata(p)
    fill_metadata(p, md, causal=False)
    logits, final_lse = run_persistent(p, md, return_lse=True, causal=False)
    assert_matches(p, logits, final_lse, True, causal=False)


@pytest.mark.skipif(FP8 is None, reason="torch has no float8_e4m3fn")
@pytest.mark.parametrize("q_dtype", [torch.bfloat16, "fp8"])
def test_fp8_kv_cache(q_dtype):
    q_dtype = FP8 if q_dtype == "fp8" else q_dtype
    p = Problem([0, 1, 333, 2100], [1] * 4, 16, 64, 1, q_dtype, kv_dtype=FP8, q_scale=0.5 if q_dtype == FP8 else None,
                kv_scale=0.75, seed=17)
    md = allocate_metadata(p)
    fill_metadata(p, md)
    logits, final_lse = run_persistent(p, md, return_lse=True)
    assert_matches(p, logits, final_lse, True)


def test_sizes_do_not_depend_on_lengths():
    a = get_mla_metadata_info_v1(64, 1, 16, torch.bfloat16, torch.bfloat16, False)
    b = get_mla_metadata_info_v1(64, 1, 16, torch.bfloat16, torch.bfloat16, False)
    assert a == b
    bigger = get_mla_metadata_info_v1(128, 1, 16, torch.bfloat16, torch.bfloat16, False)
    assert bigger[3][0][0] > a[3][0][0], "reduce_indptr grows with the batch"
    assert all(dtype == torch.int32 for _, dtype in a)
    assert a[2][0][1] == 8, "work_info_set is [max_items, 8]"


def test_too_small_metadata_is_rejected():
    p = Problem([100, 200], [1, 1], 16, 16, 1, torch.bfloat16, seed=19)
    md = allocate_metadata(p)
    md["work_info_set"] = md["work_info_set"][:1].contiguous()
    with pytest.raises(ValueError, match="work_info_set must have at least"):
        fill_metadata(p, md)
    md = allocate_metadata(p)
    md["reduce_indptr"] = md["reduce_indptr"].to(torch.int64)
    with pytest.raises(ValueError, match="reduce_indptr must be int32"):
        run_persistent(p, md)
    torch.cuda.synchronize()
    assert torch.isnan(p.o).all(), "nothing may be written when an argument is rejected"


# ---------------------------------------------------------------------------------------------
# CUDA graph: metadata + persistent decode captured once, replayed with new lengths


def _new_lengths(p, rng, capacity_pages):
    """New KV lengths (page counts and last-page lengths), indptr and page ids written in place into
    the same tensors; the total page count stays within the page ids the problem owns."""
    batch = len(p.kv_lens)
    pages = [rng.randint(0, capacity_pages // batch) for _ in range(batch)]
    pages[rng.randrange(batch)] = 0  # always one empty request
    ids = list(range(p.kv_buffer.shape[0]))
    rng.shuffle(ids)
    indptr = [0]
    for n in pages:
        indptr.append(indptr[-1] + n)
    last = [rng.randint(1, p.page_size) if n > 0 else 1 for n in pages]
    p.kv_indptr.copy_(torch.tensor(indptr, dtype=torch.int32))
    p.kv_indices[:indptr[-1]].copy_(torch.tensor(ids[:indptr[-1]], dtype=torch.int32))
    p.kv_last_page_lens.copy_(torch.tensor(last, dtype=torch.int32))


def test_cuda_graph_replay_with_new_lengths():
    p = Problem([1500, 0, 1, 37, 900, 4000], [2] * 6, 20, 16, 2, torch.bfloat16, seed=23)
    capacity = int(p.kv_indptr[-1].item())
    md = allocate_metadata(p)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside capture: compiles or loads the kernels
        fill_metadata(p, md)
        run_persistent(p, md, return_lse=True)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fill_metadata(p, md)
        logits, final_lse = run_persistent(p, md, return_lse=True)

    rng = random.Random(29)
    for _ in range(3):
        _new_lengths(p, rng, capacity)
        p.o.fill_(float("nan"))
        graph.replay()
        assert_matches(p, logits, final_lse, True)


def test_one_fill_serves_every_layer():
    # A decode step fills the metadata once and runs every layer's decode on it: three "layers"
    # (same lengths, their own q and cache) on one fill, each against its own reference. The
    # reduce's per-tile counts must be back at zero after each decode, or a later layer's reduce
    # would read partials its stage 1 has not written yet.
    kv_lens = [0, 1, 67, 517, 4100, 9, 3000, 2048]
    layers = [Problem(kv_lens, [1] * len(kv_lens), 16, 64, 1, torch.bfloat16, seed=40 + k) for k in range(3)]
    md = allocate_metadata(layers[0])
    fill_metadata(layers[0], md)
    for p in layers:
        logits, final_lse = run_persistent(p, md, return_lse=True)
        assert_matches(p, logits, final_lse, True)
