"""ctypes binding of the mlajit C ABI (include/mlajit/mlajit.h): finding and loading libmlajit,
the mlajit_decode_args struct, status codes turned into Python exceptions.

Nothing here needs PyTorch; the torch-facing API lives in mlajit.mla."""

from __future__ import annotations

import ctypes
import os
import pathlib
import threading
from typing import List, Optional, Tuple

LIBRARY_ENV = "MLAJIT_LIBRARY"
LIBRARY_NAME = "libmlajit.so"

# mlajit_status
OK = 0
ERROR_INVALID_ARGUMENT = 1
ERROR_UNSUPPORTED = 2
ERROR_COMPILE_FAILED = 3
ERROR_BACKEND_UNAVAILABLE = 4
ERROR_DEVICE = 5
ERROR_CACHE = 6
ERROR_INTERNAL = 7

# mlajit_dtype
DTYPE_BF16 = 0
DTYPE_FP16 = 1
DTYPE_FP8_E4M3 = 2
DTYPE_FP32 = 3

# mlajit_backend
BACKEND_CUDA = 0
BACKEND_HIP = 1


class LibraryNotFoundError(OSError):
    """libmlajit could not be found or loaded; the message lists every place that was tried."""


class MlajitError(RuntimeError):
    """A call into libmlajit failed; `status` is the mlajit_status code, the message is
    mlajit_last_error()."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class MlajitInvalidArgument(MlajitError, ValueError):
    """libmlajit rejected an argument (MLAJIT_ERROR_INVALID_ARGUMENT); nothing was launched.
    Both a RuntimeError (error from the C library) and a ValueError (bad argument)."""


class DecodeArgs(ctypes.Structure):
    """mlajit_decode_args, field for field (the struct_size check in load() catches drift)."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("q", ctypes.c_void_p),
        ("q_dtype", ctypes.c_int),
        ("kv_buffer", ctypes.c_void_p),
        ("kv_dtype", ctypes.c_int),
        ("kv_page_stride", ctypes.c_int64),
        ("out", ctypes.c_void_p),
        ("out_dtype", ctypes.c_int),
        ("lse", ctypes.c_void_p),
        ("qo_indptr", ctypes.c_void_p),
        ("kv_indptr", ctypes.c_void_p),
        ("kv_indices", ctypes.c_void_p),
        ("kv_last_page_lens", ctypes.c_void_p),
        ("batch", ctypes.c_int32),
        ("total_q", ctypes.c_int32),
        ("num_heads", ctypes.c_int32),
        ("max_seqlen_q", ctypes.c_int32),
        ("page_size", ctypes.c_int32),
        ("kv_lora_rank", ctypes.c_int32),
        ("rope_dim", ctypes.c_int32),
        ("num_kv_indices", ctypes.c_int64),
        ("sm_scale", ctypes.c_float),
        ("logit_cap", ctypes.c_float),
        ("q_scale", ctypes.c_float),
        ("kv_scale", ctypes.c_float),
        ("causal", ctypes.c_int32),
        ("num_kv_splits", ctypes.c_int32),
        ("workspace", ctypes.c_void_p),
        ("workspace_bytes", ctypes.c_size_t),
        ("stream", ctypes.c_void_p),
        ("rope", ctypes.c_int),
        ("cos_sin_cache", ctypes.c_void_p),
        ("cos_sin_dtype", ctypes.c_int),
        ("max_positions", ctypes.c_int32),
        ("positions", ctypes.c_void_p),
        ("k_pe_out", ctypes.c_void_p),
    ]


class PersistentMetadata(ctypes.Structure):
    """mlajit_persistent_metadata: the six int32 metadata buffers (AITER's names and order)."""

    _fields_ = [(name, ctypes.c_void_p) for name in (
        "work_meta_data", "work_indptr", "work_info_set", "reduce_indptr", "reduce_final_map",
        "reduce_partial_map")]


PERSISTENT_BUFFERS = tuple(name for name, _ in PersistentMetadata._fields_)


class PersistentSizes(ctypes.Structure):
    """mlajit_persistent_sizes."""

    _fields_ = [
        ("elements", ctypes.c_int64 * 6),
        ("workers", ctypes.c_int32),
        ("rows_per_item", ctypes.c_int32),
        ("workspace_bytes", ctypes.c_size_t),
    ]


_lock = threading.Lock()
_library: Optional[ctypes.CDLL] = None
_library_path: Optional[str] = None


def candidate_paths() -> List[str]:
    """Where load() looks, in order: $MLAJIT_LIBRARY (alone, when set), the package folder (a
    libmlajit.so copied in before `pip install`), the repository's build folder."""
    explicit = os.environ.get(LIBRARY_ENV)
    if explicit:
        return [explicit]
    here = pathlib.Path(__file__).resolve().parent
    return [
        str(here / LIBRARY_NAME),
        str(here.parent.parent / "build" / "runtime" / LIBRARY_NAME),  # <repo>/python/mlajit/ -> <repo>/build
    ]


def _declare(lib: ctypes.CDLL) -> None:
    status = ctypes.c_int
    lib.mlajit_version.restype = ctypes.c_char_p
    lib.mlajit_version.argtypes = []
    lib.mlajit_status_string.restype = ctypes.c_char_p
    lib.mlajit_status_string.argtypes = [status]
    lib.mlajit_last_error.restype = ctypes.c_char_p
    lib.mlajit_last_error.argtypes = []
    lib.mlajit_decode_args_init.restype = None
    lib.mlajit_decode_args_init.argtypes = [ctypes.POINTER(DecodeArgs)]
    lib.mlajit_context_create.restype = status
    lib.mlajit_context_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
    lib.mlajit_context_destroy.restype = status
    lib.mlajit_context_destroy.argtypes = [ctypes.c_void_p]
    lib.mlajit_decode_workspace_size.restype = status
    lib.mlajit_decode_workspace_size.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(DecodeArgs), ctypes.POINTER(ctypes.c_size_t)]
    lib.mlajit_decode.restype = status
    lib.mlajit_decode.argtypes = [ctypes.c_void_p, ctypes.POINTER(DecodeArgs)]
    lib.mlajit_persistent_sizes_query.restype = status
    lib.mlajit_persistent_sizes_query.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(DecodeArgs), ctypes.POINTER(PersistentSizes)]
    lib.mlajit_persistent_metadata_fill.restype = status
    lib.mlajit_persistent_metadata_fill.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(DecodeArgs), ctypes.POINTER(PersistentMetadata)]
    lib.mlajit_persistent_decode.restype = status
    lib.mlajit_persistent_decode.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(DecodeArgs), ctypes.POINTER(PersistentMetadata)]


def _check_abi(lib: ctypes.CDLL, path: str) -> None:
    probe = DecodeArgs()
    lib.mlajit_decode_args_init(ctypes.byref(probe))
    if probe.struct_size != ctypes.sizeof(DecodeArgs) or probe.kv_lora_rank != 512 or probe.rope_dim != 64:
        raise LibraryNotFoundError(
            f"{path}: its mlajit_decode_args ({probe.struct_size} bytes) does not match this Python package's "
            f"({ctypes.sizeof(DecodeArgs)} bytes); use a libmlajit built from the same source as the package")


def open_library(paths: Optional[List[str]] = None) -> Tuple[ctypes.CDLL, str]:
    """Loads libmlajit from the first of `paths` (default: candidate_paths()) that loads, declares
    its functions and checks the ABI. Uncached; most callers want load()."""
    explicit = paths is None and bool(os.environ.get(LIBRARY_ENV))
    tried = []
    for path in candidate_paths() if paths is None else paths:
        if not os.path.exists(path):
            tried.append(f"{path} (no such file)")
            continue
        try:
            lib = ctypes.CDLL(path)
            _declare(lib)
        except (OSError, AttributeError) as e:
            tried.append(f"{path} ({e})")
            continue
        _check_abi(lib, path)
        return lib, path
    how = (f"${LIBRARY_ENV} is set, so only it was tried" if explicit else
           f"set {LIBRARY_ENV} to the path of {LIBRARY_NAME} (built by `ninja -C build mlajit` as "
           f"build/runtime/{LIBRARY_NAME}), or copy it into the mlajit package folder before `pip install`")
    raise LibraryNotFoundError(f"cannot load {LIBRARY_NAME}; tried: " + "; ".join(tried) + f". {how}")


def load() -> ctypes.CDLL:
    """The process's libmlajit, loaded on first use. Raises LibraryNotFoundError naming what was
    tried."""
    global _library, _library_path
    if _library is not None:
        return _library
    with _lock:
        if _library is None:
            _library, _library_path = open_library()
        return _library


def library_path() -> str:
    """Path of the loaded libmlajit (loads it if needed)."""
    load()
    assert _library_path is not None
    return _library_path


def library_version() -> str:
    return load().mlajit_version().decode()


def last_error() -> str:
    return load().mlajit_last_error().decode(errors="replace")


def check(status: int, what: str) -> None:
    """Raises MlajitError (MlajitInvalidArgument for a rejected argument) unless status is OK.
    Must be called on the thread that made the failing call (mlajit_last_error is thread-local)."""
    if status == OK:
        return
    lib = load()
    message = lib.mlajit_last_error().decode(errors="replace")
    name = lib.mlajit_status_string(status).decode()
    text = f"mlajit: {what} failed ({name}): {message}" if message else f"mlajit: {what} failed ({name})"
    cls = MlajitInvalidArgument if status == ERROR_INVALID_ARGUMENT else MlajitError
    raise cls(text, status)


def new_decode_args() -> DecodeArgs:
    args = DecodeArgs()
    load().mlajit_decode_args_init(ctypes.byref(args))
    return args


_contexts = {}
_contexts_lock = threading.Lock()


def context(backend: int, device: int) -> ctypes.c_void_p:
    """The process-wide mlajit_context of (backend, device), created on first use. Contexts live
    until the process exits (never destroyed at interpreter shutdown, when the driver may
    already be going away)."""
    key = (backend, device)
    ctx = _contexts.get(key)
    if ctx is not None:
        return ctx
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None:
            handle = ctypes.c_void_p()
            check(load().mlajit_context_create(backend, device, ctypes.byref(handle)),
                  f"creating the context of device {device}")
            ctx = handle
            _contexts[key] = ctx
        return ctx
