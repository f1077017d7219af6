#!/usr/bin/env bash
# Create, run `true`, destroy: offswitch beside bubblewrap, interleaved, median of many runs.
set -euo pipefail
OFFSWITCH=${OFFSWITCH:-offswitch}
RUNS=${RUNS:-100}
command -v bwrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; }

python3 - "$OFFSWITCH" "$RUNS" <<'PY'
import statistics, subprocess, sys, time
offswitch, runs = sys.argv[1], int(sys.argv[2])
cases = {
    "offswitch sandbox run -- true": [offswitch, "sandbox", "run", "--", "true"],
    "bwrap --unshare-all --ro-bind / / true": ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "true"],
}
samples = {name: [] for name in cases}
for _ in range(3):  # warm caches
    for argv in cases.values(): subprocess.run(argv, check=True)
for _ in range(runs):  # interleaved so machine drift cancels out
    for name, argv in cases.items():
        start = time.perf_counter(); subprocess.run(argv, check=True); samples[name].append((time.perf_counter() - start) * 1000)
base = statistics.median(samples["bwrap --unshare-all --ro-bind / / true"])
print(f"{'case':45} {'median ms':>10} {'p10':>8} {'p90':>8} {'ratio':>7}")
for name, values in samples.items():
    q = statistics.quantiles(values, n=10)
    print(f"{name:45} {statistics.median(values):10.2f} {q[0]:8.2f} {q[-1]:8.2f} {statistics.median(values)/base:7.2f}x")
PY
