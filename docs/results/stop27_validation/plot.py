"""Stop 27: mIoU per click on the validation slice, shipped (stop-26) weights against the 10-error-click run.

Usage: python docs/results/stop27_validation/plot.py OUT.png   (reads the per-object CSVs named below)
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from napari_spbox.report import read_csv_column

R = "docs/results"
RUNS = [(f"{R}/stop26_validation/runs_s26_cpu_it6_weights_e8.csv", "shipped (stop 26, ≤ 6 error clicks)")] + [
    (f"{R}/stop27_validation/runs_s27_it10_weights_e{e}.csv", f"stop 27, ≤ 10 error clicks, epoch {e}") for e in (3, 6, 9)]


def miou(path):
    return np.array([read_csv_column(path, f"iou_{k}")[1].mean() for k in range(1, 21)])


fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), dpi=110)
base = miou(RUNS[0][0])
for path, label in RUNS:
    noc = read_csv_column(path, "noc@90")[1].mean()
    axes[0].plot(range(1, 21), miou(path), marker="o", ms=3, label=f"{label}, NoC@90 {noc:.2f}")
    axes[1].plot(range(1, 21), miou(path) - base, marker="o", ms=3, label=label)
axes[0].set_ylim(0.4, 1)
axes[0].set_ylabel("mIoU")
axes[1].set_ylabel("mIoU minus the shipped weights'")
axes[1].axhline(0, color="k", lw=0.8)
for ax in axes:
    ax.set_xlabel("clicks")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
fig.suptitle("validation slice (75 held-apart COCO objects, pipeline, 20 clicks)", fontsize=10)
fig.tight_layout()
fig.savefig(sys.argv[1], bbox_inches="tight")
