#!/usr/bin/env python3
"""The html report's cost on ResNet-50 at batch 8: nnlint's time with
`--format html` beyond the same run with `--format json`, and the page's size.

    cargo build --release
    /tmp/fx/bin/python benches/report.py /tmp/nnlint-bench    # exports ResNet-50 once (benches/probe.py's)

Targets (the html report issue): under 1 s of nnlint's time beyond the run
itself, and a page under 2 MB. The two formats run in turn, pair by pair
(this machine is a shared VM: single runs vary), and the table shows the
median of each, the median of the pairwise differences and their ratio.
The html run also hashes the model (its sha256 heads the page); json does not.
"""

import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probe import NNLINT, resnet50  # noqa: E402

RUNS = 7


def timed(cmd):
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True)
    return time.perf_counter() - start, done.stdout


def main():
    bench = sys.argv[1] if len(sys.argv) > 1 else "/tmp/nnlint-bench"
    r50 = os.path.join(bench, "resnet50_b8.onnx")
    if not os.path.exists(r50):
        resnet50(r50)
    timed([NNLINT, "--format", "json", r50])  # warm the page cache
    json_s, html_s, page = [], [], b""
    for _ in range(RUNS):
        t, _ = timed([NNLINT, "--format", "json", r50])
        json_s.append(t)
        t, page = timed([NNLINT, "--format", "html", r50])
        html_s.append(t)
    extra = statistics.median(h - j for h, j in zip(html_s, json_s))
    print(f"resnet50 b8: json {statistics.median(json_s):.2f} s, html {statistics.median(html_s):.2f} s "
          f"(ratio {statistics.median(h / j for h, j in zip(html_s, json_s)):.3f}x), "
          f"html beyond the run {extra:+.2f} s (target: under 1 s)")
    print(f"resnet50 b8: page {len(page) / 1e6:.2f} MB, {page.count(b'<svg')} charts, "
          f"{page.count(b'-layer-') // 2} layer rows (target: under 2 MB)")


if __name__ == "__main__":
    main()
