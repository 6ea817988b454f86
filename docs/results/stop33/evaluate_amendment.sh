#!/usr/bin/env bash
# Stop 33 amendment, check 1: the outline-head candidate WITH the default GrabCut refinement as the natural weights
# (docs/experiments/stop33_outline_head.md). Usage, from the checkout root:
#   bash docs/results/stop33/evaluate_amendment.sh [WEIGHTS]
set -u
W=${1:-runs/s33/outline/weights.pt}
D=../shared/datasets
R=docs/results/stop33
S=.venv/bin/spbox
export OMP_NUM_THREADS=1
mkdir -p $R/validation_refine
summary() { grep -E "noc@|mIoU|NoC" | grep -v Warn; }
$S validate $W --data $D/coco-train $D/coco-mini --jobs 2 --csv-dir $R/validation_refine \
   --json $R/validation_refine/validation.json 2>&1 | summary
$S compare --baseline $R/validation_shipped/*.csv --candidate $R/validation_refine/*.csv \
   --json $R/compare_validation_refine.json 2>&1 | tail -3
# DAVIS-dev was to follow only if the slice's NoC@90 was at or below 12.13; it was 12.29, so it was not run
