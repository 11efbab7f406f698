#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 60) on its seed corpus,
# and fails on any crash, hang (over 10 s on one input) or allocation over
# 1 GiB (the targets' allocator aborts on it). Uses the machine's nightly
# toolchain, or RUSTC_BOOTSTRAP=1 on stable.
#
#   .ci/fuzz.sh          build the targets, then run them
#   .ci/fuzz.sh build    build them only
#   .ci/fuzz.sh run      run them, built already
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
mode=${1:-all}

# A debug build: cargo-fuzz only drives cargo, and compiles in half the time.
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --debug --locked --version 0.13.2
fi
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi

cd fuzz
# opt-level 1: the instrumented optimized build of tract and candle at
# opt-level 3 took over 20 minutes of CI's 2 cores; 1 runs the targets at
# most a few times slower, well inside each input's 10 s.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=${FUZZ_OPT_LEVEL:-1}
# No sanitizer: Rust checks memory safety itself, the build of tract and
# candle under AddressSanitizer took a third longer (733 s against 560 s on
# CI's 2 cores), and the allocation limit is the targets' own allocator's
# (nnlint_fuzz::Capped), as libFuzzer's -malloc_limit_mb needs a sanitizer.
if [ "$mode" != run ]; then
    cargo "${toolchain[@]}" fuzz build -O -s none
fi
[ "$mode" = build ] && exit 0
python3 seeds.py
mkdir -p logs
# One target's run; its summary, or its log's tail and the input that failed.
run() {
    local target=$1 log="logs/$1.log"
    if ! cargo "${toolchain[@]}" fuzz run -O -s none "$target" "corpus/$target" -- \
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
