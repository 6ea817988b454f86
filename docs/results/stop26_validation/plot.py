"""Stop 26: mIoU per click, shipped weights against the 7-channel H100 fine-tune, on the three sets.

Usage: python docs/results/stop26_validation/plot.py OUT.png   (reads the per-object CSVs named below)
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from napari_spbox.report import read_csv_column

R = "docs/results"
SETS = {  # set: (shipped weights' CSV, candidate's CSV)
    "validation (75 held-apart COCO objects)": (f"{R}/stop24_validation/napari_spbox_weights_spbox_lite0.csv",
                                               f"{R}/stop26_validation/runs_s26_gpu_weights_e10.csv"),
    "GrabCut (50)": (f"{R}/spbox_grabcut.csv", f"{R}/stop26_validation/candidate_grabcut.csv"),
    "DAVIS-dev (87)": (f"{R}/spbox_davis-dev.csv", f"{R}/stop26_validation/candidate_davis-dev.csv"),
}


def miou(path):
    return np.array([read_csv_column(path, f"iou_{k}")[1].mean() for k in range(1, 21)])


fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110)
for ax, (name, (base, cand)) in zip(axes, SETS.items()):
    for path, label in [(base, "shipped (6 channels)"), (cand, "previous mask, H100 epoch 10 (7 channels)")]:
        noc = read_csv_column(path, "noc@90")[1].mean()
        ax.plot(range(1, 21), miou(path), marker="o", ms=3, label=f"{label}, NoC@90 {noc:.2f}")
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("clicks")
    ax.set_ylim(0.4, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
axes[0].set_ylabel("mIoU")
fig.tight_layout()
fig.savefig(sys.argv[1], bbox_inches="tight")
