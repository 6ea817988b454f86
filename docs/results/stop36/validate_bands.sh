#!/usr/bin/env bash
# Stop 36, part B, rule 1 (docs/experiments/stop36_fast_refine.md): each band on the three held-apart slices, paired
# with the shipped pipeline's per-object figures of stop 35. The candidate is commit bcff423 (the package no
# longer holds it): run this in a checkout of it. Usage, from that checkout's root:
#   bash docs/results/stop36/validate_bands.sh 0.10 0.05 0.03
set -u
D=../shared/datasets
B=docs/results/stop35/validation
P=".venv/bin/python docs/results/stop36/with_band.py"
export OMP_NUM_THREADS=1
for band in "$@"; do
  R=docs/results/stop36/band_$band
  mkdir -p $R
  export SPBOX_BAND=$band
  $P validate napari_spbox/weights/spbox_lite0.pt --data $D/coco-train $D/coco-mini --jobs 2 \
     --json $R/coco.json --csv-dir $R/coco 2>&1 | tail -1
  $P evaluate runs/s34/confirm --jobs 2 --json $R/confirm.json 2>&1 | grep -a '"noc@90"'
  $P validate microscopy --data $D/nuclei-train --jobs 2 --json $R/nuclei.json --csv-dir $R/nuclei 2>&1 | tail -1
  $P compare --baseline $B/natural_coco.csv $B/natural_confirm.csv $B/microscopy_nuclei.csv \
     --candidate $R/coco/*.csv $R/confirm.csv $R/nuclei/*.csv --json $R/compare.json 2>&1 | tail -5
done
