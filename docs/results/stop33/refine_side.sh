#!/usr/bin/env bash
# Stop 33 amendment, check 2: the shipped natural weights with the GrabCut refinement at a smaller side, on the
# held-apart COCO slice, paired against the default side (today's validation_shipped run).
# Usage, from the checkout root: bash docs/results/stop33/refine_side.sh [SIDE ...]
set -u
D=../shared/datasets
R=docs/results/stop33
S=.venv/bin/spbox
export OMP_NUM_THREADS=1
for side in ${@:-224 160 128}; do
  mkdir -p $R/validation_side$side
  $S validate napari_spbox/weights/spbox_lite0.pt --refine-side $side --data $D/coco-train $D/coco-mini --jobs 2 \
     --csv-dir $R/validation_side$side --json $R/validation_side$side/validation.json 2>&1 | grep -a "NoC" | sed 's/.*file\/s\]//'
  $S compare --baseline $R/validation_shipped/*.csv --candidate $R/validation_side$side/*.csv \
     --json $R/compare_side$side.json 2>&1 | grep difference
done
