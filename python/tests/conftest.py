"""Makes the package in this source tree (python/mlajit) importable when pytest runs from the
repository root, ahead of any installed copy."""

import pathlib
import sys

_PACKAGE_ROOT = str(pathlib.Path(__file__).resolve().parent.parent)
if _PACKAGE_ROOT not in sys.path:
    sys.path.insert(0, _PACKAGE_ROOT)
