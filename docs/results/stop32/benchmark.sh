#!/usr/bin/env bash
# Stop 32: click latency of the tuned split candidate and the two shipped weights, with stop 31's script (one
# session, 1 thread, 480x640 and native). Usage: bash docs/results/stop32/benchmark.sh [WEIGHTS]
exec bash docs/results/stop31/benchmark.sh "${1:-runs/s32/tuned/weights.pt}" docs/results/stop32
