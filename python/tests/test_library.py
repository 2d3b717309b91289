"""The ctypes layer without PyTorch: finding libmlajit, the ABI check, status codes to exceptions.
Tests that need the library skip where it is not built."""

import ctypes

import pytest

from mlajit import _lib


def _library_or_skip():
    try:
        return _lib.load()
    except _lib.LibraryNotFoundError as e:
        pytest.skip(f"libmlajit not found: {e}")


def test_candidates_follow_environment(monkeypatch):
    monkeypatch.setenv("MLAJIT_LIBRARY", "/some/where/libmlajit.so")
    assert _lib.candidate_paths() == ["/some/where/libmlajit.so"]
    monkeypatch.delenv("MLAJIT_LIBRARY")
    paths = _lib.candidate_paths()
    assert paths[0].endswith("mlajit/libmlajit.so")
    assert paths[1].endswith("build/runtime/libmlajit.so")


def test_not_found_names_what_was_tried(monkeypatch, tmp_path):
    missing = str(tmp_path / "nope" / "libmlajit.so")
    monkeypatch.setenv("MLAJIT_LIBRARY", missing)
    with pytest.raises(_lib.LibraryNotFoundError) as info:
        _lib.open_library()
    assert missing in str(info.value)
    assert "MLAJIT_LIBRARY" in str(info.value)


def test_not_a_library(tmp_path):
    bogus = tmp_path / "libmlajit.so"
    bogus.write_text("not an ELF file")
    with pytest.raises(_lib.LibraryNotFoundError) as info:
        _lib.open_library([str(bogus)])
    assert str(bogus) in str(info.value)


def test_loads_and_matches_abi():
    lib = _library_or_skip()
    assert _lib.library_version()
    args = _lib.new_decode_args()  # load() already checked struct_size; the defaults come from C
    assert args.struct_size == ctypes.sizeof(_lib.DecodeArgs)
    assert (args.max_seqlen_q, args.page_size, args.kv_lora_rank, args.rope_dim, args.causal) == (1, 1, 512, 64, 1)
    assert (args.q_scale, args.kv_scale) == (1.0, 1.0)
    assert lib.mlajit_status_string(_lib.ERROR_INVALID_ARGUMENT) == b"invalid argument"


def test_status_becomes_exception():
    lib = _library_or_skip()
    status = lib.mlajit_decode(None, None)  # no context: rejected, nothing launched
    assert status == _lib.ERROR_INVALID_ARGUMENT
    with pytest.raises(_lib.MlajitInvalidArgument, match="context") as info:
        _lib.check(status, "mlajit_decode")
    assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)
    assert info.value.status == _lib.ERROR_INVALID_ARGUMENT


def test_context_or_clear_error():
    _library_or_skip()
    try:
        ctx = _lib.context(_lib.BACKEND_CUDA, 0)
    except _lib.MlajitError as e:  # no GPU / driver here
        assert str(e).startswith("mlajit: creating the context of device 0 failed")
        return
    assert ctx.value and _lib.context(_lib.BACKEND_CUDA, 0) is ctx  # cached per device
