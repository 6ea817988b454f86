"""Stop 35's diagnosis: the standard robot on held-apart training objects (by default the nuclei of
nuclei-train, microscopy weights), recording each click, the box and FP / FN pixel counts after it.
Decides nothing.

Usage, from the checkout root:
    python docs/results/stop35/diag_drops.py N OUT.json ['{"click_radius": 3}'] [WEIGHTS DATA...]
"""

import json
import sys

import numpy as np

from napari_spbox.core.protocol import Session
from napari_spbox.evaluation.metrics import iou
from napari_spbox.evaluation.robot import next_click
from napari_spbox.model.inference import SPBoxPredictor
from napari_spbox.train.validation import held_apart


def step(click, box, mask, gt, ignore) -> dict:
    cut = None
    if box is not None:
        cut = int(gt.sum() - gt[box.top : box.bottom + 1, box.left : box.right + 1].sum())
    return {
        "click": [int(click[0]), int(click[1]), bool(click[2])],
        "box": None if box is None else [box.top, box.left, box.bottom, box.right],
        "iou": iou(mask, gt, ignore),
        "fp": int((mask & ~gt).sum()),
        "fn": int((gt & ~mask).sum()),
        "box_cuts": cut,  # object pixels outside the box
    }


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    weights = sys.argv[4] if len(sys.argv) > 4 else "microscopy"
    data = sys.argv[5:] or ["../shared/datasets/nuclei-train"]
    _, val = held_apart(data)
    pred = SPBoxPredictor(weights, **extra)
    recs = []
    for it in val[:n]:
        image, gt, ignore = it.load()
        gt = np.asarray(gt, bool)
        pred.set_image(image)
        session = Session(gt.shape, strict=False)
        mask = np.zeros_like(gt)
        rec = {"name": it.name, "area": int(gt.sum()), "steps": []}
        for _ in range(20):
            click = next_click(mask, gt, ignore)
            if click is None:
                break
            session.add_click(*click)
            mask = pred.predict(session).mask
            rec["steps"].append(step(click, session.box, mask, gt, ignore))
        recs.append(rec)
        ious = " ".join(f"{s['iou']:.2f}{'+-'[not s['click'][2]]}" for s in rec["steps"])
        print(it.name, rec["area"], ious, flush=True)
    with open(out, "w") as f:
        json.dump(recs, f)


if __name__ == "__main__":
    main()
