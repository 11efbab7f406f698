#!/usr/bin/env bash
# The real pre-commit hook in a scratch repository: it must fail on a buggy
# model, showing the diagnostics, and pass on a clean one.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check pre-commit
export PRE_COMMIT_HOME="$work/cache"
# pre-commit builds the hook with `cargo install`; share the build cache.
export CARGO_TARGET_DIR="$repo/target"
# `cargo install` builds the release profile: optimized, tract and candle take
# 17 minutes of CI's 2 cores. The hook is what is tested here, not the
# binary's speed (two tiny models), so CI builds that profile unoptimized.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256

mkdir "$work/scratch" && cd "$work/scratch"
git init --quiet
git config user.email ci@example.invalid
git config user.name ci
cp "$repo/fixtures/torch/healthy_softmax_torchscript_eval.onnx" clean.onnx
cp "$repo/fixtures/torch/dropout_bn_mlp_torchscript_train.onnx" buggy.onnx
git add clean.onnx buggy.onnx
git commit --quiet -m fixtures

pc="$work/venv/bin/pre-commit"
"$pc" try-repo "$repo" nnlint --files clean.onnx
echo "pre-commit: clean model passes"

if "$pc" try-repo "$repo" nnlint --files buggy.onnx > "$work/buggy.log" 2>&1; then
    cat "$work/buggy.log"
    echo "pre-commit: the hook passed on the buggy model" >&2
    exit 1
fi
cat "$work/buggy.log"
grep -q 'warning\[NN301\]: dropout feeds batch normalization' "$work/buggy.log"
echo "pre-commit: buggy model fails with its diagnostics"
