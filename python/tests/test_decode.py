"""mla_decode_fwd on a GPU against a float32 PyTorch reference (mla-semantics §1.2): odd head
counts, page sizes, s_q, ragged KV lengths (0 and 1 included), bf16 / fp16 / fp8, LSE, forced and
automatic split-K, a captured CUDA graph, and the argument checks.

Skips cleanly without PyTorch, without a CUDA device, or without libmlajit
(MLAJIT_LIBRARY=<build>/runtime/libmlajit.so)."""

import math
import random

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to PyTorch: GPU tests skipped", allow_module_level=True)

import mlajit  # noqa: E402
from mlajit import _lib, mla_decode_fwd  # noqa: E402

try:
    _lib.load()
except _lib.LibraryNotFoundError as e:  # pragma: no cover - depends on the build
    pytest.skip(f"libmlajit not found ({e}): GPU tests skipped", allow_module_level=True)

DEVICE = torch.device("cuda", torch.cuda.current_device())
KV_LORA_RANK = 512
ROPE_DIM = 64
QK_DIM = KV_LORA_RANK + ROPE_DIM
FP8 = getattr(torch, "float8_e4m3fn", None)

# Output tolerances against the reference (fed the same rounded inputs), by output dtype: the
# rounding of the output itself plus fp32 summation order.
TOLERANCE = {
    torch.bfloat16: dict(atol=2e-3, rtol=1.6e-2),
    torch.float16: dict(atol=5e-4, rtol=2e-3),
    torch.float32: dict(atol=1e-4, rtol=1e-4),
}


def p_rounding_atol(q_dtype, max_abs_v):
    """The matrix-core families (mma, wgmma) round P to their 16-bit operand type before P @ V
    (fp16 when q is fp16, else bf16: an fp8 q or KV cache is widened to bf16); the C ABI does not
    say which family ran, so allow it always, as the C++ gpu tier does for those families: 2^-9
    (bf16) or 2^-12 (fp16) relative to the largest |V| element (dequantised)."""
    return (2.0 ** -12 if q_dtype == torch.float16 else 2.0 ** -9) * max_abs_v
LSE_TOLERANCE = dict(atol=1e-4, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Problems and the reference


class Problem:
    """A paged decode problem in AITER's layout; `kwargs()` gives mla_decode_fwd's arguments."""

    def __init__(self, kv_lens, q_lens, heads, page_size, max_seqlen_q, q_dtype, kv_dtype=None, out_dtype=None,
                 seed=0, page_pad=64, spare_pages=3, spare_indices=7, kv_scale=None, q_scale=None, device=DEVICE):
        kv_dtype = kv_dtype or q_dtype
        out_dtype = out_dtype or (q_dtype if q_dtype != FP8 else torch.bfloat16)
        rng = random.Random(seed)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        self.heads, self.page_size, self.max_seqlen_q = heads, page_size, max_seqlen_q
        self.kv_lens, self.q_lens = list(kv_lens), list(q_lens)
        self.q_scale, self.kv_scale = q_scale, kv_scale
        batch = len(kv_lens)
        pages_per_request = [(n + page_size - 1) // page_size for n in kv_lens]
        num_pages = sum(pages_per_request) + spare_pages
        page_ids = list(range(num_pages))
        rng.shuffle(page_ids)
        indices, indptr, last = [], [0], []
        for b, n in enumerate(pages_per_request):
            indices += page_ids[:n]
            page_ids = page_ids[n:]
            indptr.append(len(indices))
            last.append(kv_lens[b] - (n - 1) * page_size if n > 0 else 1)
        # kv_indices may be longer than kv_indptr[-1] (AITER's tests pad it); padding points at real pages.
        indices += [rng.randrange(num_pages) for _ in range(spare_indices)]

        # Pages padded by `page_pad` elements: the page stride is kv_buffer.stride(0), not page_size * 576.
        page_elems = page_size * QK_DIM + page_pad
        storage_dtype = torch.float32 if kv_dtype == FP8 else kv_dtype
        storage = torch.randn(num_pages * page_elems, generator=gen).to(storage_dtype)
        if kv_dtype == FP8:
            storage = storage.to(FP8)
        storage = storage.to(device)
        self.kv_buffer = storage.as_strided((num_pages, page_size, 1, QK_DIM), (page_elems, QK_DIM, QK_DIM, 1))

        qo = [0]
        for n in q_lens:
            qo.append(qo[-1] + n)
        total_q = qo[-1]
        q = torch.randn(total_q, heads, QK_DIM, generator=gen)
        self.q = (q.to(FP8) if q_dtype == FP8 else q.to(q_dtype)).to(device)
        self.o = torch.full((total_q, heads, KV_LORA_RANK), float("nan"), dtype=out_dtype, device=device)
        as_i32 = dict(dtype=torch.int32, device=device)
        self.qo_indptr = torch.tensor(qo, **as_i32)
        self.kv_indptr = torch.tensor(indptr, **as_i32)
        self.kv_indices = torch.tensor(indices, **as_i32)
        self.kv_last_page_lens = torch.tensor(last, **as_i32)
        assert len(last) == batch

    def args(self):
        return (self.q, self.kv_buffer, self.o, self.qo_indptr, self.kv_indptr, self.kv_indices,
                self.kv_last_page_lens, self.max_seqlen_q)

    def run(self, **kwargs):
        kwargs.setdefault("page_size", self.page_size)
        if self.q_scale is not None:
            kwargs.setdefault("q_scale", self.q_scale)
        if self.kv_scale is not None:
            kwargs.setdefault("kv_scale", self.kv_scale)
        return mla_decode_fwd(*self.args(), **kwargs)

    def reference(self, sm_scale=None, logit_cap=0.0, causal=True):
        return reference_decode(self.q, self.kv_buffer, self.qo_indptr, self.kv_indptr, self.kv_indices,
                                self.kv_last_page_lens, self.page_size, KV_LORA_RANK,
                                sm_scale=sm_scale, logit_cap=logit_cap, causal=causal,
                                q_scale=_as_float(self.q_scale), kv_scale=_as_float(self.kv_scale))


def _as_float(scale):
    if scale is None:
        return 1.0
    return float(scale.item()) if isinstance(scale, torch.Tensor) else float(scale)


def reference_decode(q, kv_buffer, qo_indptr, kv_indptr, kv_indices, kv_last_page_lens, page_size, kv_lora_rank,
                     sm_scale=None, logit_cap=0.0, causal=True, q_scale=1.0, kv_scale=1.0):
    """mla-semantics §1.2 (float64 inside, float32 out, so no TF32 matmul can blur it): per
    request gather the pages, keep L_b tokens, bottom-right causal mask
    tril(ones(s_q, L), diagonal=L - s_q), softmax, natural-log LSE. Rows that see no key give 0
    and LSE = -inf. Also returns the largest |V| element of the visible keys."""
    total_q, heads, qk_dim = q.shape
    sm_scale = 1.0 / math.sqrt(qk_dim) if sm_scale is None else sm_scale
    qf = q.float().double() * q_scale
    kvf = kv_buffer.float().double() * kv_scale
    out = torch.zeros(total_q, heads, kv_lora_rank, dtype=torch.float64, device=q.device)
    lse = torch.full((total_q, heads), float("-inf"), dtype=torch.float64, device=q.device)
    max_abs_v = 0.0
    qo, kp, last = qo_indptr.tolist(), kv_indptr.tolist(), kv_last_page_lens.tolist()
    for b in range(len(qo) - 1):
        q0, q1 = qo[b], qo[b + 1]
        s_q = q1 - q0
        pages = kv_indices[kp[b]:kp[b + 1]].long()
        n = pages.numel()
        kv_len = (n - 1) * page_size + last[b] if n > 0 else 0
        if s_q == 0 or kv_len == 0:
            continue
        keys = kvf[pages].reshape(-1, qk_dim)[:kv_len]                    # [L, D]
        max_abs_v = max(max_abs_v, float(keys[:, :kv_lora_rank].abs().max()))
        s = torch.einsum("thd,ld->thl", qf[q0:q1], keys) * sm_scale      # [s_q, H, L]
        if logit_cap > 0:
            s = logit_cap * torch.tanh(s / logit_cap)
        if causal:
            visible = torch.ones(s_q, kv_len, dtype=torch.bool, device=q.device).tril(diagonal=kv_len - s_q)
            s = s.masked_fill(~visible[:, None, :], float("-inf"))
        row_lse = torch.logsumexp(s, dim=-1)                               # [s_q, H]
        p = torch.exp(s - row_lse[..., None])
        p = torch.where(torch.isfinite(row_lse)[..., None], p, torch.zeros_like(p))
        out[q0:q1] = torch.einsum("thl,lv->thv", p, keys[:, :kv_lora_rank])
        lse[q0:q1] = row_lse
    return out.float(), lse.float(), max_abs_v


def assert_matches(problem, logits, final_lse, want_lse, **reference_kwargs):
    torch.cuda.synchronize()
    ref_out, ref_lse, max_abs_v = problem.reference(**reference_kwargs)
    o = problem.o
    total_q, heads = o.shape[:2]
    assert logits.shape == (total_q, 1, heads, KV_LORA_RANK)
    assert logits.data_ptr() == o.data_ptr(), "logits must be a view of o"
    assert not torch.isnan(o).any(), "output has NaN (unwritten or NaN-producing rows)"
    tolerance = dict(TOLERANCE[o.dtype])
    tolerance["atol"] += p_rounding_atol(problem.q.dtype, max_abs_v)
    torch.testing.assert_close(o.float(), ref_out, **tolerance)
    if not want_lse:
        assert final_lse is None
        return
    assert final_lse.shape == (total_q, heads) and final_lse.dtype == torch.float32
    assert not torch.isnan(final_lse).any(), "LSE has NaN"
    assert torch.equal(torch.isneginf(final_lse), torch.isneginf(ref_lse)), "LSE = -inf exactly where no key is visible"
    finite = torch.isfinite(ref_lse)
    torch.testing.assert_close(final_lse[finite], ref_lse[finite], **LSE_TOLERANCE)


# ---------------------------------------------------------------------------------------------
# Numerics


def _cases():
    """Every head count x page size x s_q; dtype, split count and LSE rotate so each value meets
    several of the others."""
    cases = []
    for hi, heads in enumerate([1, 16, 20, 128]):
        for pi, page in enumerate([1, 16, 64]):
            for si, s_q in enumerate([1, 2, 3]):
                k = hi + pi + si
                dtype = [torch.bfloat16, torch.float16][(hi + si) % 2]
                splits = [None, 1, 4][k % 3]
                lse = (hi + pi) % 2 == 0 or s_q == 3
                cases.append(pytest.param(heads, page, s_q, dtype, splits, lse,
                                          id=f"h{heads}-ps{page}-sq{s_q}-{str(dtype)[6:]}-s{splits or 'auto'}"
                                             f"{'-lse' if lse else ''}"))
    return cases


@pytest.mark.parametrize("heads,page_size,s_q,dtype,splits,return_lse", _cases())
def test_decode_matches_reference(heads, page_size, s_q, dtype, splits, return_lse):
    # Ragged: empty, one token (fewer keys than s_q: fully masked rows), a partial page, several pages.
    kv_lens = [0, 1, page_size + 3, 517] if heads >= 64 else [0, 1, page_size + 3, 517, 1029]
    p = Problem(kv_lens, [s_q] * len(kv_lens), heads, page_size, s_q, dtype, seed=heads * 100 + page_size + s_q)
    logits, final_lse = p.run(num_kv_splits=splits, return_lse=return_lse)
    assert_matches(p, logits, final_lse, return_lse)


@pytest.mark.parametrize("splits", [1, 4, None])
def test_ragged_query_lengths(splits):
    # Requests with fewer query tokens than max_seqlen_q (one with none): each request's mask is
    # aligned to its own query count.
    p = Problem([40, 0, 300, 7, 64], [3, 1, 2, 0, 3], 16, 16, 3, torch.bfloat16, seed=7)
    logits, final_lse = p.run(num_kv_splits=splits, return_lse=True)
    assert_matches(p, logits, final_lse, True)


def test_automatic_splits_long_context():
    p = Problem([4000, 3000], [1, 1], 16, 64, 1, torch.bfloat16, seed=11)
    logits, final_lse = p.run(return_lse=True)
    assert_matches(p, logits, final_lse, True)


def test_dense_pages():
    p = Problem([70, 129], [2, 2], 20, 64, 2, torch.float16, page_pad=0, seed=3)
    logits, final_lse = p.run(num_kv_splits=4, return_lse=True)
    assert_matches(p, logits, final_lse, True)


def test_sm_scale_and_logit_cap():
    p = Problem([100, 33], [2, 2], 16, 16, 2, torch.bfloat16, seed=5)
    logits, final_lse = p.run(sm_scale=0.09, logit_cap=5.0, num_kv_splits=4, return_lse=True)
    assert_matches(p, logits, final_lse, True, sm_scale=0.09, logit_cap=5.0)


def test_not_causal():
    p = Problem([50, 3, 0], [3, 3, 3], 16, 1, 3, torch.bfloat16, seed=9)
    logits, final_lse = p.run(causal=False, num_kv_splits=4, return_lse=True)
    assert_matches(p, logits, final_lse, True, causal=False)


def test_fp32_output():
    p = Problem([90, 1, 0], [2, 2, 2], 16, 16, 2, torch.bfloat16, out_dtype=torch.float32, seed=13)
    logits, final_lse = p.run(num_kv_splits=4, return_lse=True)
    assert_matches(p, logits, final_lse, True)


@pytest.mark.skipif(FP8 is None, reason="torch has no float8_e4m3fn")
def test_fp8_kv_cache():
    p = Problem([130, 1, 0, 65], [1, 1, 1, 1], 16, 64, 1, torch.bfloat16, kv_dtype=FP8, kv_scale=0.5, seed=17)
    logits, final_lse = p.run(num_kv_splits=4, return_lse=True)
    assert_matches(p, logits, final_lse, True)


@pytest.mark.skipif(FP8 is None, reason="torch has no float8_e4m3fn")
def test_fp8_query_and_kv_with_tensor_scales():
    scale = lambda v: torch.tensor([v], dtype=torch.float32, device=DEVICE)  # noqa: E731  AITER passes [1] fp32
    p = Problem([130, 1, 0, 65], [2, 2, 2, 2], 16, 16, 2, FP8, q_scale=scale(0.25), kv_scale=scale(0.5), seed=19)
    logits, final_lse = p.run(num_kv_splits=4, return_lse=True)
    assert_matches(p, logits, final_lse, True)


def test_all_requests_empty():
    p = Problem([0, 0], [2, 2], 16, 16, 2, torch.bfloat16, seed=23)
    logits, final_lse = p.run(return_lse=True)
    torch.cuda.synchronize()
    assert torch.count_nonzero(p.o) == 0
    assert torch.isneginf(final_lse).all()


def test_no_query_tokens():
    p = Problem([10], [0], 16, 1, 1, torch.bfloat16, seed=29)
    logits, final_lse = p.run(return_lse=True)
    assert logits.shape == (0, 1, 16, KV_LORA_RANK) and final_lse.shape == (0, 16)


def test_runs_on_current_stream_and_reuses_workspace():
    p = Problem([600, 300], [1, 1], 16, 16, 1, torch.bfloat16, seed=31)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        p.run(num_kv_splits=4)
        key = (DEVICE.index, side.cuda_stream)
        first = mlajit.mla._workspaces[key].data_ptr()
        p.run(num_kv_splits=2)  # needs less: same buffer
        assert mlajit.mla._workspaces[key].data_ptr() == first
        logits, final_lse = p.run(num_kv_splits=4, return_lse=True)
    torch.cuda.current_stream().wait_stream(side)
    assert_matches(p, logits, final_lse, True)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_other_device_leaves_current_device_alone():
    other = torch.device("cuda", 1 - DEVICE.index) if DEVICE.index < 2 else torch.device("cuda", 0)
    p = Problem([70, 5], [2, 2], 16, 16, 2, torch.bfloat16, seed=33, device=other)
    before = torch.cuda.current_device()
    logits, final_lse = p.run(num_kv_splits=4, return_lse=True)
    assert torch.cuda.current_device() == before
    with torch.cuda.device(other):
        assert_matches(p, logits, final_lse, True)


# ---------------------------------------------------------------------------------------------
# CUDA graphs


def _refill(p, seed):
    """New q / KV contents and new KV lengths (same page counts) written in place, as a decode
    step does between graph replays."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    p.q.copy_(torch.randn(p.q.shape, generator=gen).to(p.q.dtype))
    p.kv_buffer.copy_(torch.randn(p.kv_buffer.shape, generator=gen).to(p.kv_buffer.dtype))
    pages = (p.kv_indptr[1:] - p.kv_indptr[:-1]).cpu()
    last = torch.randint(1, p.page_size + 1, pages.shape, generator=gen, dtype=torch.int32)
    p.kv_last_page_lens.copy_(torch.where(pages > 0, last, torch.ones_like(last)))


@pytest.mark.parametrize("splits", [4, None])
def test_cuda_graph_capture_and_replay(splits):
    p = Problem([200, 0, 1, 37, 64], [2] * 5, 20, 16, 2, torch.bfloat16, seed=37)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside capture: compiles or loads the kernel
        p.run(num_kv_splits=splits, return_lse=True)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        logits, final_lse = p.run(num_kv_splits=splits, return_lse=True)

    for seed in (101, 202):
        _refill(p, seed)
        p.o.fill_(float("nan"))
        graph.replay()
        assert_matches(p, logits, final_lse, True)


# ---------------------------------------------------------------------------------------------
# Argument checks: ValueError naming the argument, nothing launched


def _small():
    return Problem([5, 9], [1, 1], 16, 16, 1, torch.bfloat16, seed=41)


def _call(p, **override):
    args = dict(q=p.q, kv_buffer=p.kv_buffer, o=p.o, qo_indptr=p.qo_indptr, kv_indptr=p.kv_indptr,
                kv_indices=p.kv_indices, kv_last_page_lens=p.kv_last_page_lens, max_seqlen_q=p.max_seqlen_q,
                page_size=p.page_size)
    args.update(override)
    return mla_decode_fwd(**args)


BAD_ARGUMENTS = [
    ("q", lambda p: dict(q=p.q.float()), "q must be one of"),
    ("q-cpu", lambda p: dict(q=p.q.cpu()), "q must be a CUDA tensor"),
    ("q-noncontiguous", lambda p: dict(q=p.q.transpose(0, 1).contiguous().transpose(0, 1)), "q must be contiguous"),
    ("q-2d", lambda p: dict(q=p.q[:, 0]), "q must be 3-D"),
    ("o-dtype", lambda p: dict(o=p.o.to(torch.int32)), "o must be one of"),
    ("o-heads", lambda p: dict(o=p.o[:, :8].contiguous()), "o must be"),
    ("o-noncontiguous", lambda p: dict(o=torch.empty(2, 512, 16, dtype=p.o.dtype, device=DEVICE).transpose(1, 2)),
     "o must be contiguous"),
    ("o-width", lambda p: dict(o=torch.empty(2, 16, 600, dtype=p.o.dtype, device=DEVICE)), "kv_lora_rank"),
    ("kv-dtype", lambda p: dict(kv_buffer=p.kv_buffer.float()), "kv_buffer must be one of"),
    ("kv-3d", lambda p: dict(kv_buffer=p.kv_buffer[:, :, 0]), "kv_buffer must be 4-D"),
    ("kv-page-size", lambda p: dict(page_size=1), "page_size"),
    ("kv-heads", lambda p: dict(kv_buffer=p.kv_buffer.expand(-1, -1, 2, -1)), r"kv_buffer.shape\[2\]"),
    ("kv-width", lambda p: dict(kv_buffer=p.kv_buffer[..., :512]), r"kv_buffer.shape\[3\]"),
    ("kv-rows-strided", lambda p: dict(kv_buffer=torch.empty(4, 32, 1, 576, dtype=torch.bfloat16,
                                                             device=DEVICE)[:, ::2]), "dense"),
    ("kv-cpu", lambda p: dict(kv_buffer=p.kv_buffer.cpu()), "kv_buffer must be a CUDA tensor"),
    ("nhead_kv", lambda p: dict(nhead_kv=2), "nhead_kv must be 1"),
    ("qo_indptr-int64", lambda p: dict(qo_indptr=p.qo_indptr.long()), "qo_indptr must be int32"),
    ("kv_indptr-int64", lambda p: dict(kv_indptr=p.kv_indptr.long()), "kv_indptr must be int32"),
    ("kv_indptr-length", lambda p: dict(kv_indptr=p.kv_indptr[:-1]), "kv_indptr must have"),
    ("kv_indices-int64", lambda p: dict(kv_indices=p.kv_indices.long()), "kv_indices must be int32"),
    ("kv_last_page_lens-length", lambda p: dict(kv_last_page_lens=p.kv_last_page_lens[:1]), "kv_last_page_lens"),
    ("kv_last_page_lens-cpu", lambda p: dict(kv_last_page_lens=p.kv_last_page_lens.cpu()), "kv_last_page_lens"),
    ("qo_indptr-short", lambda p: dict(qo_indptr=p.qo_indptr[:1]), "qo_indptr"),
    ("max_seqlen_q-0", lambda p: dict(max_seqlen_q=0), "max_seqlen_q"),
    ("max_seqlen_q-9", lambda p: dict(max_seqlen_q=9), "max_seqlen_q"),
    ("total_q", lambda p: dict(q=torch.zeros(3, 16, 576, dtype=torch.bfloat16, device=DEVICE),
                               o=torch.zeros(3, 16, 512, dtype=torch.bfloat16, device=DEVICE)), "total_q"),
    ("sm_scale", lambda p: dict(sm_scale=-1.0), "sm_scale"),
    ("logit_cap", lambda p: dict(logit_cap=-1.0), "logit_cap"),
    ("num_kv_splits", lambda p: dict(num_kv_splits=0), "num_kv_splits"),
    ("kv_scale", lambda p: dict(kv_scale=torch.ones(2, device=DEVICE)), "kv_scale"),
]


@pytest.mark.parametrize("override,message", [pytest.param(f, m, id=i) for i, f, m in BAD_ARGUMENTS])
def test_bad_arguments_raise_value_error(override, message):
    p = _small()
    with pytest.raises(ValueError, match=message):
        _call(p, **override(p))
    torch.cuda.synchronize()
    assert torch.isnan(p.o).all(), "nothing may be written when an argument is rejected"


@pytest.mark.skipif(FP8 is None, reason="torch has no float8_e4m3fn")
def test_fp8_query_needs_scales():
    p = Problem([5], [1], 16, 16, 1, FP8, seed=43)
    with pytest.raises(ValueError, match="q_scale and kv_scale"):
        p.run()


def test_library_rejection_is_value_error():
    # A page stride that is not a multiple of 16 bytes is caught by libmlajit itself.
    p = _small()
    pages = p.kv_buffer.shape[0]
    odd = torch.zeros(pages * (16 * 576 + 1), dtype=torch.bfloat16, device=DEVICE)
    kv = odd.as_strided((pages, 16, 1, 576), (16 * 576 + 1, 576, 576, 1))
    with pytest.raises(ValueError, match="kv_page_stride") as info:
        _call(p, kv_buffer=kv)
    assert isinstance(info.value, RuntimeError)  # MlajitInvalidArgument: from the C library


def test_persistent_form_needs_every_buffer():
    p = _small()
    with pytest.raises(ValueError, match="missing: work_indptr"):
        _call(p, work_meta_data=torch.zeros(4, dtype=torch.int32, device=DEVICE))
    with pytest.raises(NotImplementedError, match="not implemented yet"):
        _call(p, num_kv_splits=2, num_kv_splits_indptr=torch.tensor([0, 2, 4], dtype=torch.int32, device=DEVICE))
