#!/usr/bin/env bash
# Stop 38 (issue 32's "cheaper route"): the Lite0 reading the VOC foreground prior, in the default pipeline,
# against the shipped natural pipeline (baselines measured in stop 35, after its click-spot fix), paired NoC@90.
# Rules in docs/experiments/stop38_voc_prior.md. Usage, from the checkout root:
#   bash docs/results/stop38/evaluate_prior.sh WEIGHTS [RESULTS_DIR]
set -u
W=$1
R=${2:-docs/results/stop38/candidate}
D=../shared/datasets
B=docs/results/stop35
S=.venv/bin/spbox
export OMP_NUM_THREADS=1
mkdir -p $R/validation
# step 1: the held-apart COCO slice (75) and the confirmation slice (94; its images left out of this run)
$S validate "$W" --data $D/coco-train $D/coco-mini --jobs 2 --csv-dir $R/validation \
   --json $R/validation/validation.json 2>&1 | grep -a "NoC" | sed 's/.*file\/s\]//'
$S compare --baseline $B/validation/natural_coco.csv --candidate $R/validation/*.csv \
   --json $R/compare_validation.json 2>&1 | tail -2
$S evaluate runs/s34/confirm --weights "$W" --jobs 2 --json $R/confirm.json 2>&1 | grep -a '"noc@90"'
$S compare --baseline $B/validation/natural_confirm.csv --candidate $R/confirm.csv \
   --json $R/compare_confirm.json 2>&1 | tail -2
# step 2 only if both slices' mean differences are at most +0.25 (rule B on them)
if .venv/bin/python -c "import json,sys
d=[json.load(open('$R/'+f))['pooled']['diff'] for f in ('compare_validation.json','compare_confirm.json')]
print('slice mean differences', d); sys.exit(max(d) > 0.25)"; then
  for set in grabcut davis-dev; do
    $S evaluate $D/$set --weights "$W" --jobs 2 --json $R/$set.json 2>&1 | grep -a '"noc@90"'
  done
  # rule A: pooled over the confirmation slice, GrabCut and DAVIS-dev (each set's own line too)
  $S compare --baseline $B/validation/natural_confirm.csv $B/eval/natural_grabcut.csv $B/eval/natural_davis-dev.csv \
     --candidate $R/confirm.csv $R/grabcut.csv $R/davis-dev.csv --json $R/compare_rule_a.json 2>&1 | tail -5
else
  echo "rule B fails on a slice: GrabCut and DAVIS-dev not run"
fi
