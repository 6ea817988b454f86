#!/usr/bin/env bash
# Stop 31: click latency of the split candidate and the two shipped weights, one after another in one session
# (480x640 and native, 1 thread, 3 GrabCut images + the coffee sample, 12 clicks each; OpenCV GrabCut timed
# beside the natural weights as the in-run baseline). Usage: bash docs/results/stop31/benchmark.sh [WEIGHTS [OUT_DIR]]
set -u
W=${1:-runs/s31/split/weights.pt}
R=${2:-docs/results/stop31}
B=".venv/bin/spbox benchmark --limit 3 --clicks 12 --threads 1 --data ../shared/datasets/grabcut coffee"
export OMP_NUM_THREADS=1
$B --weights $W --no-grabcut --json $R/benchmark_split.json | tail -4
$B --weights $W --no-grabcut --no-refine --json $R/benchmark_split_norefine.json | tail -4
$B --weights microscopy --no-grabcut --json $R/benchmark_microscopy.json | tail -4
$B --json $R/benchmark_natural.json | tail -4
