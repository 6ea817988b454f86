#!/usr/bin/env bash
# Stop 36, part B, rule 3 (docs/experiments/stop36_fast_refine.md): the later click of the shipped pipeline (a
# checkout of ea40fbb at $BASE) and of this checkout, one after the other, twice, on an otherwise idle machine
# (a training run, if one is going, is paused: pass its process group). Usage, from the checkout root:
#   BASE=/work/base bash docs/results/stop36/benchmark.sh [TRAINING_PGID]
set -u
HERE=$PWD
PY=$HERE/.venv/bin/python
R=$HERE/docs/results/stop36/benchmark
mkdir -p $R
[ -n "${1:-}" ] && kill -STOP -- "-$1"

# two rounds on one thread (the README's figures), then one on both cores (the issue's "2 cores")
for run in 1t_1 1t_2 2t_1; do
  for arm in base candidate; do
    dir=$HERE; [ $arm = base ] && dir=$BASE
    (cd "$dir" && OMP_NUM_THREADS=${run:0:1} $PY -m napari_spbox.cli benchmark --limit 3 --clicks 12 --threads ${run:0:1} \
       --data "$HERE/../shared/datasets/grabcut" coffee --no-grabcut --json "$R/${arm}_$run.json" >/dev/null 2>&1)
    $PY - "$R/${arm}_$run.json" "$arm $run" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for size, b in d["by_size"].items():
    print(f"{sys.argv[2]:15s} {size:8s} first {b['first_click_ms']['median']:6.1f}  later {b['click_ms']['median']:6.1f}"
          f"  refine {b['stages_ms']['refine']:5.1f}  forward {b['stages_ms']['forward']:5.1f} ms")
PY
  done
done
[ -n "${1:-}" ] && kill -CONT -- "-$1"
