"""nnlint: a linter for neural-network graphs stored as ONNX.

``nnlint.lint(paths)`` lints exported models; ``nnlint.torch.check(model,
inputs)`` exports a torch module the way nnlint reads best and lints it
(``pip install "nnlint[torch]"``). Importing ``nnlint`` needs neither torch
nor onnx.
"""

from __future__ import annotations

from nnlint._find import find_nnlint_bin
from nnlint._report import (
    SEVERITIES,
    Finding,
    LintFailure,
    NnlintError,
    PythonLocation,
    Report,
    Span,
    lint,
)

# Tracebacks and reprs name the classes where users import them from.
for _cls in (Finding, LintFailure, NnlintError, PythonLocation, Report, Span):
    _cls.__module__ = "nnlint"
del _cls

try:
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("nnlint")
    except PackageNotFoundError:  # running from a checkout
        __version__ = "0+unknown"
except ImportError:  # pragma: no cover
    __version__ = "0+unknown"

__all__ = [
    "SEVERITIES",
    "Finding",
    "LintFailure",
    "NnlintError",
    "PythonLocation",
    "Report",
    "Span",
    "find_nnlint_bin",
    "lint",
]
