#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 60) on its seed corpus,
# and fails on any crash, hang (over 10 s on one input) or allocation over
# 1 GiB (the targets' allocator aborts on it).
#
#   .ci/fuzz.sh          build the targets, then run them
#   .ci/fuzz.sh build    build them only
#   .ci/fuzz.sh run      run them, built already
#
# The targets are built by plain cargo on the stable toolchain, in the
# dev profile and the target directory `cargo test` uses, with
# .ci/fuzz-rustc adding libFuzzer's coverage instrumentation to nnlint and
# the fuzz crate only: tract, candle and every other dependency are the
# ones `cargo test` built, so after it this build compiles nnlint, the fuzz
# crate and what only they use (libfuzzer-sys, arbitrary): 50 s on CI's
# 2 cores (cargo-fuzz instruments every crate, which rebuilt all of them: about
# 9 of CI's minutes). No sanitizer: Rust checks memory safety itself, and
# the allocation limit is the targets' own allocator's (nnlint_fuzz::Capped).
# `cargo fuzz run <target>` by hand (CONTRIBUTING.md) works as before.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-60}
mode=${1:-all}

cd "$repo/fuzz"
export CARGO_TARGET_DIR="$repo/target"
bin="$CARGO_TARGET_DIR/debug"
if [ "$mode" != run ]; then
    RUSTC_WRAPPER="$repo/.ci/fuzz-rustc" cargo build --locked --bins
fi
[ "$mode" = build ] && exit 0
python3 seeds.py
mkdir -p logs
# One target's run; its summary, or its log's tail and the input that failed.
run() {
    local target=$1 log="logs/$1.log"
    mkdir -p "artifacts/$target"
    if ! "$bin/$target" "corpus/$target" -artifact_prefix="artifacts/$target/" \
        -max_total_time="$seconds" -dict=onnx.dict -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target failed; the input is under fuzz/artifacts/$target/" >&2
        return 1
    fi
    echo "fuzz: $target ran ${seconds}s"
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|Done)|cov: ' "$log" | tail -n 5
}
# Two targets at a time, one per core: libFuzzer runs one input at a time,
# so each target still gets its seconds of a core. `probe` (tract's pool)
# shares the second pair with `diff`.
status=0
for pair in "model_bytes text_model" "probe diff"; do
    pids=()
    for target in $pair; do
        run "$target" > "logs/$target.summary" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || status=1; done
    for target in $pair; do cat "logs/$target.summary"; done
done
exit "$status"
