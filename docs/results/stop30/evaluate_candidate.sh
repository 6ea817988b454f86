#!/usr/bin/env bash
# Stop 30 candidate: the plan's checks, one after another (jobs 2 each). Usage: bash docs/results/stop30/evaluate_candidate.sh WEIGHTS (from the checkout root)
set -u
W=${1:-runs/s30/espnet/weights_e4.pt}
D=../shared/datasets
R=docs/results/stop30
S=.venv/bin/spbox
export OMP_NUM_THREADS=1
mkdir -p $R/validation
$S validate napari_spbox/weights/spbox_lite0.pt $W --data $D/coco-train $D/coco-mini --jobs 2 \
   --csv-dir $R/validation --json $R/validation/validation.json 2>&1 | grep -v Warn
$S evaluate $D/nuclei-dev --weights $W --jobs 2 --json $R/candidate_nuclei-dev.json 2>&1 | grep -E "noc@|mIoU"
$S evaluate $D/grabcut --weights $W --jobs 2 --json $R/candidate_grabcut.json 2>&1 | grep -E "noc@|mIoU"
$S evaluate $D/davis-dev --weights $W --jobs 2 --json $R/candidate_davis-dev.json 2>&1 | grep -E "noc@|mIoU"
$S evaluate $D/grabcut --weights $W --raw-network --jobs 2 --json $R/candidate_raw_grabcut.json 2>&1 | grep -E "noc@|mIoU"
$S compare --baseline docs/results/spbox_s26_grabcut.csv docs/results/spbox_s26_davis-dev.csv \
   $R/lite0_s26_nuclei-dev.csv --candidate $R/candidate_grabcut.csv $R/candidate_davis-dev.csv \
   $R/candidate_nuclei-dev.csv --json $R/compare_candidate.json
