"""mlajit: JIT-compiled MLA (multi-head latent attention) kernels with AITER's Python API.

    from mlajit import mla_decode_fwd        # instead of: from aiter.mla import mla_decode_fwd
    from mlajit import get_mla_metadata_info_v1, get_mla_metadata_v1   # instead of: from aiter import ...
    # or: from mlajit import mla; mla.mla_decode_fwd(...)

A thin ctypes layer over libmlajit's C ABI (no compiled extension). The library is found through
$MLAJIT_LIBRARY, else a libmlajit.so inside this package, else <repo>/build/runtime/libmlajit.so.
Importing mlajit needs neither PyTorch nor the library; calling mla_decode_fwd needs both."""

from ._lib import (
    LibraryNotFoundError,
    MlajitError,
    MlajitInvalidArgument,
    library_path,
    library_version,
)
from . import mla
from .mla import get_mla_metadata_info_v1, get_mla_metadata_v1, mla_decode_fwd

__version__ = "0.1.0"

__all__ = [
    "LibraryNotFoundError",
    "MlajitError",
    "MlajitInvalidArgument",
    "library_path",
    "library_version",
    "mla",
    "mla_decode_fwd",
    "get_mla_metadata_info_v1",
    "get_mla_metadata_v1",
    "__version__",
]
