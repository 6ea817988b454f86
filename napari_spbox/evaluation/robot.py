"""Robot users: RITM's standard clicker and the paper's constrained protocol (Sec. 3.1, 4.1).

The standard clicker puts each click at the point farthest from the boundary of the larger error
region (false negatives -> positive click, false positives -> negative click), ignore pixels
excluded.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from ..core.geometry import farthest_point
from ..core.protocol import Box, Session
from .metrics import iou, outline_band


def next_click(
    pred: np.ndarray,
    gt: np.ndarray,
    ignore: np.ndarray | None = None,
    allowed_pos=None,
    allowed_neg=None,
):
    """The standard robot user's next click as ``(row, col, positive)``, or ``None`` if no error is
    left.

    ``allowed_pos`` / ``allowed_neg`` restrict where positive / negative clicks may go (paper
    protocol).
    """
    valid = ~ignore if ignore is not None else np.ones_like(gt, bool)
    fn, fp = gt & ~pred & valid, ~gt & pred & valid
    if allowed_pos is not None:
        fn &= allowed_pos
    if allowed_neg is not None:
        fp &= allowed_neg
    dn, rn, cn = farthest_point(fn)
    dp, rp, cp = farthest_point(fp)
    if dn == 0 and dp == 0:
        return None
    return (rn, cn, True) if dn > dp else (rp, cp, False)


def paper_first_pair(gt: np.ndarray):
    """The paper's opening: positive at the object's centre (farthest from the boundary), negative
    just outside the object, placed so that the box of
    :func:`~napari_spbox.core.protocol.box_from_pair` covers the object's bounding box with a 3%
    margin."""
    _, r, c = farthest_point(gt)
    b = Box.from_mask(gt)
    margin = max(2, int(0.03 * max(b.height, b.width)))
    hr = max(r - b.top, b.bottom - r) + margin
    hc = max(c - b.left, b.right - c) + margin
    nr = r + hr if b.bottom - r >= r - b.top else r - hr
    nc = c + hc if b.right - c >= c - b.left else c - hc
    h, w = gt.shape
    return (r, c, True), (int(np.clip(nr, 0, h - 1)), int(np.clip(nc, 0, w - 1)), False)


def degrade_mask(gt: np.ndarray, rng: np.random.Generator, target_iou: float = 0.7) -> np.ndarray:
    """A seeded degraded copy of ``gt`` with IoU near ``target_iou`` (erosion, dilation or a shift),
    standing in for an automatic segmentation to correct (Table 3)."""
    kind = rng.choice(["erode", "dilate", "shift"])
    angle = rng.uniform(0, 2 * np.pi)

    def make(k):
        if kind == "erode":
            return ndimage.binary_erosion(gt, iterations=k) if k else gt.copy()
        if kind == "dilate":
            return ndimage.binary_dilation(gt, iterations=k) if k else gt.copy()
        return (
            ndimage.shift(gt.astype(np.uint8), (k * np.sin(angle), k * np.cos(angle)), order=0) > 0
        )

    lo, hi = 0, max(gt.shape)
    while hi - lo > 1:  # IoU falls as k grows: bisect for the target
        mid = (lo + hi) // 2
        out = make(mid)
        if out.any() and iou(out, gt) >= target_iou:
            lo = mid
        else:
            hi = mid
    out = make(lo)
    return out if out.any() else gt.copy()


def run_object(
    predictor,
    image,
    gt,
    ignore=None,
    protocol: str = "standard",
    max_clicks: int = 20,
    start_mask: np.ndarray | None = None,
    stop_at: float | None = None,
) -> dict:
    """Click on one object until ``max_clicks`` (or IoU >= ``stop_at``); IoU and latency after each
    click.

    With ``start_mask`` the session starts from that mask's box (correction mode) and ``iou0`` is
    the IoU of the prediction before any click.
    """
    predictor.set_image(image)
    gt = np.asarray(gt, bool)
    result = {"ious": [], "latency_ms": [], "clicks": []}
    if start_mask is not None:
        session = Session.from_mask(start_mask, strict=False)
        pred = predictor.predict(session)
        result["iou0"] = iou(pred.mask, gt, ignore)
        mask = pred.mask
    else:
        session = Session(gt.shape, strict=False)
        mask = np.zeros_like(gt)
    opening = list(paper_first_pair(gt)) if protocol == "paper" and start_mask is None else []
    for _ in range(max_clicks):
        if opening:
            click = opening.pop(0)
        else:
            box = session.box
            inside = None
            if protocol == "paper" and box is not None:
                inside = np.zeros_like(gt)
                inside[box.top : box.bottom + 1, box.left : box.right + 1] = True
            click = next_click(mask, gt, ignore, None if inside is None else ~inside, inside)
            # no click the rules allow: fall back to any error
            if click is None and inside is not None:
                click = next_click(mask, gt, ignore)
            if click is None:
                break
        session.add_click(*click)
        pred = predictor.predict(session)
        mask = pred.mask
        result["ious"].append(iou(mask, gt, ignore))
        result["latency_ms"].append(pred.elapsed_ms)
        result["clicks"].append([int(click[0]), int(click[1]), bool(click[2])])
        if stop_at is not None and result["ious"][-1] >= stop_at:
            break
    if not result["ious"]:
        result["ious"].append(iou(mask, gt, ignore))
        result["latency_ms"].append(0.0)
    return result


def evaluate(
    predictor,
    items,
    protocol: str = "standard",
    max_clicks: int = 20,
    start_from_mask: bool = False,
    seed: int = 0,
    progress: bool = True,
    desc: str = "evaluate",
    jobs: int = 1,
    ignore_band: int = 0,
) -> list:
    """Run the robot user over dataset items; returns one result dict per object (name included), in
    order.

    ``predictor`` is a predictor, or a picklable function that builds one (e.g. a
    ``functools.partial`` of :func:`~napari_spbox.core.predictor.make_predictor`). With ``jobs`` > 1
    it must be the latter: each of ``jobs`` worker processes builds its own and runs one thread, and
    every object gives the same result as in one process (each object's clicks depend on that object
    alone). Latencies then share the CPU. The workers are spawned, so they import the calling
    script: guard its top level with ``if __name__ == "__main__":`` as multiprocessing requires (the
    ``spbox`` commands are). ``ignore_band`` > 0 leaves the pixels within that many px of each
    object's outline out of the IoU and the clicks (:func:`~.metrics.outline_band`).
    """
    args = [
        (k, item, protocol, max_clicks, start_from_mask, seed, ignore_band)
        for k, item in enumerate(items)
    ]
    if jobs <= 1:
        one = predictor if hasattr(predictor, "predict") else predictor()
        done = (_run_item(one, *a) for a in args)
        return [
            r for r in tqdm(done, desc=desc, total=len(args), disable=not progress) if r is not None
        ]
    if hasattr(predictor, "predict"):
        raise TypeError(
            "evaluate(jobs > 1) needs a function that builds the predictor, not a predictor"
        )
    import multiprocessing as mp

    # spawn, not fork: a forked copy of torch's or ONNX Runtime's thread pools can hang
    with mp.get_context("spawn").Pool(
        jobs, initializer=_init_worker, initargs=(predictor,)
    ) as pool:
        done = pool.imap(_run_in_worker, args)
        return [
            r for r in tqdm(done, desc=desc, total=len(args), disable=not progress) if r is not None
        ]


def _run_item(predictor, k, item, protocol, max_clicks, start_from_mask, seed, ignore_band=0):
    image, gt, ignore = item.load()
    if not gt.any():
        return None
    if ignore_band > 0:
        band = outline_band(gt, ignore_band)
        ignore = band if ignore is None else ignore | band
        gt = gt & ~band
    start = degrade_mask(gt, np.random.default_rng([seed, k])) if start_from_mask else None
    res = run_object(predictor, image, gt, ignore, protocol, max_clicks, start)
    res["name"] = item.name
    return res


_WORKER: dict = {}


def _init_worker(factory) -> None:
    import cv2

    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)  # before the predictor exists: ONNX Runtime copies the setting
    except ImportError:
        pass
    _WORKER["predictor"] = factory()


def _run_in_worker(args):
    return _run_item(_WORKER["predictor"], *args)
