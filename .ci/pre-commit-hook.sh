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
# pre-commit builds the hook with `cargo install --bins --root ENV --path .`
# in its clone of the repository: the release profile, with dependencies
# resolved afresh, so a second build of tract and candle (7 to 17 of CI's
# minutes). A `cargo` first on PATH adds `--debug --locked` to that one
# command, so it reuses the dependencies `cargo test` built in the shared
# target directory and compiles only nnlint. What is tested here is the hook
# (its manifest, pass and fail, the diagnostics shown), not the binary's
# speed on two tiny models.
export CARGO_TARGET_DIR="$repo/target"
real_cargo=$(command -v cargo)
mkdir "$work/bin"
cat > "$work/bin/cargo" <<EOF
#!/usr/bin/env bash
if [ "\${1:-}" = install ]; then shift; exec "$real_cargo" install --debug --locked "\$@"; fi
exec "$real_cargo" "\$@"
EOF
chmod +x "$work/bin/cargo"
export PATH="$work/bin:$PATH"

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
