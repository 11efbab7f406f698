#!/usr/bin/env python3
"""The one-batch fit's verdict against torch's own Adam fit on the same batch.

    cargo build --release --locked
    /tmp/fx/bin/python benches/fit_verdicts.py

For each model below (the planted cannot-overfit and batch-mixing cases of
fixtures/generate.py, and healthy ones beside them), at torch's seed 0:
- the module is exported (dynamo, training mode) and its batch saved as .npy;
- `nnlint --overfit-steps 200 --input ...` fits that batch (its budget is
  ignored, so the verdict is the fit's, not the clock's);
- torch fits a copy of the same module, from the same weights, on the same
  batch with `torch.optim.Adam` under nnlint's own rules (`rules/cannot-overfit.md`):
  lr 1e-2, stop below max(0.1 x the first loss, 0.01 ln C), give up after 50
  steps without a 1% better lowest loss, then once more from the initial
  weights at a tenth of the rate (a third after a spike) with the steps left.

It prints one line per model, then a summary, and exits 1 when a verdict
differs:

    fit verdicts: N models, A agree with torch's Adam; planted: P of Q cannot fit in both

Versions: those of benches/real_architectures.py (torch 2.15.0).
"""

import copy
import json
import math
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "fixtures"))
import generate as g  # noqa: E402  (the fixtures' modules)

STEPS, LR, FRACTION, FLOOR, PATIENCE, MIN_GAIN = 200, 1e-2, 0.1, 0.01, 50, 0.01


def cases():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 32, generator=gen)
    y10 = torch.randint(0, 10, (8,), generator=gen)
    y8 = torch.randint(0, 8, (8,), generator=gen)
    img = torch.randn(8, 3, 16, 16, generator=gen)
    ids = torch.randint(0, 50, (4, 6), generator=gen)
    tok = torch.randint(0, 50, (4, 6), generator=gen)
    bn_block = lambda w, o: [nn.BatchNorm1d(w), nn.ReLU(), nn.Linear(w, o)]  # noqa: E731
    relu_block = lambda w, o: [nn.ReLU(), nn.Linear(w, o)]  # noqa: E731
    # (name, module, inputs by forward's argument names, classes, planted)
    return [
        ("overfit_tanh_logits", g.TanhLogits, {"x": x, "y": y8}, 8, True),
        ("grad_batch_mean", g.GradBatchMean, {"x": x, "y": y10}, 10, True),
        ("grad_healthy_bn", lambda: g.GradMlp(3, bn_block), {"x": x, "y": y10}, 10, False),
        ("step_plain_relu", lambda: g.GradMlp(3, relu_block), {"x": x, "y": y10}, 10, False),
        ("grad_cnn", g.GradCnn, {"x": img, "y": y10}, 10, False),
        ("grad_transformer", g.GradTransformer, {"ids": ids, "y": tok}, 50, False),
        ("grad_nll", g.GradNll, {"x": x, "y": y10}, 10, False),
    ]


def torch_fit(model, inputs, classes):
    """nnlint's fitting procedure, with torch's Adam: (fitted, steps, losses)."""
    start = copy.deepcopy(model.state_dict())
    goal, lr, taken, retried = None, LR, 0, False
    while True:
        model.load_state_dict(start)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        losses = []
        budget = STEPS - taken
        for step in range(budget + 1):
            loss = model(*inputs)
            value = float(loss)
            if goal is None:
                goal = max(FRACTION * value, FLOOR * math.log(max(classes, 2)))
            losses.append(value)
            lowest = min(losses)
            plateau = len(losses) > PATIENCE and lowest > min(losses[:-PATIENCE]) * (1 - MIN_GAIN)
            if not math.isfinite(value) or value < goal or plateau or step == budget:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        taken += len(losses) - 1
        fitted = min(losses) < goal
        # Only a plateau is retried, as nnlint does; a divergence or steps
        # that ran out are the verdict.
        if fitted or retried or not plateau or STEPS - taken <= PATIENCE:
            return fitted, taken, losses
        best = min(range(len(losses)), key=losses.__getitem__)
        spiked = losses[best] < losses[0] / 2 and max(losses[best:]) > 2 * losses[best]
        lr /= 3 if spiked else 10
        retried = True


def nnlint_fit(binary, path, files):
    args = [binary, "--overfit-steps", str(STEPS), "--format", "json-report", "--color", "never"]
    for name, f in files.items():
        args += ["--input", f"{name}={f}"]
    run = subprocess.run(args + [path], capture_output=True, text=True)
    report = json.loads(run.stdout)["files"][0]
    fit = report["measurements"].get("fit")
    failed = any(f.get("rule") == "cannot-overfit" or "cannot fit one batch" in f.get("message", "") for f in report["findings"])
    if fit is None:
        return None, 0, []
    steps = len(fit["losses"]) - 1 + (len(fit["unstable"]["losses"]) - 1 if fit.get("unstable") else 0)
    return not failed and min(fit["losses"]) < fit["goal"], steps, fit["losses"]


def main():
    warnings.filterwarnings("ignore")  # the exporter's notes on every model
    binary = os.environ.get("NNLINT", os.path.join(ROOT, "target", "release", "nnlint"))
    agree, planted_both, planted, total = 0, 0, 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, make, inputs, classes, is_planted in cases():
            torch.manual_seed(0)
            model = make().train()
            path = os.path.join(tmp, name + ".onnx")
            torch.onnx.export(copy.deepcopy(model), tuple(inputs.values()), path, dynamo=True, verbose=False,
                              input_names=list(inputs))
            files = {}
            for k, v in inputs.items():
                files[k] = os.path.join(tmp, f"{name}.{k}.npy")
                np.save(files[k], v.numpy())
            ours, our_steps, our_losses = nnlint_fit(binary, path, files)
            theirs, their_steps, their_losses = torch_fit(model, tuple(inputs.values()), classes)
            total += 1
            same = ours == theirs
            agree += same
            if is_planted:
                planted += 1
                planted_both += ours is False and theirs is False
            word = lambda v: {True: "fits", False: "cannot fit", None: "no fit"}[v]  # noqa: E731
            print(f"{name:<22} nnlint {word(ours)} ({our_steps} steps, {our_losses[0]:.3f} -> {min(our_losses):.3f}); "
                  f"torch {word(theirs)} ({their_steps} steps, {their_losses[0]:.3f} -> {min(their_losses):.3f})"
                  f"{'' if same else '  DIFFERENT'}{'  (planted)' if is_planted else ''}")
    print(f"fit verdicts: {total} models, {agree} agree with torch's Adam; planted: {planted_both} of {planted} cannot fit in both")
    return 0 if agree == total else 1


if __name__ == "__main__":
    sys.exit(main())
