#!/usr/bin/env python3
"""How nnlint's cost grows with the graph: the growth exponent between sizes.

    cargo build --release --locked --examples
    python3 benches/scaling.py                      # 5k, 20k, 100k nodes; peer if onnx imports
    /tmp/fx/bin/python benches/scaling.py           # the same, with the onnx.checker ratio
    python3 benches/scaling.py --guard 1.3 --limit 30 --profile debug --sizes 16000,64000 --modes static --runs 5

Three graph families (examples/scaling_graph.rs writes them): a Gemm/Relu
chain, a residual chain (Gemm, Relu, Add of the block's input) and
transformer-like blocks (LayerNormalization, attention, a Gelu MLP, a loss).
Each is linted as a whole process, RUNS times, in two modes: the static pass
(`--no-probe`) and the default run (static rules and every probe). The
table gives the median wall time, the largest peak RSS (GNU time, when
/usr/bin/time exists), and per mode the growth exponent between consecutive
sizes, log(t2/t1) / log(n2/n1), of the median CPU time, user plus system
(a walk per node is CPU work; a busy machine's scheduling is not, and at the
guard's sizes it is much of the wall time): 1.0 is linear, and a per-node or
per-parameter walk shows as 2.0. Not user time alone: Linux measures a
process's CPU time exactly but splits it into user and system by sampling
at the timer tick (4 ms here), so the user share of a 20 ms run is good to
about 20%, and the transformer's 5k->20k static exponent read 1.11 to 1.29
from user time and 0.83 to 1.02 from the sum, for the same binaries. The
system share is mostly the kernel zeroing the pages nnlint touches, which
grows with its memory. The peer is
`onnx.checker.check_model(path, full_check=True)` in a fresh Python process
(the static-rule baseline), on the chain.

With `--guard X` the exit status is 1 when any exponent is above X, and
with `--limit S` when one run takes over S seconds: .ci/run
runs the small sizes with the debug build to catch a quadratic walk before
it lands. That is a guard against blow-ups, not a timing target (the
default run's small sizes carry the probe's fixed costs, so their exponent
reads low). Targets on the release build: every exponent <= 1.1, and the
100k chain's static pass <= 0.2x onnx.checker.
"""

import argparse
import glob
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILIES = ["chain", "residual", "transformer"]
PEER = [sys.executable, "-c", "import onnx,sys; onnx.checker.check_model(sys.argv[1], full_check=True)"]


def measure(cmd, runs, limit=None):
    """Median wall seconds, median CPU seconds (user plus system), and largest peak RSS (MiB, or None), of `cmd` over `runs` runs."""
    gnu_time = os.path.exists("/usr/bin/time")
    times, cpus, rss = [], [], []
    for _ in range(runs):
        full = (["/usr/bin/time", "-f", "%M"] if gnu_time else []) + cmd
        before = cpu_seconds()
        start = time.perf_counter()
        try:
            r = subprocess.run(full, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            sys.exit(f"scaling: `{' '.join(cmd)}` took over {limit} s: a per-node or per-parameter walk?")
        times.append(time.perf_counter() - start)
        cpus.append(cpu_seconds() - before)
        if r.returncode not in (0, 1):
            sys.exit(f"scaling: `{' '.join(cmd)}` exited {r.returncode}:\n{r.stderr.strip()[-2000:]}")
        if gnu_time:
            rss.append(int(r.stderr.strip().splitlines()[-1]) / 1024)
    return statistics.median(times), statistics.median(cpus), (max(rss) if rss else None)


def cpu_seconds():
    """CPU seconds of the children waited for so far, user plus system."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def exponent(a, b):
    (n1, t1), (n2, t2) = a, b
    return math.log(t2 / t1) / math.log(n2 / n1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="release", help="target/<profile>/ holds nnlint and the generator")
    parser.add_argument("--sizes", default="5000,20000,100000", help="node counts, comma-separated, ascending")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--modes", default="static,default")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--guard", type=float, help="fail when an exponent is above this")
    parser.add_argument("--nnlint", help="another nnlint binary (a build before a change)")
    parser.add_argument("--limit", type=float, help="fail at once when one run takes longer (seconds)")
    parser.add_argument("--dir", help="where the generated models go (default: a temporary folder)")
    args = parser.parse_args()

    target = os.path.join(ROOT, "target", args.profile)
    nnlint = args.nnlint or os.path.join(target, "nnlint")
    generator = os.path.join(target, "examples", "scaling_graph")
    for path in (nnlint, generator):
        if not os.path.exists(path):
            sys.exit(f"scaling: {path} is missing; build it with `cargo build --locked --examples"
                     f"{' --release' if args.profile == 'release' else ''}`")
    sizes = [int(s) for s in args.sizes.split(",")]
    families = args.families.split(",")
    modes = args.modes.split(",")
    folder = args.dir or tempfile.mkdtemp(prefix=f"nnlint-scaling-{os.getpid()}-")
    os.makedirs(folder, exist_ok=True)
    try:
        import onnx  # noqa: F401
        peer = True
    except ImportError:
        peer = False

    flags = {"static": ["--no-probe"], "default": []}
    print(f"{'family':<12}{'nodes':>8}{'mode':>9}{'nnlint s':>10}{'cpu s':>8}{'MiB':>8}{'peer s':>9}{'ratio':>8}")
    worst = (0.0, "")
    results, ratios = {}, {}
    for family in families:
        for size in sizes:
            path = os.path.join(folder, f"{family}_{size}.onnx")
            made = subprocess.run([generator, family, str(size), path], capture_output=True, text=True, check=True)
            nodes = int(made.stdout.split()[-2])
            peer_s = measure(PEER + [path], args.runs)[0] if peer and family == "chain" else None
            for mode in modes:
                cmd = [nnlint, *flags[mode], "--isolated", "--format", "short", path]
                seconds, cpu, mib = measure(cmd, args.runs, args.limit)
                results.setdefault((family, mode), []).append((nodes, cpu))
                if peer_s and mode == "static":
                    ratios[(family, nodes)] = seconds / peer_s
                ratio = f"{seconds / peer_s:>8.2f}" if peer_s and mode == "static" else f"{'-':>8}"
                peer_col = f"{peer_s:>9.3f}" if peer_s and mode == "static" else f"{'-':>9}"
                mib_col = f"{mib:>8.0f}" if mib is not None else f"{'-':>8}"
                print(f"{family:<12}{nodes:>8}{mode:>9}{seconds:>10.3f}{cpu:>8.3f}{mib_col}{peer_col}{ratio}", flush=True)
    print()
    for (family, mode), points in results.items():
        steps = [exponent(a, b) for a, b in zip(points, points[1:])]
        shown = ", ".join(f"{a[0]}->{b[0]}: {e:.2f}" for (a, b), e in zip(zip(points, points[1:]), steps))
        print(f"exponent {family:<12}{mode:<8} {shown}")
        for e in steps:
            if e > worst[0]:
                worst = (e, f"{family} {mode}")
    summary = f"scaling: worst exponent {worst[0]:.2f} ({worst[1]}) over {len(results)} family/mode pairs, sizes {args.sizes}"
    if ratios:
        (family, nodes), ratio = max(ratios.items(), key=lambda kv: kv[0][1])
        summary += f"; {family} of {nodes} nodes, static: {ratio:.2f}x onnx.checker"
    print(summary)
    if args.dir is None:
        shutil.rmtree(folder, ignore_errors=True)
    if args.guard is not None and worst[0] > args.guard:
        print(f"scaling: exponent {worst[0]:.2f} ({worst[1]}) is above the guard's {args.guard}: "
              "a per-node or per-parameter walk?", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    finally:
        for leftover in glob.glob(os.path.join(tempfile.gettempdir(), f"nnlint-scaling-{os.getpid()}-*")):
            shutil.rmtree(leftover, ignore_errors=True)
