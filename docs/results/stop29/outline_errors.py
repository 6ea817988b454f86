"""Where the final error of DAVIS-dev's failed objects lies: its distance to the ground truth's
outline.

For each object that ends short of 90 % IoU in a per-object CSV of ``spbox evaluate`` (20 clicks),
the robot's session is replayed with the shipped weights and pipeline, and every wrong pixel of the
last mask is measured against the outline of the ground truth. Writes a CSV (one row per object) and
a plot of the cumulative share of the error within d pixels of the outline.

    python docs/results/stop29/outline_errors.py ../shared/datasets/davis-dev \
        docs/results/spbox_s26_davis-dev.csv docs/results/stop29/outline_errors
"""

import csv
import multiprocessing as mp
import sys

import numpy as np
from scipy import ndimage

DISTANCES = (1, 2, 3, 5, 10)


def measure(item):
    import torch

    from napari_spbox.core.protocol import Session
    from napari_spbox.evaluation.robot import run_object
    from napari_spbox.model.inference import SPBoxPredictor

    torch.set_num_threads(1)
    image, gt, ignore = item.load()
    predictor = SPBoxPredictor()
    res = run_object(predictor, image, gt, ignore, max_clicks=20)
    session = Session(gt.shape, strict=False)
    for click in res["clicks"]:
        session.add_click(*click)
    mask = predictor.predict(session).mask
    err = mask ^ gt
    outline = gt ^ ndimage.binary_erosion(gt)
    dist = ndimage.distance_transform_edt(~outline)
    near3 = err & (dist <= 3)
    inter, union = (mask & gt).sum(), (mask | gt).sum()
    row = {
        "name": item.name,
        "gt_px": int(gt.sum()),
        "iou_20": round(float(inter / union), 4),
        "error_px": int(err.sum()),
        "missed_share": round(float((err & gt).sum() / err.sum()), 3),
    }
    row.update(
        {f"within_{d}px": round(float((err & (dist <= d)).sum() / err.sum()), 3) for d in DISTANCES}
    )
    row["iou_if_3px_right"] = round(
        float((inter + (near3 & gt).sum()) / (union - (near3 & ~gt).sum())), 4
    )
    return row


def main(dataset, per_object_csv, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_spbox.datasets import read_dataset

    with open(per_object_csv) as f:
        failed = {
            r["name"]
            for r in csv.DictReader(f)
            if max(float(v) for k, v in r.items() if k.startswith("iou_")) < 0.9
        }
    items = [it for it in read_dataset(dataset) if it.name in failed]
    with mp.get_context("spawn").Pool(2) as pool:
        rows = pool.map(measure, items)
    with open(out + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ax.plot(
            (0,) + DISTANCES,
            [0] + [r[f"within_{d}px"] for d in DISTANCES],
            color="tab:blue",
            alpha=0.35,
        )
    ax.plot(
        (0,) + DISTANCES,
        [0] + [np.median([r[f"within_{d}px"] for r in rows]) for d in DISTANCES],
        color="black",
        lw=2.5,
        label=f"median of {len(rows)} objects",
    )
    ax.set(
        xlabel="distance to the ground truth's outline (px)",
        ylabel="share of the wrong pixels after 20 clicks",
        title="DAVIS-dev objects that never reach 90 % IoU",
        ylim=(0, 1),
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out + ".png", dpi=110)
    print(
        f"{out}.csv, {out}.png: {len(rows)} objects; median share within 3 px "
        f"{np.median([r['within_3px'] for r in rows]):.2f}, median IoU if those were right "
        f"{np.median([r['iou_if_3px_right'] for r in rows]):.3f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
