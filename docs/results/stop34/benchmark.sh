#!/usr/bin/env bash
# Stop 34, rule C: later-click latency of the candidate (default pipeline) and the shipped natural weights, one after
# the other in one session: 480x640 and native, 1 thread, 3 GrabCut images + the coffee sample, 12 clicks each.
# Usage: bash docs/results/stop34/benchmark.sh [WEIGHTS [OUT_DIR]]
set -u
W=${1:-runs/s34/colour/weights.pt}
R=${2:-docs/results/stop34}
B=".venv/bin/spbox benchmark --limit 3 --clicks 12 --threads 1 --data ../shared/datasets/grabcut coffee"
export OMP_NUM_THREADS=1
$B --weights $W --no-grabcut --json $R/benchmark_candidate.json | tail -4
$B --json $R/benchmark_shipped.json | tail -4
