#!/usr/bin/env python3
"""Speed and memory of nnlint's static pass against the peer, as ratios.

    cargo build --release
    /tmp/fx/bin/python benches/export_models.py /tmp/nnlint-bench      # GPT-2 small
    /tmp/fx/bin/python benches/make_chain.py 10000  /tmp/nnlint-bench/chain_10k.onnx
    /tmp/fx/bin/python benches/make_chain.py 100000 /tmp/nnlint-bench/chain_100k.onnx
    /tmp/fx/bin/python benches/static_pass.py /tmp/nnlint-bench

The peer is `onnx.checker.check_model(path, full_check=True)` in a fresh
Python process, the baseline the static-rule issue names; nnlint runs with
`--no-probe`, the static pass alone (benches/probe.py measures the probe). Each command runs
RUNS times as a whole process (this machine is a shared VM: single runs vary by
2x); the table shows the median wall time (perf_counter around the process),
the largest peak RSS (from /usr/bin/time) and nnlint's ratio to the peer. Targets:
  - GPT-2 small (external weights): wall ratio < 1, peak RSS < 250 MiB;
  - 100k-node chain: wall ratio <= 0.2, and cost linear from 10k to 100k nodes.
"""

import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NNLINT = os.path.join(ROOT, "target", "release", "nnlint")
PEER = [sys.executable, "-c", "import onnx,sys; onnx.checker.check_model(sys.argv[1], full_check=True)"]
RUNS = 11


def measure(cmd):
    times, rss = [], []
    for _ in range(RUNS):
        start = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        rss.append(int(r.stderr.strip().splitlines()[-1]) / 1024)
    return statistics.median(times), max(rss)


def main():
    bench = sys.argv[1] if len(sys.argv) > 1 else "/tmp/nnlint-bench"
    models = ["gpt2_dynamo.onnx", "gpt2_torchscript.onnx", "chain_10k.onnx", "chain_100k.onnx"]
    print(f"{'model':<24}{'nnlint s':>10}{'MiB':>8}{'peer s':>10}{'MiB':>8}{'wall ratio':>12}")
    rows = {}
    for m in models:
        path = os.path.join(bench, m)
        if not os.path.exists(path):
            print(f"{m:<24} missing (see the docstring)")
            continue
        ours = measure([NNLINT, "--no-probe", "--format", "short", path])
        peer = measure(PEER + [path])
        rows[m] = (ours, peer)
        print(f"{m:<24}{ours[0]:>10.3f}{ours[1]:>8.0f}{peer[0]:>10.3f}{peer[1]:>8.0f}{ours[0] / peer[0]:>12.2f}")
    if "chain_10k.onnx" in rows and "chain_100k.onnx" in rows:
        growth = rows["chain_100k.onnx"][0][0] / rows["chain_10k.onnx"][0][0]
        print(f"nnlint 10k -> 100k nodes: {growth:.1f}x the time for 10x the nodes")


if __name__ == "__main__":
    main()
