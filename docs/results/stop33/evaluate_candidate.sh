#!/usr/bin/env bash
# Stop 33 candidate (the shipped Lite0, frozen, with a learned outline head): the plan's checks
# (docs/experiments/stop33_outline_head.md), one after another, --jobs 2 each. Usage, from the checkout root:
#   bash docs/results/stop33/evaluate_candidate.sh [WEIGHTS]
set -u
W=${1:-runs/s33/outline/weights.pt}
D=../shared/datasets
R=docs/results/stop33
S=.venv/bin/spbox
SHIPPED=napari_spbox/weights/spbox_lite0.pt
export OMP_NUM_THREADS=1
mkdir -p $R/validation_shipped $R/validation
summary() { grep -E "noc@|mIoU|NoC" | grep -v Warn; }
# rule 1: the held-apart COCO slice, shipped (default pipeline) and candidate (no GrabCut refinement)
$S validate $SHIPPED --data $D/coco-train $D/coco-mini --jobs 2 --csv-dir $R/validation_shipped \
   --json $R/validation_shipped/validation.json 2>&1 | summary
$S validate $W --no-refine --data $D/coco-train $D/coco-mini --jobs 2 --csv-dir $R/validation \
   --json $R/validation/validation.json 2>&1 | summary
$S compare --baseline $R/validation_shipped/*.csv --candidate $R/validation/*.csv \
   --json $R/compare_validation.json 2>&1 | tail -3
# rule 2: GrabCut + DAVIS-dev pooled against the shipped default pipeline (its per-object figures: stop 26)
$S evaluate $D/grabcut --weights $W --no-refine --jobs 2 --json $R/candidate_grabcut.json 2>&1 | summary
$S evaluate $D/davis-dev --weights $W --no-refine --jobs 2 --json $R/candidate_davis-dev.json 2>&1 | summary
$S compare --baseline docs/results/spbox_s26_grabcut.csv docs/results/spbox_s26_davis-dev.csv \
   --candidate $R/candidate_grabcut.csv $R/candidate_davis-dev.csv --json $R/compare_natural.json 2>&1 | tail -3
# diagnostics: the head's own effect (both without refinement), its raw network, and with refinement on top
$S compare --baseline docs/results/spbox_s26_norefine_grabcut.csv docs/results/spbox_s26_norefine_davis-dev.csv \
   --candidate $R/candidate_grabcut.csv $R/candidate_davis-dev.csv --json $R/compare_head.json 2>&1 | tail -3
$S evaluate $D/grabcut --weights $W --raw-network --jobs 2 --json $R/candidate_raw_grabcut.json 2>&1 | summary
$S evaluate $D/grabcut --weights $W --jobs 2 --json $R/candidate_refine_grabcut.json 2>&1 | summary
