#!/usr/bin/env bash
# Stop 32 candidate (the split network, encoder tuned): the plan's checks (docs/experiments/stop32_tuned_split.md),
# one after another, --jobs 2 each. Usage, from the checkout root:
#   bash docs/results/stop32/evaluate_candidate.sh [WEIGHTS]
set -u
W=${1:-runs/s32/tuned/weights.pt}
D=../shared/datasets
R=docs/results/stop32
R30=docs/results/stop30
R31=docs/results/stop31
S=.venv/bin/spbox
export OMP_NUM_THREADS=1
mkdir -p $R/validation $R/held_apart_nuclei
summary() { grep -E "noc@|mIoU|NoC" | grep -v Warn; }
# rule 1: nuclei-dev without refinement; rule 2: with it
$S evaluate $D/nuclei-dev --weights $W --no-refine --jobs 2 --json $R/candidate_nuclei-dev.json 2>&1 | summary
$S compare --baseline $R30/candidate_nuclei-dev.csv --candidate $R/candidate_nuclei-dev.csv \
   --json $R/compare_nuclei-dev.json 2>&1 | tail -3
$S evaluate $D/nuclei-dev --weights $W --jobs 2 --json $R/candidate_refine_nuclei-dev.json 2>&1 | summary
$S compare --baseline $R30/candidate_nuclei-dev.csv --candidate $R/candidate_refine_nuclei-dev.csv \
   --json $R/compare_refine_nuclei-dev.json 2>&1 | tail -3
# rules 1-2's confirmation: the 108 held-apart nuclei of nuclei-train (the shipped microscopy weights' per-object
# figures are in stop 31's folder), without and with refinement
$S validate $W --no-refine --data $D/nuclei-train --jobs 2 --csv-dir $R/held_apart_nuclei/norefine \
   --json $R/held_apart_nuclei/norefine.json 2>&1 | summary
$S validate $W --data $D/nuclei-train --jobs 2 --csv-dir $R/held_apart_nuclei/refine \
   --json $R/held_apart_nuclei/refine.json 2>&1 | summary
B=$R31/held_apart_nuclei/napari_spbox_weights_spbox_espnetv2_nuclei.csv
for v in norefine refine; do
  $S compare --baseline $B --candidate $R/held_apart_nuclei/$v/*.csv \
     --json $R/held_apart_nuclei/compare_$v.json 2>&1 | tail -3
done
# rule 3: the COCO slice (75 held-apart objects) without refinement
$S validate $W --no-refine --data $D/coco-train $D/coco-mini --jobs 2 --csv-dir $R/validation \
   --json $R/validation/validation.json 2>&1 | summary
# GrabCut and DAVIS-dev without refinement (rule 3 if the slice passes; diagnostics otherwise)
$S evaluate $D/grabcut --weights $W --no-refine --jobs 2 --json $R/candidate_grabcut.json 2>&1 | summary
$S evaluate $D/davis-dev --weights $W --no-refine --jobs 2 --json $R/candidate_davis-dev.json 2>&1 | summary
$S compare --baseline docs/results/spbox_s26_grabcut.csv docs/results/spbox_s26_davis-dev.csv \
   --candidate $R/candidate_grabcut.csv $R/candidate_davis-dev.csv --json $R/compare_natural.json 2>&1 | tail -3
# diagnostic added after the planned checks: GrabCut with the default refinement, beside the shipped 4.52
$S evaluate $D/grabcut --weights $W --jobs 2 --json $R/candidate_refine_grabcut.json 2>&1 | summary
# third amendment: the refined split as natural weights, on the COCO slice and DAVIS-dev, both with refinement
$S validate $W --data $D/coco-train $D/coco-mini --jobs 2 --csv-dir $R/validation_refine \
   --json $R/validation_refine/validation.json 2>&1 | summary
$S evaluate $D/davis-dev --weights $W --jobs 2 --json $R/candidate_refine_davis-dev.json 2>&1 | summary
$S compare --baseline docs/results/spbox_s26_davis-dev.csv --candidate $R/candidate_refine_davis-dev.csv \
   --json $R/compare_refine_davis-dev.json 2>&1 | tail -3
