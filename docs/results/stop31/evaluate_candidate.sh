#!/usr/bin/env bash
# Stop 31 candidate (the split network): the plan's checks (docs/experiments/stop31_split.md), one after another,
# --jobs 2 each. Usage, from the checkout root: bash docs/results/stop31/evaluate_candidate.sh [WEIGHTS]
set -u
W=${1:-runs/s31/split/weights.pt}
D=../shared/datasets
R=docs/results/stop31
R30=docs/results/stop30
S=.venv/bin/spbox
export OMP_NUM_THREADS=1
mkdir -p $R/validation
summary() { grep -E "noc@|mIoU|NoC" | grep -v Warn; }
# 1. microscopy: nuclei-dev without refinement (decides), with it (diagnostic)
$S evaluate $D/nuclei-dev --weights $W --no-refine --jobs 2 --json $R/candidate_nuclei-dev.json 2>&1 | summary
$S compare --baseline $R30/candidate_nuclei-dev.csv --candidate $R/candidate_nuclei-dev.csv \
   --json $R/compare_nuclei-dev.json 2>&1 | tail -3
$S evaluate $D/nuclei-dev --weights $W --jobs 2 --json $R/candidate_refine_nuclei-dev.json 2>&1 | summary
# 2. natural images: the COCO slice (75 held-apart objects), without refinement
$S validate $W --no-refine --data $D/coco-train $D/coco-mini --jobs 2 --csv-dir $R/validation \
   --json $R/validation/validation.json 2>&1 | summary
# diagnostics, whatever the slice says: GrabCut and DAVIS-dev without refinement
$S evaluate $D/grabcut --weights $W --no-refine --jobs 2 --json $R/candidate_grabcut.json 2>&1 | summary
$S evaluate $D/davis-dev --weights $W --no-refine --jobs 2 --json $R/candidate_davis-dev.json 2>&1 | summary
$S compare --baseline docs/results/spbox_s26_grabcut.csv docs/results/spbox_s26_davis-dev.csv \
   --candidate $R/candidate_grabcut.csv $R/candidate_davis-dev.csv --json $R/compare_natural.json 2>&1 | tail -3
