#!/usr/bin/env python3
"""The backward pass's cost, as ratios against torch and onnxruntime.

    cargo build --release
    /tmp/fx/bin/python benches/export_models.py /tmp/nnlint-bench   # the architectures
    /tmp/fx/bin/python benches/gradients.py /tmp/nnlint-bench        # exports ResNet-50 once

Every command runs as a whole process, RUNS times; the table shows the median
wall time and the largest peak RSS (/usr/bin/time). Rows:
  - ResNet-50, batch 8, 224x224, training export with `F.cross_entropy`:
    `nnlint model.onnx` with default options (static rules, forward probe, and
    the backward pass on as many of the batch's samples as `--probe-memory`
    and `--probe-time` hold, at least two; the row says how many) and
    with the backward pass forced (`--probe-memory 8192 --probe-time 600`,
    the fit off), each against a
    Python process that imports torch and torchvision, builds the model and
    runs one forward and backward pass (the target: at most as slow);
  - the same model with `--no-grad` against one onnxruntime inference of the
    batch (the forward probe's target: at most 2x);
  - resnet18 and the TransformerEncoder LM of benches/export_models.py, whose
    backward pass runs by default: the extra cost of `nnlint` over
    `nnlint --no-grad`;
  - the one-batch fit of `cannot-overfit`: its extra cost on the healthy
    gradient fixtures and the tanh-logits one (default vs `--overfit-steps 0`),
    and on resnet18 at 64x64, by default (its estimate fits the budget, and
    the fit reaches its goal in a few steps) and with `--overfit-steps 200`
    (one run).
"""

import json
import os
import subprocess
import sys

from probe import ORT, measure

RUNS = 5

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NNLINT = os.path.join(ROOT, "target", "release", "nnlint")
TORCH = [sys.executable, "-c", """
import torch, torchvision
torch.manual_seed(0)
m = torchvision.models.resnet50().train()
x = torch.randn(8, 3, 224, 224); y = torch.randint(0, 1000, (8,))
torch.nn.functional.cross_entropy(m(x), y).backward()
"""]


def resnet50(path):
    import torch
    import torchvision
    from export_models import WithLoss

    torch.manual_seed(0)
    model = WithLoss(torchvision.models.resnet50()).train()
    args = (torch.randn(8, 3, 224, 224), torch.randint(0, 1000, (8,)))
    torch.onnx.export(model, args, path, dynamo=True, verbose=False)


def row(name, ours, peer, label):
    print(f"{name:<40}{ours[0]:>9.2f}{ours[1]:>8.0f}{peer[0]:>9.2f}{peer[1]:>8.0f}  "
          f"wall {ours[0] / peer[0]:.2f}x, RSS {ours[1] / peer[1]:.2f}x of {label}")


def main():
    bench = sys.argv[1] if len(sys.argv) > 1 else "/tmp/nnlint-bench"
    r50 = os.path.join(bench, "resnet50_b8_train_ce.onnx")
    if not os.path.exists(r50):
        resnet50(r50)
    print(f"{'model':<40}{'nnlint s':>9}{'MiB':>8}{'peer s':>9}{'MiB':>8}")
    torch_run = measure(TORCH, RUNS)
    # The default run cuts the backward pass to the samples its budget
    # holds: the row says how many, read from the JSON report.
    report = json.loads(subprocess.run([NNLINT, "--format", "json-report", r50],
                                       capture_output=True, text=True).stdout)
    samples = report["files"][0]["measurements"].get("gradient_samples")
    label = f"grads on {samples} of 8" if samples else "no grads"
    row(f"resnet50 b8, default ({label})", measure([NNLINT, "--format", "short", r50], RUNS),
        torch_run, "torch fwd+bwd")
    # Forced past both budgets: memory, and the probe's time, whose estimate
    # alone would skip it otherwise (it said "backward forced" while
    # skipping it for time since the time budget landed).
    forced = [NNLINT, "--probe-memory", "8192", "--probe-time", "600", "--overfit-steps", "0", "--format", "short", r50]
    row("resnet50 b8, backward forced", measure(forced, RUNS),
        torch_run, "torch fwd+bwd")
    row("resnet50 b8, --no-grad", measure([NNLINT, "--no-grad", "--format", "short", r50], RUNS), measure(ORT + [r50], RUNS),
        "onnxruntime inference")
    for name in ("resnet18_dynamo_train_ce", "transformer_lm_dynamo_train", "efficientnet_b0_dynamo_train_ce"):
        path = os.path.join(bench, "arch", name + ".onnx")
        if os.path.exists(path):
            row(name, measure([NNLINT, "--format", "short", path], RUNS),
                measure([NNLINT, "--no-grad", "--format", "short", path], RUNS), "--no-grad")
    # The one-batch fit (`cannot-overfit`): its extra cost by default (it
    # runs where its estimate fits the budget), against `--overfit-steps 0`.
    healthy = [os.path.join(ROOT, "fixtures", p) for p in (
        "gradients/grad_healthy_bn_dynamo_train.onnx",
        "gradients/grad_preln_residual_dynamo_train.onnx",
        "gradients/reference/ref_cnn_dynamo_train.onnx",
        "overfit/steps/step_mlp_dynamo_train.onnx",
        "overfit/overfit_tanh_logits_dynamo_train.onnx",
    )]
    row("clean fixtures and tanh-logits, fit", measure([NNLINT, "--format", "short"] + healthy, RUNS),
        measure([NNLINT, "--overfit-steps", "0", "--format", "short"] + healthy, RUNS), "--overfit-steps 0")
    r18 = os.path.join(bench, "arch", "resnet18_dynamo_train_ce.onnx")
    if os.path.exists(r18):
        row("resnet18 64x64, default (fit runs)", measure([NNLINT, "--format", "short", r18], RUNS),
            measure([NNLINT, "--overfit-steps", "0", "--format", "short", r18], RUNS), "--overfit-steps 0")
        row("resnet18 64x64, --overfit-steps 200", measure([NNLINT, "--overfit-steps", "200", "--format", "short", r18], 1),
            measure([NNLINT, "--overfit-steps", "0", "--format", "short", r18], RUNS), "--overfit-steps 0")


if __name__ == "__main__":
    main()
