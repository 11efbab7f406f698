#!/usr/bin/env python3
"""Speed and memory of nnlint with its probe, against onnxruntime and polygraphy, as ratios.

    cargo build --release && cargo build --release --example tract_baseline
    /tmp/fx/bin/pip install polygraphy onnx_graphsurgeon                                   # the second peer
    /tmp/fx/bin/python benches/export_models.py /tmp/nnlint-bench       # GPT-2 small
    /tmp/fx/bin/python benches/make_chain.py 10000 /tmp/nnlint-bench/chain_10k.onnx
    /tmp/fx/bin/python benches/probe.py /tmp/nnlint-bench               # exports ResNet-50 once

Every command runs as a whole process, RUNS times (this machine is a shared
VM: single runs vary by 2x); the table shows the median wall time
(perf_counter around the process) and the largest peak RSS (from /usr/bin/time). Targets (the probe issue):
  - ResNet-50 at batch 8: `nnlint model.onnx` (static rules and probe) at most
    2x one onnxruntime inference of the same batch, session creation and Python
    start included; faster than `polygraphy check lint`;
  - GPT-2 small: the probe's peak memory under 2x onnxruntime's for one
    inference of the same batch;
  - a 10,000-node Gemm/Relu chain probes in under 10 s.
The table also shows tract alone (examples/tract_baseline.rs: load, type, one
run, no rules and no observation), the floor under the probe.
"""

import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NNLINT = os.path.join(ROOT, "target", "release", "nnlint")
TRACT = os.path.join(ROOT, "target", "release", "examples", "tract_baseline")
POLYGRAPHY = os.path.join(os.path.dirname(sys.executable), "polygraphy")
RUNS = 9
# One inference of the exported batch: dynamic dimensions get 8, integer
# inputs ones (token ids, masks), float inputs N(0, 1).
ORT = [sys.executable, "-c", """
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
feeds = {}
for i in s.get_inputs():
    shape = [d if isinstance(d, int) else 8 for d in i.shape]
    feeds[i.name] = (np.random.randn(*shape).astype(np.float32) if "float" in i.type
                     else np.ones(shape, dtype=np.int64))
s.run(None, feeds)
"""]


def measure(cmd, runs=RUNS):
    times, rss = [], []
    for _ in range(runs):
        start = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        rss.append(int(r.stderr.strip().splitlines()[-1]) / 1024)
    return statistics.median(times), max(rss)


def resnet50(path):
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    torch.onnx.export(model, (torch.randn(8, 3, 224, 224),), path, dynamo=True, verbose=False)


def row(name, ours, peer, label):
    print(f"{name:<28}{ours[0]:>9.2f}{ours[1]:>8.0f}{peer[0]:>9.2f}{peer[1]:>8.0f}  "
          f"wall {ours[0] / peer[0]:.2f}x, RSS {ours[1] / peer[1]:.2f}x of {label}")


def main():
    bench = sys.argv[1] if len(sys.argv) > 1 else "/tmp/nnlint-bench"
    r50 = os.path.join(bench, "resnet50_b8.onnx")
    if not os.path.exists(r50):
        resnet50(r50)
    print(f"{'model':<28}{'nnlint s':>9}{'MiB':>8}{'peer s':>9}{'MiB':>8}")
    ours = measure([NNLINT, "--format", "short", r50])
    row("resnet50 b8", ours, measure(ORT + [r50]), "onnxruntime")
    if os.path.exists(TRACT):
        row("resnet50 b8 (tract alone)", measure([TRACT, r50]), measure(ORT + [r50]), "onnxruntime")
    if os.path.exists(POLYGRAPHY):
        row("resnet50 b8", ours, measure([POLYGRAPHY, "check", "lint", r50], runs=3), "polygraphy check lint")
    gpt2 = os.path.join(bench, "gpt2_dynamo.onnx")
    if os.path.exists(gpt2):
        row("gpt2 small (2x64 tokens)", measure([NNLINT, "--format", "short", gpt2], runs=3),
            measure(ORT + [gpt2], runs=3), "onnxruntime")
    chain = os.path.join(bench, "chain_10k.onnx")
    if os.path.exists(chain):
        t, m = measure([NNLINT, "--format", "short", chain], runs=3)
        print(f"{'chain 10k nodes':<28}{t:>9.2f}{m:>8.0f}  target: under 10 s")


if __name__ == "__main__":
    main()
