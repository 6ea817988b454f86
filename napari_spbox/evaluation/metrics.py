"""IoU, NoC and NoF as the interactive-segmentation literature computes them."""

from __future__ import annotations

import numpy as np

from ..core.geometry import iou  # the one copy; re-exported for ``from .metrics import iou``


def outline_band(gt: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` px (city-block steps) of the outline of ``gt``, on either side of it.

    Left out of the IoU and of the robot's clicks (``spbox evaluate --ignore-band``), as GrabCut's
    ground truth leaves out its grey band: what is left measures the object-level decisions, and the
    drop against the full score is what outline errors of ``width`` px or less cost. Parts of the
    object thinner than about ``2 * width`` px fall entirely into the band. Where the object meets
    the image's edge there is no outline, so no band. ``width`` 0 gives an empty band.
    """
    from scipy import ndimage

    gt = np.asarray(gt, bool)
    if width <= 0 or not gt.any():
        return np.zeros_like(gt)
    return ndimage.binary_dilation(gt, iterations=width) & ~ndimage.binary_erosion(
        gt, iterations=width, border_value=1
    )


def noc(ious, threshold: float, max_clicks: int = 20) -> int:
    """Number of clicks until IoU >= ``threshold`` (``ious[k]`` is after click k + 1);
    ``max_clicks`` if never."""
    for k, v in enumerate(ious[:max_clicks]):
        if v >= threshold:
            return k + 1
    return max_clicks


def padded_ious(ious, max_clicks: int) -> list:
    """IoU after each of ``max_clicks`` clicks: an object the robot stopped early (no error left to
    click) keeps its last IoU for the remaining clicks."""
    ious = list(ious[:max_clicks])
    return ious + ious[-1:] * (max_clicks - len(ious))


def summarise(per_object: list, max_clicks: int = 20) -> dict:
    """NoC@85/90, NoF@85/90, mIoU per click and latency over
    ``[{'ious': [...], 'latency_ms': [...]}]``."""
    ious = [o["ious"] for o in per_object]
    lat = np.concatenate([o["latency_ms"] for o in per_object]) if per_object else np.zeros(0)
    out = {"n_objects": len(per_object)}
    for t in (85, 90):
        nocs = [noc(i, t / 100, max_clicks) for i in ious]
        out[f"noc@{t}"] = float(np.mean(nocs)) if nocs else float("nan")
        out[f"nof@{t}"] = int(sum(1 for i in ious if max(i[:max_clicks], default=0) < t / 100))
    padded = (
        np.array([padded_ious(i, max_clicks) for i in ious]) if ious else np.zeros((0, max_clicks))
    )
    out["miou_per_click"] = [float(v) for v in padded.mean(axis=0)] if len(padded) else []
    out["latency_ms"] = {
        "median": float(np.median(lat)) if lat.size else float("nan"),
        "p90": float(np.percentile(lat, 90)) if lat.size else float("nan"),
    }
    return out


def superpixel_quality(labels: np.ndarray, gt: np.ndarray, tolerance: int = 2) -> dict:
    """How well superpixels can follow an object: achievable IoU and boundary recall.

    ``asa_iou`` is the IoU of the best mask made of whole superpixels (each one takes its majority
    label); ``boundary_recall`` the fraction of object-boundary pixels within ``tolerance`` pixels
    of a superpixel boundary. Used to compare SLIC settings on quality as well as speed.
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
    return {
        "asa_iou": iou(best, gt),
        "boundary_recall": float((edges & near).sum() / max(edges.sum(), 1)),
    }


def paired_comparison(
    baseline: list, candidate: list, resamples: int = 10_000, seed: int = 0, level: float = 0.95
) -> dict:
    """How much a candidate changes a per-object figure (e.g. NoC@90) against a baseline, with its
    noise.

    Parameters
    ----------
    baseline, candidate : list of 1-D arrays
        One array per evaluation set (e.g. GrabCut, DAVIS-dev), the same objects in the same order
        in both.
    resamples, seed, level
        Paired percentile bootstrap: objects are resampled within each set, so each set keeps its
        size.

    Returns
    -------
    dict
        ``sets``: per set ``n``, ``baseline``, ``candidate`` (means), ``diff`` (candidate -
        baseline) with its ``low``/``high`` interval, and how many objects got ``better`` /
        ``worse`` (lower / higher figure); ``pooled``: the mean of the per-set differences (each set
        weighs the same) with its interval.
    """
    rng = np.random.default_rng(seed)
    q = ((1 - level) / 2 * 100, (1 + level) / 2 * 100)
    sets, boots = [], []
    for b, c in zip(baseline, candidate, strict=True):
        b, c = np.asarray(b, float), np.asarray(c, float)
        if b.shape != c.shape or b.ndim != 1 or not b.size:
            raise ValueError(
                f"paired sets need the same non-empty objects: {b.shape} against {c.shape}"
            )
        d = c - b
        boot = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
        lo, hi = np.percentile(boot, q)
        sets.append(
            {
                "n": int(d.size),
                "baseline": float(b.mean()),
                "candidate": float(c.mean()),
                "diff": float(d.mean()),
                "low": float(lo),
                "high": float(hi),
                "better": int((d < 0).sum()),
                "worse": int((d > 0).sum()),
            }
        )
        boots.append(boot)
    pooled = np.mean(boots, axis=0)
    lo, hi = np.percentile(pooled, q)
    return {
        "sets": sets,
        "pooled": {
            "diff": float(np.mean([s["diff"] for s in sets])),
            "low": float(lo),
            "high": float(hi),
        },
    }


def ships(comparison: dict) -> bool:
    """The shipping rule (pre-registered in stop 19) for a lower-is-better figure such as NoC@90.

    The candidate must be better on the sets pooled, beyond noise (the pooled interval lies below
    0), and not measurably worse on any one set (no set's interval lies above 0).
    """
    return comparison["pooled"]["high"] < 0 and all(s["low"] <= 0 for s in comparison["sets"])
