#!/usr/bin/env bash
# Stop 35, rule R2 (docs/experiments/stop35_click_spots.md): the shipped weights with a click that always changes its
# own pixel, once on the evaluation sets, paired with the same weights before the change (stop 34's nuclei-dev run,
# stop 26's GrabCut and DAVIS-dev runs). Usage, from the checkout root: bash docs/results/stop35/evaluate.sh
set -u
D=../shared/datasets
R=docs/results/stop35/eval
S=.venv/bin/spbox
export OMP_NUM_THREADS=1
$S evaluate $D/nuclei-dev --weights microscopy --jobs 2 --json $R/microscopy_nuclei-dev.json 2>&1 | grep -a '"noc@90"'
$S compare --baseline docs/results/stop34/radius/microscopy_nuclei-dev.csv --candidate $R/microscopy_nuclei-dev.csv \
   --json $R/compare_nuclei-dev.json 2>&1 | tail -3
for set in grabcut davis-dev; do
  $S evaluate $D/$set --jobs 2 --json $R/natural_$set.json 2>&1 | grep -a '"noc@90"'
done
$S compare --baseline docs/results/spbox_s26_grabcut.csv docs/results/spbox_s26_davis-dev.csv \
   --candidate $R/natural_grabcut.csv $R/natural_davis-dev.csv --json $R/compare_natural.json 2>&1 | tail -4
# The README's other rows that the change can touch: the microscopy weights on natural images, the natural weights
# on nuclei-dev.
for set in grabcut davis-dev; do
  $S evaluate $D/$set --weights microscopy --jobs 2 --json $R/microscopy_$set.json 2>&1 | grep -a '"noc@90"'
done
$S evaluate $D/nuclei-dev --jobs 2 --json $R/natural_nuclei-dev.json 2>&1 | grep -a '"noc@90"'
