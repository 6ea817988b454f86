"""Annotate every nucleus of one image through the napari widget's own code path, as a robot user.

For each nucleus (in reading order) the standard robot clicks into the widget's Points layers until
the preview reaches IoU >= 0.85 with that nucleus (or 20 clicks), then commits (Shift-C's method);
nothing else is pressed between objects. Reports clicks and seconds per nucleus and in all, and
saves a screenshot of the result.

The image is a held-apart image of nuclei-train (never trained on: `spbox train`'s 5 % split by file
name), since nuclei-dev marks only two nuclei per image. Run under a display:

    xvfb-run -a .venv/bin/python docs/results/stop30/annotate_all_nuclei.py [WEIGHTS] \\
        [--out docs/napari_nuclei.png]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication
from scipy import ndimage

from napari_spbox.evaluation.metrics import iou
from napari_spbox.evaluation.robot import next_click
from napari_spbox.io import read_image
from napari_spbox.napari import SPBoxWidget
from napari_spbox.napari._controls import NEGATIVE, POSITIVE

IMAGE = Path(__file__).resolve().parents[4] / "shared" / "datasets" / "nuclei-train"
STEM = "61942930"
TARGET, MAX_CLICKS = 0.85, 20


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("weights", nargs="?", default="microscopy")
    p.add_argument("--out", default="docs/napari_nuclei.png")
    p.add_argument("--json", default="docs/results/stop30/annotate_all_nuclei.json")
    args = p.parse_args(argv)

    image = read_image(IMAGE / "img" / f"{STEM}.png")
    ids = read_image(IMAGE / "gt" / f"{STEM}.png")
    order = sorted((k for k in np.unique(ids) if k), key=lambda k: ndimage.center_of_mass(ids == k))
    viewer = napari.Viewer(show=True)
    viewer.add_image(image, name=f"nuclei {STEM}", colormap="gray")
    widget = SPBoxWidget(viewer)
    if args.weights in ("natural", "microscopy"):  # as a user would: the weights menu
        widget.model_settings.preset.setCurrentText(args.weights)
    else:
        widget.model_settings.weights.setText(args.weights)
        widget._on_model_changed()
    viewer.window.add_dock_widget(widget, name="SPBox segmentation")
    widget.wait()
    records, t_all = [], time.perf_counter()
    for k in order:
        gt = ids == k
        t0, clicks, best = time.perf_counter(), 0, 0.0
        pred = np.zeros_like(gt)
        while clicks < MAX_CLICKS:
            click = next_click(pred, gt)
            if click is None:
                break
            r, c, positive = click
            viewer.layers[POSITIVE if positive else NEGATIVE].add([r, c])
            widget.wait()
            clicks += 1
            pred = widget.preview_mask.copy()
            best = iou(pred, gt)
            if best >= TARGET:
                break
        widget.commit()
        widget.wait()
        records.append(
            {
                "id": int(k),
                "area": int(gt.sum()),
                "clicks": clicks,
                "iou": round(float(best), 3),
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
    total = time.perf_counter() - t_all
    labels = viewer.layers["SPBox labels"].data
    summary = {
        "image": f"nuclei-train/img/{STEM}.png (held apart)",
        "weights": args.weights or "shipped",
        "nuclei": len(order),
        "reached_0.85": int(sum(r["iou"] >= TARGET for r in records)),
        "clicks": sum(r["clicks"] for r in records),
        "clicks_per_nucleus": round(float(np.mean([r["clicks"] for r in records])), 2),
        "seconds": round(total, 1),
        "seconds_per_nucleus": round(total / len(order), 2),
        "committed_objects": int(len(np.unique(labels)) - 1),
        "per_nucleus": records,
    }
    QApplication.processEvents()
    viewer.window._qt_window.resize(1300, 850)
    QApplication.processEvents()
    viewer.reset_view()
    QApplication.processEvents()
    viewer.screenshot(args.out, canvas_only=False)
    viewer.close()
    Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "per_nucleus"}, indent=1))
    return summary


if __name__ == "__main__":
    main()
