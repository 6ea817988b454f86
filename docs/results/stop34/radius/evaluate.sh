#!/usr/bin/env bash
# Stop 34, second amendment: the microscopy weights with their card's 1 px click spot, on nuclei-dev (the rule),
# the same with --click-radius 3 (today's pipeline before the change: it must reproduce stop 30's figures), and
# on GrabCut and DAVIS-dev (the README's microscopy row). Usage, from the checkout root:
#   bash docs/results/stop34/radius/evaluate.sh
set -u
D=../shared/datasets
R=docs/results/stop34/radius
S=.venv/bin/spbox
export OMP_NUM_THREADS=1
$S evaluate $D/nuclei-dev --weights microscopy --jobs 2 --json $R/microscopy_nuclei-dev.json 2>&1 | grep -a '"noc@90"'
$S compare --baseline docs/results/stop30/candidate_nuclei-dev.csv --candidate $R/microscopy_nuclei-dev.csv \
   --json $R/compare_nuclei-dev.json 2>&1 | tail -2
$S evaluate $D/nuclei-dev --weights microscopy --click-radius 3 --jobs 2 --json $R/radius3_nuclei-dev.json 2>&1 \
   | grep -a '"noc@90"'
$S compare --baseline docs/results/stop30/candidate_nuclei-dev.csv --candidate $R/radius3_nuclei-dev.csv 2>&1 | tail -2
for set in grabcut davis-dev; do
  $S evaluate $D/$set --weights microscopy --jobs 2 --json $R/microscopy_$set.json 2>&1 | grep -a '"noc@90"'
done
$S compare --baseline docs/results/stop30/candidate_grabcut.csv docs/results/stop30/candidate_davis-dev.csv \
   --candidate $R/microscopy_grabcut.csv $R/microscopy_davis-dev.csv --json $R/compare_natural.json 2>&1 | tail -4
