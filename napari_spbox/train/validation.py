"""Training's validation: the held-apart objects of the training data (:func:`held_apart`) and
the robot user's figures on them (:func:`validate`), shared by ``spbox train`` and
``spbox validate``."""

from __future__ import annotations

import functools
import math
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..evaluation.metrics import summarise
from ..evaluation.robot import evaluate
from ..model.inference import SPBoxPredictor
from ..model.weights import INPUT_SIZE, save_weights
from .data import MIN_AREA, cap_per_image, min_area_of, split_items, training_items


def _filter_area(items, min_area):
    """Objects of at least their area floor (:func:`min_area_of`); an instance-id mask is read
    once."""
    keep, areas = [], {}
    for it in tqdm(items, desc="checking object sizes", leave=False):
        if it.object_value is not None:
            if it.mask_path not in areas:
                areas = {it.mask_path: np.bincount(np.asarray(Image.open(it.mask_path)).ravel())}
            counts = areas[it.mask_path]
            area = int(counts[it.object_value]) if it.object_value < len(counts) else 0
        elif it.polygons or it.mask_path is not None:
            area = int(it.load()[1].sum())
        else:
            continue
        if area >= min_area_of(it, min_area):
            keep.append(it)
    return keep


def held_apart(data, min_area=MIN_AREA):
    """``(training objects, held-apart validation objects)`` of the dataset paths, as
    ``spbox train`` splits them.

    Objects of instance-id masks are capped per image (:func:`cap_per_image`) after the area check.
    """
    return split_items(cap_per_image(_filter_area(training_items(data), min_area)))


def validate(
    model,
    items,
    max_clicks,
    variant,
    device,
    progress=True,
    pipeline=False,
    jobs=1,
    size=INPUT_SIZE,
    per_object: list | None = None,
    flip: bool = False,
    refine: bool = True,
    refine_side: int | None = None,
    click_radius: int | None = None,
) -> dict:
    """Standard robot user on held-apart training objects: NoC@85/90 and mIoU after 5 clicks.

    By default the network's own output is scored (click consistency would hide what training
    changed). ``pipeline=True`` scores what a user gets instead: click consistency, implied box
    and edge refinement, the figure the shipped weights are chosen by. On this CPU the raw check
    and the pipeline disagreed (stop 17: an epoch 0.27 better than the shipped weights raw was
    0.24 worse through the pipeline), and the pipeline costs about three times as long. With
    ``jobs`` > 1 the objects are spread over that many one-thread CPU processes (the pipeline's
    edge refinement runs on the CPU even when training on a GPU). ``size`` is the network's input
    side, the one it is trained at. A ``per_object`` list receives each object's record (name,
    IoU per click), for paired comparisons between weights (``spbox validate --csv-dir``).
    ``flip`` scores the predictor's mirrored test-time augmentation (:class:`SPBoxPredictor`);
    ``refine=False`` leaves the edge refinement out of the pipeline; ``refine_side`` sets the side
    it runs at (:class:`SPBoxPredictor`); ``click_radius`` the radius of each click's hard spot
    (default :data:`~napari_spbox.core.predictor.CLICK_RADIUS`: ``model`` has no card to name one).
    """
    was_training = model.training
    model.eval()
    settings = {
        "variant": variant,
        "size": size,
        "click_consistency": pipeline,
        "refine": pipeline and refine,
        "imply_box": pipeline,
        "flip": flip,
        "refine_side": refine_side,
        "click_radius": click_radius,
    }
    with tempfile.TemporaryDirectory() as tmp:
        if jobs > 1:
            # each worker builds its own predictor from an fp32 copy: they score this very model
            path = save_weights(model, Path(tmp) / "validating.pt", half=False)
            pred = functools.partial(
                SPBoxPredictor, weights=str(path), device="cpu", backend="torch", **settings
            )
        else:
            pred = SPBoxPredictor(model=model, device=str(device), **settings)
        records = evaluate(pred, items, max_clicks=max_clicks, progress=False, jobs=jobs)
        res = summarise(records, max_clicks)
    if per_object is not None:
        per_object.extend(records)
    model.train(was_training)
    miou = res["miou_per_click"]
    out = {
        "noc@85": round(res["noc@85"], 3),
        "noc@90": round(res["noc@90"], 3),
        "miou5": round(miou[min(4, len(miou) - 1)], 4) if miou else math.nan,
        "max_clicks": max_clicks,
    }
    if pipeline:
        out["pipeline"] = True
        if not refine:
            out["refine"] = False
        elif refine_side is not None:
            out["refine_side"] = refine_side
        if click_radius is not None:
            out["click_radius"] = click_radius  # only the pipeline reads a click's spot
    return out
