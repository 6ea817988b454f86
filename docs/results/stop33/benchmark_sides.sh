#!/usr/bin/env bash
# Stop 33: what the refinement's side costs per click, shipped natural weights, one run after the other in one
# session (480x640 and native, 1 thread, 3 GrabCut images + the coffee sample, 12 clicks each).
# Usage, from the checkout root: bash docs/results/stop33/benchmark_sides.sh
set -u
R=docs/results/stop33
B=".venv/bin/spbox benchmark --limit 3 --clicks 12 --threads 1 --data ../shared/datasets/grabcut coffee --no-grabcut"
export OMP_NUM_THREADS=1
$B --json $R/benchmark_side320.json | tail -3
$B --refine-side 224 --json $R/benchmark_side224.json | tail -3
$B --refine-side 128 --json $R/benchmark_side128.json | tail -3
$B --no-refine --json $R/benchmark_norefine.json | tail -3
$B --weights runs/s33/outline/weights.pt --no-refine --json $R/benchmark_outline.json | tail -3
