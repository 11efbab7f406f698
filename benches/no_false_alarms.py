#!/usr/bin/env python3
"""The no-false-alarm check on real architectures, and the fixtures it leaves behind.

    /tmp/fx/bin/python benches/export_models.py /tmp/nnlint-bench     # once: exports (~10 min)
    cargo build --release
    /tmp/fx/bin/python benches/no_false_alarms.py /tmp/nnlint-bench

1. Lints every full export in /tmp/nnlint-bench (weights included, so the
   rules that read values run too) with target/release/nnlint and writes the
   short-format findings to fixtures/architectures/full-weights.txt. It fails
   if anything at warning level or above appears.
   Each model's decided state is recorded there too, and every one must be
   `untrained`: they are random-init exports.
2. Writes a weight-stripped copy of each export to fixtures/architectures/:
   every initializer keeps its name, type and dims but loses its values, so the
   real exporters' graph structure (and its metadata) is committed in a few
   megabytes. `cargo test` lints those copies (tests/it/ui.rs) with no Python.
"""

import os
import subprocess
import sys

import onnx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEST = os.path.join(ROOT, "fixtures", "architectures")


def strip(src, dst):
    m = onnx.load(src, load_external_data=False)
    for t in m.graph.initializer:
        for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
            t.ClearField(field)
        t.ClearField("external_data")
        t.ClearField("data_location")
    m.doc_string = "nnlint fixture: initializer values removed by benches/no_false_alarms.py"
    onnx.save(m, dst)


def main():
    bench = sys.argv[1] if len(sys.argv) > 1 else "/tmp/nnlint-bench"
    binary = os.path.join(ROOT, "target", "release", "nnlint")
    models = [os.path.join(bench, "arch", f) for f in sorted(os.listdir(os.path.join(bench, "arch"))) if f.endswith(".onnx")]
    models += [os.path.join(bench, f) for f in ("gpt2_dynamo.onnx", "gpt2_torchscript.onnx")]
    os.makedirs(DEST, exist_ok=True)
    lines, failed = [], []
    for path in models:
        out = subprocess.run([binary, "--format", "short", path], capture_output=True, text=True)
        rel = os.path.relpath(path, bench)
        for line in out.stdout.splitlines():
            lines.append(line.replace(path, rel))
        if out.returncode != 0:
            failed.append(f"{rel}: exit {out.returncode}")
        # Random-init architectures must look untrained, or the rules that
        # assume so would not run on them.
        human = subprocess.run([binary, "--no-probe", "--color", "never", path], capture_output=True, text=True)
        state = next((l.replace(path, rel) for l in human.stdout.splitlines() if ": the model " in l), f"{rel}: no state")
        lines.append(f"# {state}")
        if ": the model looks untrained" not in state:
            failed.append(f"{rel}: not untrained")
    with open(os.path.join(DEST, "full-weights.txt"), "w") as fh:
        fh.write(f"# nnlint --format short on {len(models)} full-weight exports (benches/no_false_alarms.py)\n")
        fh.write("".join(f"{l}\n" for l in lines))
    for path in models:
        strip(path, os.path.join(DEST, os.path.basename(path)))
    findings = sum(1 for l in lines if not l.startswith("#"))
    print(f"{len(models)} models, {findings} findings, {len(failed)} with warnings, errors or a state other than untrained")
    for f in failed:
        print("FALSE ALARM:", f)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
