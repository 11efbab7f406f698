"""Seed corpora for the fuzz targets, from the committed fixtures.

    python3 fuzz/seeds.py        # writes fuzz/corpus/<target>/

Binary models under 256 KiB seed `model_bytes`, text models seed
`text_model`, checkpoint pairs of fixtures/diff seed `diff` (the first
model's length as 4 little-endian bytes, then both models), and a few
fixed-seed byte strings seed the structure-aware `probe` target.
"""

import os
import random
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def files(suffix, limit):
    for folder, _, names in sorted(os.walk(FIXTURES)):
        for name in sorted(names):
            path = os.path.join(folder, name)
            if name.endswith(suffix) and os.path.getsize(path) <= limit:
                yield path


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    counts = {}
    for path in files(".onnx", 256 << 10):
        rel = os.path.relpath(path, FIXTURES).replace(os.sep, "__")
        write("model_bytes", rel, read(path))
        counts["model_bytes"] = counts.get("model_bytes", 0) + 1
    for path in files(".onnxtxt", 256 << 10):
        rel = os.path.relpath(path, FIXTURES).replace(os.sep, "__")
        write("text_model", rel, read(path))
        counts["text_model"] = counts.get("text_model", 0) + 1
    diff = os.path.join(FIXTURES, "diff")
    pairs = [
        ("before.onnx", "after_healthy.onnx"),
        ("before.onnx", "after_frozen.onnx"),
        ("before.onnx", "after_high_lr.onnx"),
        ("sgd_before.onnx", "sgd_after.onnx"),
        ("finetune_before.onnx", "finetune_after.onnx"),
    ]
    for a, b in pairs:
        first, second = read(os.path.join(diff, a)), read(os.path.join(diff, b))
        name = a.replace(".onnx", "") + "__" + b.replace(".onnx", "")
        write("diff", name, struct.pack("<I", len(first)) + first + second)
        counts["diff"] = counts.get("diff", 0) + 1
    rng = random.Random(0x5EED)
    for i in range(32):
        write("probe", f"seed{i:02}", bytes(rng.randrange(256) for _ in range(256)))
        counts["probe"] = counts.get("probe", 0) + 1
    for target, n in sorted(counts.items()):
        print(f"{target}: {n} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
