#!/usr/bin/env bash
# Stop 35, the longer-trained microscopy network (docs/experiments/stop35_click_spots.md, last section): rule (a) on
# the held-apart nuclei, then, only if it passes, rule (b) on nuclei-dev. The candidate has no card yet, so its
# 1 px click spot is given explicitly. Usage, from the checkout root:
#   bash docs/results/stop35/evaluate_micro.sh runs/s35/micro/weights_e2.pt [RESULTS_DIR]
# (stop 36: bash docs/results/stop35/evaluate_micro.sh runs/s36/micro/weights_e4.pt docs/results/stop36/micro)
# GATE=mean lets nuclei-dev run when the held-apart mean difference is <= 0 (stop 37's rule 1) instead of the
# interval's upper end below 0 (the default, stops 35-36).
set -u
W=$1
R=${2:-docs/results/stop35/micro}
S=.venv/bin/spbox
export OMP_NUM_THREADS=1
mkdir -p $R
$S validate "$W" --data ../shared/datasets/nuclei-train --jobs 2 --click-radius 1 --json $R/validation.json \
   --csv-dir $R/validation 2>&1 | tail -1
$S compare --baseline docs/results/stop35/validation/microscopy_nuclei.csv \
   --candidate $R/validation/*.csv --json $R/compare_validation.json 2>&1 | tail -3
if .venv/bin/python -c "import json,sys; p=json.load(open('$R/compare_validation.json'))['pooled']
sys.exit(p['diff'] > 0 if '${GATE:-high}' == 'mean' else p['high'] >= 0)"; then
  $S evaluate ../shared/datasets/nuclei-dev --weights "$W" --click-radius 1 --jobs 2 --json $R/nuclei-dev.json 2>&1 \
     | grep -a '"noc@90"'
  $S compare --baseline docs/results/stop35/eval/microscopy_nuclei-dev.csv --candidate $R/nuclei-dev.csv \
     --json $R/compare_nuclei-dev.json 2>&1 | tail -3
else
  echo "the held-apart rule fails: nuclei-dev not run"
fi
