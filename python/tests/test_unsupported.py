"""Arguments of AITER's API that select paths mlajit does not have yet raise NotImplementedError
before anything else is looked at, and an incomplete persistent call is a ValueError (no PyTorch,
library or GPU needed)."""

import pytest

from mlajit import mla_decode_fwd

T = object()  # stands for any tensor: rejected before tensors are inspected
BASE = (T, T, T, T, T, T, T, 1)


@pytest.mark.parametrize("name", ["work_meta_data", "work_indptr", "work_info_set", "reduce_indptr",
                                  "reduce_final_map", "reduce_partial_map"])
def test_persistent_form_needs_all_six_buffers(name):
    with pytest.raises(ValueError, match="needs all six metadata buffers; missing: .*"):
        mla_decode_fwd(*BASE, **{name: T})


def test_per_request_splits():
    with pytest.raises(NotImplementedError, match="num_kv_splits_indptr"):
        mla_decode_fwd(*BASE, num_kv_splits=4, num_kv_splits_indptr=T)


def test_return_logits():
    with pytest.raises(NotImplementedError, match="return_logits"):
        mla_decode_fwd(*BASE, return_logits=True)


@pytest.mark.parametrize("kwargs", [{"cp_world_size": 2}, {"g_kv_indptr": T}])
def test_context_parallel(kwargs):
    with pytest.raises(NotImplementedError, match="context-parallel"):
        mla_decode_fwd(*BASE, **kwargs)


def test_cp_rank_without_cp():
    with pytest.raises(ValueError, match="cp_rank"):
        mla_decode_fwd(*BASE, cp_rank=1)


def test_sparse_and_intra_batch_metadata():
    from mlajit import get_mla_metadata_info_v1, get_mla_metadata_v1

    with pytest.raises(NotImplementedError, match="is_sparse"):
        get_mla_metadata_info_v1(4, 1, 16, T, T, True)
    with pytest.raises(NotImplementedError, match="intra_batch_mode"):
        get_mla_metadata_info_v1(4, 1, 16, T, T, False, intra_batch_mode=True)
    with pytest.raises(NotImplementedError, match="topk"):
        get_mla_metadata_v1(T, T, T, 16, 1, True, T, T, T, T, T, T, topk=2048)


def test_prefill_is_not_faked():
    import mlajit

    assert not hasattr(mlajit, "mla_prefill_fwd")
