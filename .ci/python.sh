#!/usr/bin/env bash
# The Python package: build the wheel with maturin (reusing cargo test's
# build of the binary), install it into a fresh venv with pip, run `nnlint`
# and `python -m nnlint` from that venv, then the Python tests (pytest)
# against the installed package, `nnlint.torch.check` on real torch models
# included. torch and onnxscript are pinned to the versions the fixtures
# were made with (fixtures/requirements.txt).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$repo"

python3 -m venv "$work/build"
"$work/build/bin/pip" install --quiet --disable-pip-version-check "maturin==1.16.0"
# The dev profile is the one `cargo test` built: maturin relinks the binary
# instead of compiling nnlint again in release mode (18 minutes on 2 cores).
"$work/build/bin/maturin" build --profile dev --strip --out "$work/wheels" --quiet
wheel=$(ls "$work"/wheels/nnlint-*.whl)
echo "python: built $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"

python3 -m venv "$work/venv"
pip=("$work/venv/bin/pip" install --quiet --disable-pip-version-check)
"${pip[@]}" "$wheel"
# From the venv, before any extra is installed: the CLI and `python -m nnlint`.
status=0
"$work/venv/bin/nnlint" fixtures/torch/dropout_bn_mlp_dynamo_train.onnx > "$work/cli.txt" || status=$?
[ "$status" -eq 1 ] || { echo "python: nnlint exited $status, expected 1" >&2; exit 1; }
grep -q 'warning\[NN301\]' "$work/cli.txt"
status=0
"$work/venv/bin/python" -m nnlint fixtures/torch/dropout_bn_mlp_dynamo_train.onnx > "$work/module.txt" || status=$?
[ "$status" -eq 1 ] || { echo "python: python -m nnlint exited $status, expected 1" >&2; exit 1; }
cmp "$work/cli.txt" "$work/module.txt"
echo "python: nnlint and python -m nnlint agree"

# The extras: nnlint[torch] and nnlint[test], at the fixtures' pins.
grep -E '^(torch|onnxscript|onnx|onnx-ir|numpy)==' fixtures/requirements.txt > "$work/pins.txt"
"${pip[@]}" -c "$work/pins.txt" "$wheel[torch,test]"
cd "$work"  # the installed package, not python/ of the checkout
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider "$repo/python/tests"
