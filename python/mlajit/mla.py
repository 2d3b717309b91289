"""AITER-compatible MLA entry points over PyTorch tensors (mirrors aiter/mla.py).

`mla_decode_fwd` has AITER's name, arguments, defaults and in-place semantics
(shared/reference/mla-semantics.md §1.1-1.3) and runs mlajit's JIT-compiled decode through the C
ABI on the current PyTorch stream, in both of AITER's forms: non-persistent (split-K grid) and
persistent (work lists built on the GPU by `get_mla_metadata_v1`, sized by
`get_mla_metadata_info_v1`). Arguments that select paths mlajit does not have yet (context
parallelism, per-request split counts, returning the split logits, sparse top-k metadata) raise
NotImplementedError instead of being ignored."""

from __future__ import annotations

import ctypes
import math
import operator
import threading
from typing import Optional, Tuple

from . import _lib

__all__ = ["mla_decode_fwd", "get_mla_metadata_info_v1", "get_mla_metadata_v1"]


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("mlajit.mla_decode_fwd needs PyTorch (import torch failed)") from e
    return torch


def _input_dtypes(torch):
    table = {torch.bfloat16: _lib.DTYPE_BF16, torch.float16: _lib.DTYPE_FP16}
    fp8 = getattr(torch, "float8_e4m3fn", None)
    if fp8 is not None:
        table[fp8] = _lib.DTYPE_FP8_E4M3
    return table


def _output_dtypes(torch):
    return {torch.bfloat16: _lib.DTYPE_BF16, torch.float16: _lib.DTYPE_FP16, torch.float32: _lib.DTYPE_FP32}


def _names(table) -> str:
    return ", ".join(str(d) for d in table)


# ---------------------------------------------------------------------------------------------
# Argument checks: each error names the argument and the constraint.


def _require_int(name: str, value, lo: Optional[int] = None, hi: Optional[int] = None) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        bounds = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ValueError(f"{name} must be in {bounds}, got {v}")
    return v


def _require_float(name: str, value) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a float, got bool {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a float, got {type(value).__name__} {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def _require_tensor(torch, name: str, t, device=None):
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_cuda:
        raise ValueError(f"{name} must be a CUDA tensor, got one on {t.device}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} must be on {device} like q, got {t.device}")
    return t


def _require_index_vector(torch, name: str, t, device, length: Optional[int] = None, what: str = ""):
    _require_tensor(torch, name, t, device)
    if t.dtype != torch.int32:
        raise ValueError(f"{name} must be int32, got {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    if length is not None and t.numel() != length:
        raise ValueError(f"{name} must have {what} = {length} entries, got {t.numel()}")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous")
    return t


def _scale(torch, name: str, value) -> float:
    """AITER passes per-tensor scales as [1] fp32 tensors; the C ABI takes a host float."""
    if value is None:
        return 1.0
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a per-tensor scale (1 element), got shape {tuple(value.shape)}")
        if value.is_cuda and torch.cuda.is_current_stream_capturing():
            raise ValueError(
                f"{name} is a CUDA tensor: reading it needs a device-to-host copy, which CUDA-graph capture "
                f"does not allow; pass {name} as a Python float (mlajit takes host-side scales)")
        value = value.item()
    v = _require_float(name, value)
    if v <= 0.0:
        raise ValueError(f"{name} must be > 0, got {v}")
    return v


def _reject_unsupported(**given) -> None:
    if given["num_kv_splits_indptr"] is not None:
        raise NotImplementedError(
            "mlajit: num_kv_splits_indptr (per-request split counts) is not implemented yet; pass num_kv_splits "
            "(an int, the same for every request) or leave both None for the automatic choice")
    if given["return_logits"]:
        raise NotImplementedError(
            "mlajit: return_logits=True (returning the fp32 split partials) is not implemented yet")
    if given["cp_world_size"] != 1 or given["g_kv_indptr"] is not None:
        raise NotImplementedError(
            "mlajit: context-parallel decode (cp_world_size > 1, g_kv_indptr) is not implemented yet")
    if given["cp_rank"] != 0:
        raise ValueError(f"cp_rank must be 0 when cp_world_size is 1, got {given['cp_rank']}")


# ---------------------------------------------------------------------------------------------
# Workspace: split-K partials. Eager calls reuse one buffer per (device, stream), reallocated only
# when a call needs more, so the hot path allocates nothing. A call under CUDA-graph capture takes
# a fresh buffer from the graph's private pool instead: it is then owned by that graph (freed
# blocks of a capture pool are only reused by later work of the same capture, which replays in
# the same order), so graphs never share a workspace with each other or with eager calls.

_workspaces = {}
_workspaces_lock = threading.Lock()


def _workspace(torch, device, stream: int, nbytes: int):
    if nbytes == 0:
        return None
    if torch.cuda.is_current_stream_capturing():
        return torch.empty(nbytes, dtype=torch.uint8, device=device)
    key = (device.index, stream)
    with _workspaces_lock:
        buf = _workspaces.get(key)
        if buf is None or buf.numel() < nbytes:
            _workspaces.pop(key, None)  # release before allocating (stream-ordered on this stream)
            buf = torch.empty(nbytes, dtype=torch.uint8, device=device)
            _workspaces[key] = buf
        return buf


def mla_decode_fwd(
    q,
    kv_buffer,
    o,
    qo_indptr,
    kv_indptr,
    kv_indices,
    kv_last_page_lens,
    max_seqlen_q,
    page_size=1,
    nhead_kv=1,
    sm_scale=None,
    logit_cap=0.0,
    num_kv_splits=None,
    num_kv_splits_indptr=None,
    work_meta_data=None,
    work_indptr=None,
    work_info_set=None,
    reduce_indptr=None,
    reduce_final_map=None,
    reduce_partial_map=None,
    q_scale=None,
    kv_scale=None,
    intra_batch_mode=False,
    return_logits=False,
    return_lse=False,
    g_kv_indptr=None,
    cp_world_size=1,
    cp_rank=0,
    causal=True,
) -> Tuple[object, Optional[object]]:
    """Absorbed MLA decode, AITER's `aiter.mla.mla_decode_fwd`, non-persistent and persistent.

    q [total_q, H, kv_lora_rank + rope_dim] (bf16 / fp16 / fp8_e4m3fn, contiguous);
    kv_buffer [num_pages, page_size, 1, kv_lora_rank + rope_dim] (bf16 / fp16 / fp8_e4m3fn; the
    page stride is kv_buffer.stride(0), rows inside a page dense); o [total_q, H, kv_lora_rank]
    (bf16 / fp16 / fp32, contiguous) is written in place. qo_indptr [B+1], kv_indptr [B+1] (entries
    of kv_indices, i.e. pages), kv_indices [N] (page ids), kv_last_page_lens [B] (tokens in each
    request's last page, 1..page_size): int32 CUDA tensors. Request b's query tokens are the last
    qo_indptr[b+1]-qo_indptr[b] tokens of its KV (bottom-right causal mask when causal=True).

    sm_scale defaults to 1/sqrt(kv_lora_rank + rope_dim); logit_cap > 0 applies the soft-cap
    cap * tanh(s / cap) (AITER's asm path rejects it, mlajit supports it); num_kv_splits forces the
    split-K count (None: mlajit's tuner chooses; ignored by the persistent form, as in AITER);
    q_scale / kv_scale are per-tensor fp8 dequant scales (a Python float, or a 1-element tensor
    read with .item(), which syncs and is not allowed during CUDA-graph capture);
    intra_batch_mode is accepted and unused, as in AITER.

    Persistent form: pass all six metadata buffers (work_meta_data, work_indptr, work_info_set,
    reduce_indptr, reduce_final_map, reduce_partial_map) allocated from get_mla_metadata_info_v1
    and filled by get_mla_metadata_v1 for the same qo_indptr / kv_indptr / kv_last_page_lens,
    heads, max_seqlen_q, dtypes and page_size. Any GQA ratio works (no 16-head folding).

    Returns (logits, final_lse): mlajit writes the final output directly, so `logits` is
    o.view(total_q, 1, H, kv_lora_rank) (AITER's "no split" form), and final_lse is a new
    [total_q, H] fp32 tensor of natural-log LSEs if return_lse else None. A request with no visible
    key gives zeros and LSE = -inf.

    Runs on torch.cuda.current_stream(). Capturable in a CUDA graph once each configuration was
    called once outside capture (the first call JIT-compiles or loads the kernel).
    """
    _reject_unsupported(
        num_kv_splits_indptr=num_kv_splits_indptr, return_logits=return_logits, g_kv_indptr=g_kv_indptr,
        cp_world_size=cp_world_size, cp_rank=cp_rank)
    metadata = _metadata_given(work_meta_data=work_meta_data, work_indptr=work_indptr, work_info_set=work_info_set,
                               reduce_indptr=reduce_indptr, reduce_final_map=reduce_final_map,
                               reduce_partial_map=reduce_partial_map)
    torch = _torch()

    # --- tensors, devices, dtypes, layouts
    _require_tensor(torch, "q", q)
    device = q.device
    _require_tensor(torch, "kv_buffer", kv_buffer, device)
    _require_tensor(torch, "o", o, device)
    in_dtypes = _input_dtypes(torch)
    out_dtypes = _output_dtypes(torch)
    if q.dtype not in in_dtypes:
        raise ValueError(f"q must be one of {_names(in_dtypes)}, got {q.dtype}")
    if kv_buffer.dtype not in in_dtypes:
        raise ValueError(f"kv_buffer must be one of {_names(in_dtypes)}, got {kv_buffer.dtype}")
    if o.dtype not in out_dtypes:
        raise ValueError(f"o must be one of {_names(out_dtypes)}, got {o.dtype}")

    if q.dim() != 3:
        raise ValueError(f"q must be 3-D [total_q, num_heads, kv_lora_rank + rope_dim], got shape {tuple(q.shape)}")
    if o.dim() != 3:
        raise ValueError(f"o must be 3-D [total_q, num_heads, kv_lora_rank], got shape {tuple(o.shape)}")
    total_q, num_heads, qk_dim = (int(s) for s in q.shape)
    if tuple(o.shape[:2]) != (total_q, num_heads):
        raise ValueError(f"o must be [total_q, num_heads, kv_lora_rank] = [{total_q}, {num_heads}, *] like q, "
                         f"got shape {tuple(o.shape)}")
    kv_lora_rank = int(o.shape[2])
    rope_dim = qk_dim - kv_lora_rank
    if kv_lora_rank < 1 or rope_dim < 0:
        raise ValueError(f"o.shape[2] (kv_lora_rank = {kv_lora_rank}) must be in [1, q.shape[2] = {qk_dim}]")
    if num_heads < 1:
        raise ValueError(f"q.shape[1] (num_heads) must be >= 1, got {num_heads}")
    if not q.is_contiguous():
        raise ValueError("q must be contiguous")
    if not o.is_contiguous():
        raise ValueError("o must be contiguous")

    nhead_kv = _require_int("nhead_kv", nhead_kv)
    if nhead_kv != 1:
        raise ValueError(f"nhead_kv must be 1 (MLA has one latent KV head), got {nhead_kv}")
    page_size = _require_int("page_size", page_size, 1)
    if kv_buffer.dim() != 4:
        raise ValueError(f"kv_buffer must be 4-D [num_pages, page_size, 1, {qk_dim}], got shape "
                         f"{tuple(kv_buffer.shape)}")
    if int(kv_buffer.shape[1]) != page_size:
        raise ValueError(f"kv_buffer.shape[1] must equal page_size = {page_size}, got shape {tuple(kv_buffer.shape)}")
    if int(kv_buffer.shape[2]) != 1:
        raise ValueError(f"kv_buffer.shape[2] (KV heads) must be 1, got shape {tuple(kv_buffer.shape)}")
    if int(kv_buffer.shape[3]) != qk_dim:
        raise ValueError(f"kv_buffer.shape[3] must equal q.shape[2] = {qk_dim}, got shape {tuple(kv_buffer.shape)}")
    if kv_buffer.stride(3) != 1 or (page_size > 1 and kv_buffer.stride(1) != qk_dim):
        raise ValueError(f"kv_buffer rows must be dense inside a page (strides [*, {qk_dim}, *, 1]), got strides "
                         f"{tuple(kv_buffer.stride())}")
    # The page stride of a 1-page buffer is never used (and may be anything): 0 = dense.
    kv_page_stride = int(kv_buffer.stride(0)) if kv_buffer.shape[0] > 1 else 0

    # --- index tensors
    _require_tensor(torch, "qo_indptr", qo_indptr, device)
    if qo_indptr.dim() != 1 or qo_indptr.numel() < 2:
        raise ValueError(f"qo_indptr must be 1-D [batch + 1] with batch >= 1, got shape {tuple(qo_indptr.shape)}")
    batch = qo_indptr.numel() - 1
    _require_index_vector(torch, "qo_indptr", qo_indptr, device)
    _require_index_vector(torch, "kv_indptr", kv_indptr, device, batch + 1, "batch + 1")
    _require_index_vector(torch, "kv_indices", kv_indices, device)
    _require_index_vector(torch, "kv_last_page_lens", kv_last_page_lens, device, batch, "batch")

    # --- scalars
    max_seqlen_q = _require_int("max_seqlen_q", max_seqlen_q, 1, 8)
    if total_q > batch * max_seqlen_q:
        raise ValueError(f"q.shape[0] (total_q = {total_q}) must be <= batch * max_seqlen_q = {batch * max_seqlen_q}")
    if sm_scale is None:
        sm_scale = 1.0 / math.sqrt(qk_dim)
    sm_scale = _require_float("sm_scale", sm_scale)
    if sm_scale <= 0.0:
        raise ValueError(f"sm_scale must be > 0, got {sm_scale}")
    logit_cap = _require_float("logit_cap", 0.0 if logit_cap is None else logit_cap)
    if logit_cap < 0.0:
        raise ValueError(f"logit_cap must be >= 0 (0 turns the soft-cap off), got {logit_cap}")
    splits = 0 if num_kv_splits is None else _require_int("num_kv_splits", num_kv_splits, 1, 4096)
    fp8 = in_dtypes[q.dtype] == _lib.DTYPE_FP8_E4M3
    if fp8 and (q_scale is None or kv_scale is None):
        raise ValueError("q_scale and kv_scale are required when q is fp8 (as in AITER)")
    q_scale_value = _scale(torch, "q_scale", q_scale)
    kv_scale_value = _scale(torch, "kv_scale", kv_scale)

    logits = o.view(total_q, 1, num_heads, kv_lora_rank)
    final_lse = torch.empty((total_q, num_heads), dtype=torch.float32, device=device) if return_lse else None
    if metadata is not None:
        _check_metadata_tensors(torch, metadata, device)
    if total_q == 0:
        return logits, final_lse

    # --- the call
    lib = _lib.load()
    # The library makes the device's primary context current; the guard restores PyTorch's device.
    with torch.cuda.device(device):
        ctx = _lib.context(_backend(torch), device.index)
        stream = int(torch.cuda.current_stream(device).cuda_stream)
        args = _lib.new_decode_args()
        args.q = q.data_ptr()
        args.q_dtype = in_dtypes[q.dtype]
        args.kv_buffer = kv_buffer.data_ptr()
        args.kv_dtype = in_dtypes[kv_buffer.dtype]
        args.kv_page_stride = kv_page_stride
        args.out = o.data_ptr()
        args.out_dtype = out_dtypes[o.dtype]
        args.lse = final_lse.data_ptr() if final_lse is not None else None
        args.qo_indptr = qo_indptr.data_ptr()
        args.kv_indptr = kv_indptr.data_ptr()
        args.kv_indices = kv_indices.data_ptr() if kv_indices.numel() > 0 else None
        args.kv_last_page_lens = kv_last_page_lens.data_ptr()
        args.batch = batch
        args.total_q = total_q
        args.num_heads = num_heads
        args.max_seqlen_q = max_seqlen_q
        args.page_size = page_size
        args.kv_lora_rank = kv_lora_rank
        args.rope_dim = rope_dim
        args.num_kv_indices = kv_indices.numel()
        args.sm_scale = sm_scale
        args.logit_cap = logit_cap
        args.q_scale = q_scale_value
        args.kv_scale = kv_scale_value
        args.causal = 1 if causal else 0
        args.num_kv_splits = splits if metadata is None else 0
        args.stream = stream or None

        if metadata is None:
            nbytes = ctypes.c_size_t(0)
            _lib.check(lib.mlajit_decode_workspace_size(ctx, ctypes.byref(args), ctypes.byref(nbytes)),
                       "mla_decode_fwd (planning)")
            _attach_workspace(torch, args, device, stream, nbytes.value)
            _lib.check(lib.mlajit_decode(ctx, ctypes.byref(args)), "mla_decode_fwd")
        else:
            sizes = _persistent_sizes(lib, ctx, args, "mla_decode_fwd (planning)")
            _check_metadata_sizes(metadata, sizes, "the call's")
            _attach_workspace(torch, args, device, stream, sizes.workspace_bytes)
            _lib.check(lib.mlajit_persistent_decode(ctx, ctypes.byref(args), ctypes.byref(_metadata_struct(metadata))),
                       "mla_decode_fwd (persistent)")
    return logits, final_lse


def _backend(torch) -> int:
    return _lib.BACKEND_HIP if getattr(torch.version, "hip", None) else _lib.BACKEND_CUDA


def _attach_workspace(torch, args, device, stream: int, nbytes: int) -> None:
    workspace = _workspace(torch, device, stream, nbytes)
    if workspace is not None:
        args.workspace = workspace.data_ptr()
        args.workspace_bytes = workspace.numel()


# ---------------------------------------------------------------------------------------------
# Persistent metadata (mla-semantics §1.4-1.5). AITER's names, order and call shapes; the contents
# are mlajit's own work list (include/mlajit/mlajit.h), so buffers must come from
# get_mla_metadata_info_v1 and be filled by get_mla_metadata_v1, not by AITER.

_METADATA = _lib.PERSISTENT_BUFFERS


def _metadata_given(**buffers):
    """None when no metadata buffer is given (non-persistent form), else all six, in order."""
    given = [name for name in _METADATA if buffers[name] is not None]
    if not given:
        return None
    missing = [name for name in _METADATA if buffers[name] is None]
    if missing:
        raise ValueError("the persistent form of mla_decode_fwd needs all six metadata buffers; missing: "
                         + ", ".join(missing) + " (allocate them from get_mla_metadata_info_v1)")
    return [(name, buffers[name]) for name in _METADATA]


def _check_metadata_tensors(torch, metadata, device) -> None:
    for name, t in metadata:
        _require_tensor(torch, name, t, device)
        if t.dtype != torch.int32:
            raise ValueError(f"{name} must be int32 (as get_mla_metadata_info_v1 says), got {t.dtype}")
        if not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous")


def _check_metadata_sizes(metadata, sizes, whose: str) -> None:
    for i, (name, t) in enumerate(metadata):
        need = int(sizes.elements[i])
        if t.numel() < need:
            raise ValueError(f"{name} must have at least {need} int32 elements for {whose} batch, heads, "
                             f"max_seqlen_q and dtypes (get_mla_metadata_info_v1), got {t.numel()}")


def _metadata_struct(metadata):
    m = _lib.PersistentMetadata()
    for name, t in metadata:
        setattr(m, name, t.data_ptr() if t.numel() > 0 else None)
    return m


def _persistent_sizes(lib, ctx, args, what: str):
    sizes = _lib.PersistentSizes()
    _lib.check(lib.mlajit_persistent_sizes_query(ctx, ctypes.byref(args), ctypes.byref(sizes)), what)
    return sizes


def _shape_args(torch, batch, max_seqlen_q, num_heads, q_dtype, kv_dtype, page_size, causal=True):
    """mlajit_decode_args holding only what the persistent sizes and the schedule depend on."""
    in_dtypes = _input_dtypes(torch)
    if q_dtype not in in_dtypes:
        raise ValueError(f"q_dtype must be one of {_names(in_dtypes)}, got {q_dtype}")
    if kv_dtype not in in_dtypes:
        raise ValueError(f"kv_dtype must be one of {_names(in_dtypes)}, got {kv_dtype}")
    args = _lib.new_decode_args()
    args.batch = batch
    args.total_q = batch * max_seqlen_q
    args.num_heads = num_heads
    args.max_seqlen_q = max_seqlen_q
    args.page_size = page_size
    args.q_dtype = in_dtypes[q_dtype]
    args.kv_dtype = in_dtypes[kv_dtype]
    args.out_dtype = _lib.DTYPE_BF16 if in_dtypes[q_dtype] == _lib.DTYPE_FP8_E4M3 else in_dtypes[q_dtype]
    args.causal = 1 if causal else 0
    return args


def get_mla_metadata_info_v1(batch_size, max_seqlen_qo, num_head_qo, q_dtype, kv_dtype, is_sparse, fast_mode=True,
                             num_kv_splits=32, intra_batch_mode=False, max_split_per_batch=-1, page_size=1):
    """AITER's `get_mla_metadata_info_v1`: the [(shape, dtype)] of the six persistent metadata
    buffers, in the order work_meta_data, work_indptr, work_info_set, reduce_indptr,
    reduce_final_map, reduce_partial_map, for the current CUDA device. Allocate each with
    torch.empty(shape, dtype=dtype, device=...).

    Sizes depend only on batch_size, max_seqlen_qo, num_head_qo, the dtypes and the device (never
    on lengths), so one allocation serves every decode step of that shape, CUDA graphs included.
    All six are int32 (AITER's work_meta_data is 2 x uint64; mlajit's holds 4 counts, then two
    counters a (request, row group) tile that let the reduce start on each tile as soon as its
    pieces are written; they are back at 0 after every decode, so one fill serves every layer of
    a step; then 16 ints a worker: its list's bounds and first item). fast_mode,
    num_kv_splits and max_split_per_batch only size AITER's own scheduler and are accepted and
    unused; page_size (an mlajit extension, default 1) should match the decode's when the kernel
    choice depends on it. is_sparse=True (top-k sparse decode) and intra_batch_mode=True are not
    implemented yet (NotImplementedError)."""
    if is_sparse:
        raise NotImplementedError("mlajit: sparse (top-k) persistent metadata (is_sparse=True) is not implemented yet")
    if intra_batch_mode:
        raise NotImplementedError("mlajit: intra_batch_mode=True metadata is not implemented yet")
    torch = _torch()
    batch = _require_int("batch_size", batch_size, 1)
    s_q = _require_int("max_seqlen_qo", max_seqlen_qo, 1, 8)
    heads = _require_int("num_head_qo", num_head_qo, 1, 256)
    page_size = _require_int("page_size", page_size, 1)
    device = torch.device("cuda", torch.cuda.current_device())
    lib = _lib.load()
    with torch.cuda.device(device):
        ctx = _lib.context(_backend(torch), device.index)
        args = _shape_args(torch, batch, s_q, heads, q_dtype, kv_dtype, page_size)
        sizes = _persistent_sizes(lib, ctx, args, "get_mla_metadata_info_v1")
    shapes = [(int(n),) for n in sizes.elements]
    shapes[2] = (int(sizes.elements[2]) // 8, 8)  # work_info_set: [max_items, 8]
    return [(shape, torch.int32) for shape in shapes]


def get_mla_metadata_v1(qo_indptr, kv_indptr, kv_last_page_lens, num_heads_per_head_k, num_heads_k, is_causal,
                        work_meta_data, work_info_set, work_indptr, reduce_indptr, reduce_final_map,
                        reduce_partial_map, page_size=1, kv_granularity=16, max_seqlen_qo=-1, uni_seqlen_qo=-1,
                        fast_mode=True, topk=-1, max_split_per_batch=-1, intra_batch_mode=False,
                        is_cp_round_robin=False, mla_version=None, dtype_q_nope=None, dtype_kv_nope=None,
                        dtype_q=None, dtype_kv=None):
    """AITER's `get_mla_metadata_v1` (note its positional order: work_info_set before
    work_indptr). Fills the six buffers in place on the current stream with one GPU kernel that
    reads the indptrs on the device: no host synchronisation, so it can be captured in a CUDA
    graph together with mla_decode_fwd and replayed with new lengths.

    num_heads_k must be 1 (one latent KV head); heads = num_heads_per_head_k. max_seqlen_qo (else
    uni_seqlen_qo) gives the query tokens per request, 1..8; with both -1 it is read from
    qo_indptr, which syncs (not allowed under graph capture). dtype_q / dtype_kv (default bf16; the
    *_nope forms are accepted as aliases) pick the kernel family. kv_granularity, fast_mode and
    max_split_per_batch tune AITER's scheduler and are accepted and unused (mlajit balances
    64-token blocks + a fixed per-item cost over one wave of CTAs). topk >= 0 (sparse),
    intra_batch_mode and is_cp_round_robin are not implemented yet (NotImplementedError)."""
    if topk is not None and topk >= 0:
        raise NotImplementedError("mlajit: sparse (topk) persistent metadata is not implemented yet")
    if intra_batch_mode:
        raise NotImplementedError("mlajit: intra_batch_mode=True metadata is not implemented yet")
    if is_cp_round_robin:
        raise NotImplementedError("mlajit: context-parallel round-robin metadata is not implemented yet")
    torch = _torch()
    _require_tensor(torch, "qo_indptr", qo_indptr)
    device = qo_indptr.device
    if qo_indptr.dim() != 1 or qo_indptr.numel() < 2:
        raise ValueError(f"qo_indptr must be 1-D [batch + 1] with batch >= 1, got shape {tuple(qo_indptr.shape)}")
    batch = qo_indptr.numel() - 1
    _require_index_vector(torch, "qo_indptr", qo_indptr, device)
    _require_index_vector(torch, "kv_indptr", kv_indptr, device, batch + 1, "batch + 1")
    _require_index_vector(torch, "kv_last_page_lens", kv_last_page_lens, device, batch, "batch")
    if _require_int("num_heads_k", num_heads_k) != 1:
        raise ValueError(f"num_heads_k must be 1 (MLA has one latent KV head), got {num_heads_k}")
    heads = _require_int("num_heads_per_head_k", num_heads_per_head_k, 1, 256)
    page_size = _require_int("page_size", page_size, 1)
    s_q = max_seqlen_qo if max_seqlen_qo is not None and max_seqlen_qo > 0 else uni_seqlen_qo
    if s_q is None or s_q <= 0:
        if torch.cuda.is_current_stream_capturing():
            raise ValueError("max_seqlen_qo (or uni_seqlen_qo) must be given under CUDA-graph capture: reading it "
                             "from qo_indptr needs a device-to-host copy")
        s_q = max(1, int((qo_indptr[1:] - qo_indptr[:-1]).max().item()))
    s_q = _require_int("max_seqlen_qo", s_q, 1, 8)
    q_dtype = dtype_q if dtype_q is not None else (dtype_q_nope if dtype_q_nope is not None else torch.bfloat16)
    kv_dtype = dtype_kv if dtype_kv is not None else (dtype_kv_nope if dtype_kv_nope is not None else torch.bfloat16)
    metadata = _metadata_given(work_meta_data=work_meta_data, work_indptr=work_indptr, work_info_set=work_info_set,
                               reduce_indptr=reduce_indptr, reduce_final_map=reduce_final_map,
                               reduce_partial_map=reduce_partial_map)
    if metadata is None:
        raise ValueError("get_mla_metadata_v1 needs the six metadata buffers (from get_mla_metadata_info_v1)")
    _check_metadata_tensors(torch, metadata, device)

    lib = _lib.load()
    with torch.cuda.device(device):
        ctx = _lib.context(_backend(torch), device.index)
        args = _shape_args(torch, batch, s_q, heads, q_dtype, kv_dtype, page_size, causal=bool(is_causal))
        args.qo_indptr = qo_indptr.data_ptr()
        args.kv_indptr = kv_indptr.data_ptr()
        args.kv_last_page_lens = kv_last_page_lens.data_ptr()
        stream = int(torch.cuda.current_stream(device).cuda_stream)
        args.stream = stream or None
        sizes = _persistent_sizes(lib, ctx, args, "get_mla_metadata_v1 (planning)")
        _check_metadata_sizes(metadata, sizes, "this")
        _lib.check(lib.mlajit_persistent_metadata_fill(ctx, ctypes.byref(args), ctypes.byref(_metadata_struct(metadata))),
                   "get_mla_metadata_v1")
