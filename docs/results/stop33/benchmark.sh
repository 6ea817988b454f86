#!/usr/bin/env bash
# Stop 33: click latency of the outline-head candidate (no GrabCut refinement) and the shipped natural weights
# (default pipeline, OpenCV GrabCut timed beside them as the in-run baseline), one after the other in one session:
# 480x640 and native, 1 thread, 3 GrabCut images + the coffee sample, 12 clicks each.
# Usage: bash docs/results/stop33/benchmark.sh [WEIGHTS [OUT_DIR]]
set -u
W=${1:-runs/s33/outline/weights.pt}
R=${2:-docs/results/stop33}
B=".venv/bin/spbox benchmark --limit 3 --clicks 12 --threads 1 --data ../shared/datasets/grabcut coffee"
export OMP_NUM_THREADS=1
$B --weights $W --no-grabcut --no-refine --json $R/benchmark_outline.json | tail -4
$B --json $R/benchmark_natural.json | tail -4
