"""IoU, NoC and NoF as the interactive-segmentation literature computes them."""

from __future__ import annotations

import numpy as np


def iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union of two bool masks, pixels in ``ignore`` excluded (1.0 if both empty)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if ignore is not None:
        keep = ~np.asarray(ignore, bool)
        pred, gt = pred & keep, gt & keep
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def noc(ious, threshold: float, max_clicks: int = 20) -> int:
    """Number of clicks until IoU >= ``threshold`` (``ious[k]`` is after click k + 1); ``max_clicks`` if never."""
    for k, v in enumerate(ious[:max_clicks]):
        if v >= threshold:
            return k + 1
    return max_clicks


def summarise(per_object: list, max_clicks: int = 20) -> dict:
    """NoC@85/90, NoF@85/90, mIoU per click and latency over ``[{'ious': [...], 'latency_ms': [...]}]``."""
    ious = [o["ious"] for o in per_object]
    lat = np.concatenate([o["latency_ms"] for o in per_object]) if per_object else np.zeros(0)
    out = {"n_objects": len(per_object)}
    for t in (85, 90):
        nocs = [noc(i, t / 100, max_clicks) for i in ious]
        out[f"noc@{t}"] = float(np.mean(nocs)) if nocs else float("nan")
        out[f"nof@{t}"] = int(sum(1 for i in ious if max(i[:max_clicks], default=0) < t / 100))
    # An object that stopped early keeps its last IoU for the remaining clicks.
    padded = np.array([list(i) + [i[-1]] * (max_clicks - len(i)) for i in ious]) if ious else np.zeros((0, max_clicks))
    out["miou_per_click"] = [float(v) for v in padded.mean(axis=0)] if len(padded) else []
    out["latency_ms"] = {
        "median": float(np.median(lat)) if lat.size else float("nan"),
        "p90": float(np.percentile(lat, 90)) if lat.size else float("nan"),
    }
    return out


def superpixel_quality(labels: np.ndarray, gt: np.ndarray, tolerance: int = 2) -> dict:
    """How well superpixels can follow an object: achievable IoU and boundary recall.

    ``asa_iou`` is the IoU of the best mask made of whole superpixels (each one takes its majority
    label); ``boundary_recall`` the fraction of object-boundary pixels within ``tolerance`` pixels of
    a superpixel boundary. Used to compare SLIC settings on quality as well as speed.
    """
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    gt = np.asarray(gt, bool)
    flat = labels.ravel()
    fg = np.bincount(flat, weights=gt.ravel(), minlength=int(flat.max()) + 1)
    total = np.maximum(np.bincount(flat, minlength=fg.size), 1)
    best = (fg / total > 0.5)[labels]
    edges = find_boundaries(gt, mode="inner")
    near = ndimage.binary_dilation(find_boundaries(labels), iterations=tolerance)
    return {"asa_iou": iou(best, gt), "boundary_recall": float((edges & near).sum() / max(edges.sum(), 1))}
