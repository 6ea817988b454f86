"""Stop 35's diagnosis: the standard robot on the held-apart nuclei of nuclei-train, with each click,
the box and FP / FN pixel counts after it (microscopy weights; decides nothing).

Usage, from the checkout root: python docs/results/stop35/diag_drops.py N OUT.json ['{"click_radius": 3}']
"""
import json, sys
import numpy as np
from napari_spbox.train.validation import held_apart
from napari_spbox.model.inference import SPBoxPredictor
from napari_spbox.core.protocol import Session
from napari_spbox.evaluation.robot import next_click
from napari_spbox.evaluation.metrics import iou

def main():
    n = int(sys.argv[1]); out = sys.argv[2]
    extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    _, val = held_apart(["../shared/datasets/nuclei-train"])
    pred = SPBoxPredictor("microscopy", **extra)
    recs = []
    for it in val[:n]:
        image, gt, ignore = it.load()
        gt = np.asarray(gt, bool)
        pred.set_image(image)
        s = Session(gt.shape, strict=False)
        mask = np.zeros_like(gt)
        rec = {"name": it.name, "area": int(gt.sum()), "steps": []}
        for k in range(20):
            c = next_click(mask, gt, ignore)
            if c is None:
                break
            s.add_click(*c)
            p = pred.predict(s)
            mask = p.mask
            b = s.box
            rec["steps"].append({"click": [int(c[0]), int(c[1]), bool(c[2])],
                "box": None if b is None else [b.top, b.left, b.bottom, b.right],
                "iou": iou(mask, gt, ignore), "fp": int((mask & ~gt).sum()), "fn": int((gt & ~mask).sum()),
                "box_cuts": None if b is None else int(gt.sum() - gt[b.top:b.bottom+1, b.left:b.right+1].sum())})
        recs.append(rec)
        print(it.name, rec["area"], " ".join(f"{st['iou']:.2f}{'+' if st['click'][2] else '-'}" for st in rec["steps"]), flush=True)
    json.dump(recs, open(out, "w"))

if __name__ == "__main__":
    main()
