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
status=0
target/debug/nnlint --format sarif fixtures > "$work/nnlint.sarif" || status=$?
# 1: findings; 2: fixtures/text/syntax_error.onnxtxt does not parse, on purpose.
if [ "$status" -ne 1 ] && [ "$status" -ne 2 ]; then
    echo "sarif: expected exit 1 or 2, got $status" >&2
    exit 1
fi
"$tool" validate --rule-kind "Sarif;Gh" "$work/nnlint.sarif" | tee "$work/validate.log"
if grep -E ': (error|warning) ' "$work/validate.log"; then
    echo "sarif: the multitool reports problems" >&2
    exit 1
fi
echo "sarif: $(grep -c '"ruleId"' "$work/nnlint.sarif") results validate"
