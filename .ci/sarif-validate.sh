#!/usr/bin/env bash
# SARIF from a run over every fixture, validated by Microsoft's SARIF
# Multitool with the SARIF and GitHub ingestion rules: no error, no warning.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

npm install --silent --no-audit --no-fund --prefix "$work/tool" @microsoft/sarif-multitool
tool="$work/tool/node_modules/@microsoft/sarif-multitool-linux/Sarif.Multitool"
# npm may skip the package's install script that marks it executable.
chmod u+x "$tool"

cd "$repo"
# Relative paths (as a local run gives them) and absolute ones (as CI's
# $GITHUB_WORKSPACE/... gives them): both must validate.
validate() {
    local name=$1 status=0
    shift
    target/debug/nnlint --format sarif "$@" > "$work/$name.sarif" || status=$?
    # 1: findings; 2: fixtures/text/syntax_error.onnxtxt does not parse, on purpose.
    if [ "$status" -ne 1 ] && [ "$status" -ne 2 ]; then
        echo "sarif ($name): expected exit 1 or 2, got $status" >&2
        exit 1
    fi
    "$tool" validate --rule-kind "Sarif;Gh" "$work/$name.sarif" | tee "$work/$name.log"
    if grep -E ': (error|warning) ' "$work/$name.log"; then
        echo "sarif ($name): the multitool reports problems" >&2
        exit 1
    fi
    echo "sarif ($name paths): $(grep -c '"ruleId"' "$work/$name.sarif") results validate"
}
validate relative fixtures
# The paths are what this run checks: folders with findings of every kind
# (static, measured by the probe, the backward pass and the fit, and a file
# that does not parse) rather than the whole corpus a second time.
validate absolute "$repo/fixtures/torch" "$repo/fixtures/probe" "$repo/fixtures/gradients" \
    "$repo/fixtures/overfit" "$repo/fixtures/text"
grep -q '"uri": "file:///' "$work/absolute.sarif" || { echo "sarif: absolute paths are not file:// URIs" >&2; exit 1; }
