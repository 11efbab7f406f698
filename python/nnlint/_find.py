"""Finding the `nnlint` binary the wheel installed."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

_EXE = "nnlint" + (sysconfig.get_config_var("EXE") or "")


def find_nnlint_bin() -> str:
    """The path of the `nnlint` binary.

    Looked for as ruff's ``find_ruff_bin`` looks: ``$NNLINT_BIN`` when set,
    the scripts folder of this interpreter's install scheme, the user scheme,
    the folder above the package (``pip install --target``), then ``PATH``.
    Raises ``FileNotFoundError`` naming the places tried.
    """
    override = os.environ.get("NNLINT_BIN")
    if override:
        if os.path.isfile(override):
            return override
        raise FileNotFoundError(f"NNLINT_BIN names {override}, which is not a file")
    tried = []
    candidates = [Path(sysconfig.get_path("scripts")) / _EXE]
    user_scheme = {"nt": "nt_user", "posix": "posix_user"}.get(os.name)
    if sys.platform == "darwin" and sys._framework:  # type: ignore[attr-defined]
        user_scheme = "osx_framework_user"
    if user_scheme in sysconfig.get_scheme_names():
        candidates.append(Path(sysconfig.get_path("scripts", scheme=user_scheme)) / _EXE)
    package_root = Path(__file__).resolve().parent.parent
    candidates.append(package_root / "bin" / _EXE)
    for c in candidates:
        tried.append(str(c))
        if c.is_file():
            return str(c)
    on_path = shutil.which(_EXE)
    if on_path:
        return on_path
    tried.append("PATH")
    raise FileNotFoundError("cannot find the nnlint binary; looked in " + ", ".join(tried))
