#!/usr/bin/env python3
"""The html report's cost on ResNet-50 at batch 8: nnlint's time with
`--format html` beyond the same run with `--format json`, and the page's size.

    cargo build --release && cargo build --release --example report_cost
    /tmp/fx/bin/python benches/report.py /tmp/nnlint-bench    # exports ResNet-50 once (benches/probe.py's)
    /tmp/fx/bin/python benches/report.py /tmp/nnlint-bench --probe-memory 8192   # with the backward pass

Targets (the html report issue): under 1 s of nnlint's time beyond the run
itself, and a page under 2 MB. The two formats run in turn, pair by pair
(this machine is a shared VM: single runs vary), and the table shows the
median of each, the median of the pairwise differences and their ratio.
The html run also hashes the model (its sha256 heads the page); json does not.
Whole runs of tens of seconds vary by more than the page costs, so
`examples/report_cost.rs` also times the sha256 and the rendering in the
process, and prints the sum as the html's time beyond the run.
"""

import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probe import NNLINT, ROOT, resnet50  # noqa: E402

COST = os.path.join(ROOT, "target", "release", "examples", "report_cost")

RUNS = 7


def timed(cmd):
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True)
    return time.perf_counter() - start, done.stdout


def main():
    bench = sys.argv[1] if len(sys.argv) > 1 else "/tmp/nnlint-bench"
    # `--probe-memory 8192` lets the backward pass run (it needs about 4.3 GiB
    # at this batch), so the page has the gradient chart too; extra arguments
    # after the folder are passed to both runs.
    extra_args = sys.argv[2:]
    r50 = os.path.join(bench, "resnet50_b8.onnx")
    if not os.path.exists(r50):
        resnet50(r50)
    timed([NNLINT, "--format", "json", r50])  # warm the page cache
    json_s, html_s, page = [], [], b""
    for _ in range(RUNS):
        t, _ = timed([NNLINT, *extra_args, "--format", "json", r50])
        json_s.append(t)
        t, page = timed([NNLINT, *extra_args, "--format", "html", r50])
        html_s.append(t)
    extra = statistics.median(h - j for h, j in zip(html_s, json_s))
    print(f"resnet50 b8: json {statistics.median(json_s):.2f} s, html {statistics.median(html_s):.2f} s "
          f"(ratio {statistics.median(h / j for h, j in zip(html_s, json_s)):.3f}x), "
          f"html beyond the run {extra:+.2f} s (target: under 1 s)")
    if os.path.exists(COST):
        print(subprocess.run([COST, r50, *extra_args], capture_output=True, text=True).stdout.strip())
    rows = page.count(b'<tr id="f0-layer-')
    print(f"resnet50 b8: page {len(page) / 1e6:.2f} MB, {page.count(b'<svg')} charts, "
          f"{rows} layer rows (target: under 2 MB)")


if __name__ == "__main__":
    main()
