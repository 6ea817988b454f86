#!/usr/bin/env bash
# Stop 33 amendment, check 2, second step: the side the COCO slice chose, on GrabCut + DAVIS-dev (pooled), paired
# against the shipped pipeline's per-object figures (stop 26, same weights, refinement at <= 320 px).
# Usage, from the checkout root: bash docs/results/stop33/refine_side_natural.sh SIDE
set -u
side=$1
D=../shared/datasets
R=docs/results/stop33
S=.venv/bin/spbox
export OMP_NUM_THREADS=1
for set in grabcut davis-dev; do
  $S evaluate $D/$set --refine-side $side --jobs 2 --json $R/side${side}_$set.json 2>&1 | grep -aE "NoC|noc@90\"" | tail -2
done
$S compare --baseline docs/results/spbox_s26_grabcut.csv docs/results/spbox_s26_davis-dev.csv \
   --candidate $R/side${side}_grabcut.csv $R/side${side}_davis-dev.csv --json $R/compare_side${side}_natural.json 2>&1 | tail -3
