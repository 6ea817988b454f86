"""Carrying an object through a stack (3-D, time, N-D), one 2-D slice at a time; free of Qt.

The predictors work on 2-D images. :func:`propagate` carries an object through neighbouring slices,
each one started from the previous slice's mask with
:meth:`~napari_spbox.core.protocol.Session.from_mask` (the paper's correction start, S+/S- = 255).
The napari widget runs it in a worker thread; the CLI or a CVAT function can call it the same way.

Contrast: the core stretches non-uint8 images between per-image percentiles. On a slice where the
object has gone that would blow background noise up to full contrast and the predictor would find
"an object" in it, so stack slices are scaled with limits taken once from the whole stack
(:func:`stack_limits`) and handed over as uint8, which the core only divides by 255.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from scipy import ndimage

from .geometry import farthest_point, iou
from .protocol import Session

#: Stop when a slice's mask is smaller than this fraction of the previous slice's mask.
MIN_AREA_RATIO = 0.2
#: Stop when a slice's mask overlaps the previous slice's mask less than this (IoU).
MIN_IOU = 0.3
#: Stop when the object stands out from its surroundings less than this fraction of how much it did
#: on the start slice (it has faded into the background).
MIN_CONTRAST = 0.25
#: The box for the next slice is the previous mask's box grown by this fraction of its size per
#: side, so an object that widens from slice to slice is not cut at the old box.
BOX_MARGIN = 0.15
#: At most this many values are sampled to estimate a stack's contrast limits.
_SAMPLE = 2_000_000


def stack_limits(
    volume, channel_axis: int | None = None, percentiles=(0.5, 99.5)
) -> tuple[float, float]:
    """Contrast limits of a whole stack: the given percentiles of (a sample of) its values.

    Parameters
    ----------
    volume : array_like
        The stack; for uint8 the limits are ``(0, 255)``, as the core treats uint8 images.
    channel_axis : int or None
        Unused for the limits (one pair for all channels keeps their relative brightness, as the
        core does); accepted so callers can pass the same arguments everywhere.
    percentiles : tuple of float
        Low and high percentile.

    Returns
    -------
    tuple of float
        ``(low, high)`` with ``high > low``.
    """
    arr = np.asarray(volume)
    if arr.dtype == np.uint8:
        return 0.0, 255.0
    flat = arr.reshape(-1)
    # A strided sample: percentiles of a few million values are as good as of all of them.
    flat = flat[:: max(1, flat.size // _SAMPLE)].astype(np.float64)
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        raise ValueError("the stack has no finite values")
    lo, hi = (float(v) for v in np.percentile(flat, percentiles))
    return lo, (hi if hi > lo else lo + 1.0)


def scale_to_uint8(image, limits) -> np.ndarray:
    """``image`` scaled so ``limits`` map to 0 and 255, as uint8 (NaN becomes 0)."""
    lo, hi = limits
    out = (np.asarray(image, dtype=np.float32) - lo) * (255.0 / (hi - lo))
    return np.nan_to_num(np.clip(out, 0.0, 255.0), nan=0.0).astype(np.uint8)


def slice_image(volume, index: int, axis: int = 0, limits=None, channel_axis: int | None = None):
    """One 2-D slice of a stack, ready for ``predictor.set_image``.

    Parameters
    ----------
    volume : array_like
        ``(Z, H, W)``, or with one channel axis more (``channel_axis``), e.g. ``(Z, H, W, C)``.
    index : int
        Slice along ``axis``.
    axis : int
        The axis slices are taken along.
    limits : tuple of float, optional
        Contrast limits (:func:`stack_limits`); default: computed from ``volume``.
    channel_axis : int or None
        Axis of ``volume`` holding channels, or ``None``.

    Returns
    -------
    tuple
        ``(image, channel_axis)``: uint8 ``(H, W)`` with ``None``, or ``(H, W, C)`` with ``-1``.
    """
    arr = np.asarray(volume) if not hasattr(volume, "ndim") else volume
    axis = axis % arr.ndim
    if channel_axis is not None:
        channel_axis = channel_axis % arr.ndim
        if channel_axis == axis:
            raise ValueError("the slice axis cannot be the channel axis")
    plane = np.asarray(np.take(arr, int(index), axis=axis))
    if channel_axis is not None:
        plane = np.moveaxis(plane, channel_axis - (channel_axis > axis), -1)
    if plane.ndim != (3 if channel_axis is not None else 2):
        raise ValueError(f"a slice of a {arr.shape} stack along axis {axis} is not a 2-D image")
    plane = scale_to_uint8(plane, limits if limits is not None else stack_limits(arr))
    return plane, (-1 if channel_axis is not None else None)


def next_session(mask, margin: float = BOX_MARGIN, seed: bool = False) -> Session:
    """Session for the next slice: the box of ``mask`` grown by ``margin`` per side, no clicks.

    Built with :meth:`Session.from_mask` from the grown rectangle, so the start is the correction
    start (S+/S- = 255), non-strict because nobody clicks on propagated slices. ``seed`` adds one
    positive click at the point deepest inside ``mask``, the image's edge counting as boundary
    (:func:`~napari_spbox.core.geometry.farthest_point`), for predictors that cannot start from a
    box alone (the random walker needs a foreground seed).
    """
    mask = np.asarray(mask, dtype=bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    grow_r = max(2, int(round(margin * (rows[-1] - rows[0] + 1))))  # noqa: RUF046
    grow_c = max(2, int(round(margin * (cols[-1] - cols[0] + 1))))  # noqa: RUF046
    rect = np.zeros_like(mask)
    top, bottom = max(0, rows[0] - grow_r), min(h, rows[-1] + grow_r + 1)
    rect[top:bottom, max(0, cols[0] - grow_c) : min(w, cols[-1] + grow_c + 1)] = True
    # the rectangle is a box, not a mask
    session = Session.from_mask(rect, strict=False, keep=False)
    if seed:
        _, r, c = farthest_point(mask)  # the image's edge counts as the mask's boundary
        session.add_click(r, c, True)
    return session


def keep_touching(mask, previous) -> np.ndarray:
    """The connected parts of ``mask`` that overlap ``previous``: the same object, not a
    neighbour."""
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask.astype(bool)
    ids = np.unique(lab[np.asarray(previous, dtype=bool) & (lab > 0)])
    return np.isin(lab, ids[ids > 0])


def contrast(image, mask, ring: int = 3) -> float:
    """How much ``mask`` stands out: distance between its mean colour and that of a ``ring``-pixel
    band around it."""
    img = np.asarray(image, dtype=np.float32).reshape(mask.shape + (-1,))
    near = ndimage.binary_dilation(mask, iterations=ring) & ~mask
    if not mask.any() or not near.any():
        return 0.0
    return float(np.linalg.norm(img[mask].mean(axis=0) - img[near].mean(axis=0)))


def propagate(
    predictor,
    volume,
    start_index: int,
    start_mask,
    axis: int = 0,
    direction: int = +1,
    *,
    channel_axis: int | None = None,
    limits=None,
    min_area_ratio: float = MIN_AREA_RATIO,
    min_iou: float = MIN_IOU,
    min_contrast: float = MIN_CONTRAST,
    margin: float = BOX_MARGIN,
    min_area: int = 4,
    max_slices: int | None = None,
    stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Carry an object from slice ``start_index`` to its neighbours, one slice at a time.

    Each step predicts slice ``i + direction`` from a session that starts from the previous slice's
    mask (:func:`next_session`: its box grown by ``margin``, no clicks), keeps the connected parts
    of the prediction that touch the previous mask, and yields it.

    Stop rule: propagation ends, without yielding that slice, at the first slice whose mask

    * is smaller than ``min_area_ratio`` (0.2) times the previous mask, or than ``min_area`` pixels
      (the object has vanished), or
    * has an IoU below ``min_iou`` (0.3) with the previous mask (it jumped to something else), or
    * stands out from a 3-pixel band around it (:func:`contrast`, on the stack-scaled slice) less
      than ``min_contrast`` (0.25) times the object did on the start slice (it faded into the
      background; this catches predictors that fill the box on an empty slice),

    and at the end of the stack, after ``max_slices`` slices, or when ``stop()`` returns true.

    Parameters
    ----------
    predictor : Predictor
        Any predictor (``set_image`` / ``predict``); it is given each slice in turn.
    volume : array_like
        The stack: ``(Z, H, W)``, plus a channel axis when ``channel_axis`` is set.
    start_index : int
        The slice ``start_mask`` belongs to; it is not yielded.
    start_mask : array_like of bool
        ``(H, W)`` mask of the object on ``start_index``.
    axis : int
        Axis of ``volume`` to walk along.
    direction : int
        ``+1`` (increasing index) or ``-1``.
    channel_axis : int or None
        Axis of ``volume`` holding channels.
    limits : tuple of float, optional
        Contrast limits for all slices; default :func:`stack_limits` of ``volume``.
    min_area_ratio, min_iou, min_contrast, margin, min_area, max_slices, stop
        See the stop rule above.

    Yields
    ------
    tuple
        ``(index, mask)``: slice index along ``axis`` and its ``(H, W)`` boolean mask.
    """
    if direction not in (1, -1):
        raise ValueError("direction must be +1 or -1")
    prev = np.asarray(start_mask, dtype=bool)
    if not prev.any():
        raise ValueError("the start mask is empty: there is no object to propagate")
    arr = volume if hasattr(volume, "ndim") else np.asarray(volume)
    n = arr.shape[axis]
    limits = limits if limits is not None else stack_limits(arr)
    i, done = int(start_index) + direction, 0
    start_contrast = (
        contrast(slice_image(arr, start_index, axis, limits, channel_axis)[0], prev)
        if min_contrast
        else 0.0
    )
    while (
        0 <= i < n
        and (max_slices is None or done < max_slices)
        and not (stop is not None and stop())
    ):
        image, ch = slice_image(arr, i, axis, limits, channel_axis)
        if image.shape[:2] != prev.shape:
            raise ValueError(f"slice {i} is {image.shape[:2]}, the mask {prev.shape}")
        predictor.set_image(image, channel_axis=ch)
        session = next_session(prev, margin, seed=getattr(predictor, "name", "") == "random-walker")
        mask = keep_touching(predictor.predict(session).mask, prev)
        # two empty masks overlap 0 here (not geometry.iou's 1.0): nothing left is no match
        overlap = iou(mask, prev) if prev.any() else 0.0
        if mask.sum() < max(min_area, min_area_ratio * prev.sum()) or overlap < min_iou:
            return
        if min_contrast and contrast(image, mask) < min_contrast * start_contrast:
            return
        yield i, mask
        prev, i, done = mask, i + direction, done + 1


# -- a stack layer's data: one plane, one line through it, and writing a slice's object ------------
def plane_image(data, plane, rgb: bool, channel=None):
    """The 2-D image at ``plane`` of a stack layer's data, scaled with the whole stack's limits.

    Returns ``(image, channel_axis)`` for ``predictor.set_image``: ``channel`` picks one RGB
    channel; otherwise an RGB stack keeps its channels.
    """
    img = np.asarray(data[tuple(plane)])
    if rgb and channel is not None:
        img = img[..., channel]
    return scale_to_uint8(img, stack_limits(data)), (-1 if rgb and channel is None else None)


def sub_volume(data, plane, axis: int):
    """The stack through ``plane`` along leading ``axis``: the other leading axes stay fixed."""
    return data[tuple(slice(None) if k == axis else p for k, p in enumerate(plane))]


def labels_update(data, plane, mask, label: int, overwrite: bool = False):
    """Indices and values that make ``mask`` object ``label`` on slice ``plane`` of a Labels array.

    Other ids are kept unless ``overwrite``; pixels of ``label`` on that slice outside ``mask`` are
    cleared (a corrected or re-propagated object replaces its old outline).

    Returns
    -------
    tuple
        ``(index, values, wrote)``: for ``layer.data_setitem(index, values)``; ``wrote`` is false
        when every pixel of ``mask`` lies under another object.
    """
    view = np.asarray(data[tuple(plane)])
    write = mask if overwrite else mask & ((view == 0) | (view == label))
    drop = (view == label) & ~mask
    rc = np.nonzero(write | drop)
    index = tuple(np.full(rc[0].size, p, dtype=np.intp) for p in plane) + rc
    return index, np.where(write[rc], label, 0).astype(data.dtype), bool(write.any())


def propagate_both(
    predictor,
    data,
    plane,
    axis: int,
    start_mask,
    directions=(1, -1),
    rgb: bool = False,
    channel=None,
    **kw,
) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """:func:`propagate` from ``plane`` of a stack layer's data in each direction in turn.

    Runs in the widget's worker thread, so reading the stack and its limits happens there too.

    Yields
    ------
    tuple
        ``(plane, mask)``: the full leading index of each propagated slice and its mask.
    """
    volume = np.asarray(sub_volume(data, plane, axis))
    if rgb and channel is not None:
        volume = volume[..., channel]
    channel_axis = -1 if rgb and channel is None else None
    limits = stack_limits(data)
    for direction in directions:
        for index, mask in propagate(
            predictor,
            volume,
            plane[axis],
            start_mask,
            0,
            direction,
            channel_axis=channel_axis,
            limits=limits,
            **kw,
        ):
            yield plane[:axis] + (index,) + plane[axis + 1 :], mask
