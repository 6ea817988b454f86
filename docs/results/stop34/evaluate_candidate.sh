#!/usr/bin/env bash
# Stop 34, rules A and B: the fresh colour-head run (seed 34, the confirmation slice's images never trained on) in
# the default pipeline (GrabCut refinement at <= 320 px) against the shipped pipeline, paired NoC@90.
# Usage, from the checkout root: bash docs/results/stop34/evaluate_candidate.sh [WEIGHTS]
# (the slice: python docs/results/stop34/make_confirm_slice.py runs/s34/confirm docs/results/stop34/confirm_images.txt;
#  its shipped baseline: spbox evaluate runs/s34/confirm --json docs/results/stop34/shipped/confirm.json)
set -u
W=${1:-runs/s34/colour/weights.pt}
D=../shared/datasets
R=docs/results/stop34
C=$R/candidate
S=.venv/bin/spbox
export OMP_NUM_THREADS=1
mkdir -p $C/validation
$S evaluate runs/s34/confirm --weights $W --jobs 2 --json $C/confirm.json 2>&1 | grep -a '"noc@90"'
for set in grabcut davis-dev; do
  $S evaluate $D/$set --weights $W --jobs 2 --json $C/$set.json 2>&1 | grep -a '"noc@90"'
done
# rule A: pooled over the slice, GrabCut and DAVIS-dev (each set's own line too)
$S compare --baseline $R/shipped/confirm.csv docs/results/spbox_s26_grabcut.csv docs/results/spbox_s26_davis-dev.csv \
   --candidate $C/confirm.csv $C/grabcut.csv $C/davis-dev.csv --json $C/compare_rule_a.json 2>&1 | tail -5
# rule B's fourth set: the held-apart COCO slice (75), against stop 33's shipped figures
$S validate $W --data $D/coco-train $D/coco-mini --jobs 2 --csv-dir $C/validation \
   --json $C/validation/validation.json 2>&1 | grep -a "NoC" | sed 's/.*file\/s\]//'
$S compare --baseline docs/results/stop33/validation_shipped/*.csv --candidate $C/validation/*.csv \
   --json $C/compare_validation.json 2>&1 | grep difference
