#!/usr/bin/env bash
# Stop 36, part B, rule 2 (docs/experiments/stop36_fast_refine.md): the chosen band, once on the evaluation sets,
# paired with the shipped pipeline's figures of stop 35. The candidate is commit bcff423 (the package no
# longer holds it): run this in a checkout of it. Usage, from that checkout's root:
#   bash docs/results/stop36/evaluate.sh BAND
set -u
D=../shared/datasets
B=docs/results/stop35/eval
R=docs/results/stop36/eval_b$(echo "$1" | sed "s/^0\.0*//")
P=".venv/bin/python docs/results/stop36/with_band.py"
export OMP_NUM_THREADS=1 SPBOX_BAND=$1
mkdir -p $R
for set in grabcut davis-dev; do
  $P evaluate $D/$set --jobs 2 --json $R/natural_$set.json 2>&1 | grep -a '"noc@90"'
done
$P evaluate $D/nuclei-dev --weights microscopy --jobs 2 --json $R/microscopy_nuclei-dev.json 2>&1 | grep -a '"noc@90"'
$P compare --baseline $B/natural_grabcut.csv $B/natural_davis-dev.csv $B/microscopy_nuclei-dev.csv \
   --candidate $R/natural_grabcut.csv $R/natural_davis-dev.csv $R/microscopy_nuclei-dev.csv \
   --json $R/compare.json 2>&1 | tail -5
