#!/usr/bin/env bash
# Stop 33, third amendment: the outline head with the window's colour model, without refinement
# (docs/experiments/stop33_outline_head.md). Usage, from the checkout root:
#   bash docs/results/stop33/evaluate_colour.sh [WEIGHTS]
set -u
W=${1:-runs/s33/outline_colour/weights.pt}
D=../shared/datasets
R=docs/results/stop33
C=$R/colour
S=.venv/bin/spbox
export OMP_NUM_THREADS=1
mkdir -p $C/validation
summary() { grep -aE "noc@|NoC" | grep -v Warn | sed 's/.*file\/s\]//'; }
# rule 1: the held-apart COCO slice against the shipped pipeline's run of this stop
$S validate $W --no-refine --data $D/coco-train $D/coco-mini --jobs 2 --csv-dir $C/validation \
   --json $C/validation/validation.json 2>&1 | summary
$S compare --baseline $R/validation_shipped/*.csv --candidate $C/validation/*.csv \
   --json $C/compare_validation.json 2>&1 | grep difference
# rule 2 (decides only if rule 1 passed) and the diagnostic against the first head, both without refinement
for set in grabcut davis-dev; do
  $S evaluate $D/$set --weights $W --no-refine --jobs 2 --json $C/candidate_$set.json 2>&1 | grep -a '"noc@90"'
done
$S compare --baseline docs/results/spbox_s26_grabcut.csv docs/results/spbox_s26_davis-dev.csv \
   --candidate $C/candidate_grabcut.csv $C/candidate_davis-dev.csv --json $C/compare_natural.json 2>&1 | tail -3
$S compare --baseline $R/candidate_grabcut.csv $R/candidate_davis-dev.csv \
   --candidate $C/candidate_grabcut.csv $C/candidate_davis-dev.csv --json $C/compare_first_head.json 2>&1 | tail -3
