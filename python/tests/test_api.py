"""mla_decode_fwd's checks that need PyTorch but no GPU and no libmlajit: CPU tensors and wrong
argument types are rejected with a ValueError naming the argument; the signature is AITER's."""

import inspect

import pytest

torch = pytest.importorskip("torch")

from mlajit import mla_decode_fwd  # noqa: E402

AITER_SIGNATURE = (
    "q, kv_buffer, o, qo_indptr, kv_indptr, kv_indices, kv_last_page_lens, max_seqlen_q, page_size=1, "
    "nhead_kv=1, sm_scale=None, logit_cap=0.0, num_kv_splits=None, num_kv_splits_indptr=None, "
    "work_meta_data=None, work_indptr=None, work_info_set=None, reduce_indptr=None, reduce_final_map=None, "
    "reduce_partial_map=None, q_scale=None, kv_scale=None, intra_batch_mode=False, return_logits=False, "
    "return_lse=False, g_kv_indptr=None, cp_world_size=1, cp_rank=0, causal=True")


def test_signature_is_aiters():
    params = inspect.signature(mla_decode_fwd).parameters.values()
    text = ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}" for p in params)
    assert text == AITER_SIGNATURE


def _cpu_problem():
    i32 = dict(dtype=torch.int32)
    return dict(q=torch.zeros(2, 16, 576, dtype=torch.bfloat16),
                kv_buffer=torch.zeros(4, 1, 1, 576, dtype=torch.bfloat16),
                o=torch.zeros(2, 16, 512, dtype=torch.bfloat16),
                qo_indptr=torch.tensor([0, 1, 2], **i32), kv_indptr=torch.tensor([0, 2, 4], **i32),
                kv_indices=torch.arange(4, **i32), kv_last_page_lens=torch.ones(2, **i32), max_seqlen_q=1)


def test_cpu_tensors_rejected():
    with pytest.raises(ValueError, match="q must be a CUDA tensor"):
        mla_decode_fwd(**_cpu_problem())


def test_non_tensor_rejected():
    args = _cpu_problem()
    args["q"] = [[0.0]]
    with pytest.raises(ValueError, match="q must be a torch.Tensor"):
        mla_decode_fwd(**args)
