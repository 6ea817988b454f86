#!/usr/bin/env bash
# Stop 33, diagnostic after the planned checks: the colour head WITH the default GrabCut refinement, on the COCO slice,
# GrabCut and DAVIS-dev, paired against the shipped pipeline. Decides nothing in stop 33 (for the next stop's plan).
# Usage, from the checkout root: bash docs/results/stop33/evaluate_colour_refine.sh [WEIGHTS]
set -u
W=${1:-runs/s33/outline_colour/weights.pt}
D=../shared/datasets
R=docs/results/stop33
C=$R/colour
S=.venv/bin/spbox
export OMP_NUM_THREADS=1
mkdir -p $C/validation_refine
$S validate $W --data $D/coco-train $D/coco-mini --jobs 2 --csv-dir $C/validation_refine \
   --json $C/validation_refine/validation.json 2>&1 | grep -a "NoC" | sed 's/.*file\/s\]//'
$S compare --baseline $R/validation_shipped/*.csv --candidate $C/validation_refine/*.csv \
   --json $C/compare_validation_refine.json 2>&1 | grep difference
for set in grabcut davis-dev; do
  $S evaluate $D/$set --weights $W --jobs 2 --json $C/refine_$set.json 2>&1 | grep -a '"noc@90"'
done
$S compare --baseline docs/results/spbox_s26_grabcut.csv docs/results/spbox_s26_davis-dev.csv \
   --candidate $C/refine_grabcut.csv $C/refine_davis-dev.csv --json $C/compare_refine_natural.json 2>&1 | tail -3
