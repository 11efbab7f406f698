"""`nnlint.torch.check`: export a torch module the way nnlint reads best, and lint it.

The export is the one the README's "Exporting for nnlint" section asks for:
the loss inside ``forward``, training mode, and recorded source lines
(dynamo's stack traces, or TorchScript's ``verbose=True``). The module comes
back as it went in: its training/eval modes, parameters, buffers (BatchNorm's
running statistics too) and torch's random state are restored.

Needs ``pip install "nnlint[torch]"`` (torch, and onnxscript for dynamo).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple, Union

try:
    import torch
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError('nnlint.torch needs torch: pip install "nnlint[torch]"') from e

from nnlint._report import Report, lint

__all__ = ["ExportError", "check"]

EXPORTERS = ("dynamo", "torchscript")


class ExportError(RuntimeError):
    """``torch.onnx.export`` failed; the message is torch's, with a hint. The
    original exception is ``__cause__``."""


class _WithLoss(torch.nn.Module):
    """The module and its loss in one ``forward``, so that the loss is in the graph."""

    def __init__(self, module: torch.nn.Module, loss: Callable[..., torch.Tensor], has_target: bool):
        super().__init__()
        self.module = module
        self.loss = loss
        self.has_target = has_target

    def forward(self, *args: Any) -> torch.Tensor:
        if self.has_target:
            *inputs, target = args
            return self.loss(self.module(*inputs), target)
        return self.loss(self.module(*args))


def _snapshot(module: torch.nn.Module) -> Tuple[Dict[torch.nn.Module, bool], Dict[str, torch.Tensor], Any]:
    modes = {m: m.training for m in module.modules()}
    state = {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items() if isinstance(v, torch.Tensor)}
    return modes, state, torch.random.get_rng_state()


def _restore(module: torch.nn.Module, snapshot: Tuple[Dict[torch.nn.Module, bool], Dict[str, torch.Tensor], Any]) -> None:
    modes, state, rng = snapshot
    current = module.state_dict(keep_vars=True)
    with torch.no_grad():
        for k, saved in state.items():
            now = current.get(k)
            if isinstance(now, torch.Tensor) and not (now.shape == saved.shape and torch.equal(now, saved)):
                now.copy_(saved)
    for m, training in modes.items():
        m.training = training
    torch.random.set_rng_state(rng)


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """The exporter's progress and registry warnings, not shown; errors still are."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _hint(exporter: str, error: BaseException) -> str:
    if isinstance(error, ImportError) and "onnxscript" in str(error):
        return 'the dynamo exporter needs onnxscript: pip install "nnlint[torch]"'
    other = "torchscript" if exporter == "dynamo" else "dynamo"
    return (
        f"nnlint lints what torch exports; try exporter={other!r}, or export the model "
        "yourself and call nnlint.lint(path)"
    )


def check(
    module: torch.nn.Module,
    example_inputs: Union[torch.Tensor, Sequence[Any]],
    *,
    target: Optional[Any] = None,
    loss: Optional[Callable[..., torch.Tensor]] = None,
    train: bool = True,
    exporter: str = "dynamo",
    **options: Any,
) -> Report:
    """Export ``module`` with its loss and lint it; findings point at your lines.

    ``loss(module(*example_inputs), target)`` (or ``loss(module(*example_inputs))``
    without a target) becomes the graph's output, so the loss rules can look.
    ``train=True`` exports in training mode, which keeps Dropout and batch-statistics
    BatchNorm for the rules about them. ``exporter`` is ``"dynamo"`` (the default;
    needs onnxscript) or ``"torchscript"``. Other keywords are :func:`nnlint.lint`'s.

    Raises :class:`ExportError` when torch cannot export the module, and
    :class:`nnlint.NnlintError` when nnlint cannot read the export.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, not {exporter!r}")
    if target is not None and loss is None:
        raise ValueError("a target needs a loss: check(model, (x,), target=y, loss=F.cross_entropy)")
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    graph_module: torch.nn.Module = module
    args = inputs
    if loss is not None:
        graph_module = _WithLoss(module, loss, target is not None)
        if target is not None:
            args = (*inputs, target)
    snapshot = _snapshot(module)
    with tempfile.TemporaryDirectory(prefix="nnlint-") as folder:
        path = os.path.join(folder, f"{type(module).__name__}_{exporter}_{'train' if train else 'eval'}.onnx")
        try:
            graph_module.train(train)
            kwargs: Dict[str, Any]
            if exporter == "dynamo":
                kwargs = {"dynamo": True, "verbose": False}
            else:
                mode = torch.onnx.TrainingMode.TRAINING if train else torch.onnx.TrainingMode.EVAL
                # verbose=True records each node's Python frames; training= keeps Dropout.
                kwargs = {"dynamo": False, "verbose": True, "training": mode, "do_constant_folding": not train}
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet("torch.onnx"):
                warnings.simplefilter("ignore")
                torch.onnx.export(graph_module, args, path, **kwargs)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ExportError(
                f"torch.onnx.export ({exporter}) failed: {type(e).__name__}: {first}\nhint: {_hint(exporter, e)}"
            ) from e
        finally:
            _restore(module, snapshot)
        return lint([path], **options)
