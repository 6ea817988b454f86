"""Stacks (3-D, time, N-D): one 2-D slice at a time, and carrying an object from slice to slice.

The predictors work on 2-D images. For a stack the widget cuts out the slice napari shows, and
:func:`propagate` carries an object through neighbouring slices, each one started from the previous
slice's mask with :meth:`~napari_spbox.core.protocol.Session.from_mask` (the paper's correction start,
S+/S- = 255). Everything here is free of Qt, so it is tested without a viewer.

Contrast: the core stretches non-uint8 images between per-image percentiles. On a slice where the
object has gone that would blow background noise up to full contrast and the predictor would find
"an object" in it, so stack slices are scaled with limits taken once from the whole stack
(:func:`stack_limits`) and handed over as uint8, which the core only divides by 255.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from scipy import ndimage

from ..core.geometry import farthest_point, iou
from ..core.protocol import Session

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
#: Channel-menu entry of a stack: the leading axes are slices, not channels.
STACK = "stack"
#: Propagation directions offered by the widget: steps along the axis, in order.
DIRECTIONS = {"both directions": (1, -1), "forward (+)": (1,), "backward (-)": (-1,)}
#: At most this many values are sampled to estimate a stack's contrast limits.
_SAMPLE = 2_000_000


def stack_limits(volume, channel_axis: int | None = None, percentiles=(0.5, 99.5)) -> tuple[float, float]:
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
    grow_r = max(2, int(round(margin * (rows[-1] - rows[0] + 1))))
    grow_c = max(2, int(round(margin * (cols[-1] - cols[0] + 1))))
    rect = np.zeros_like(mask)
    top, bottom = max(0, rows[0] - grow_r), min(h, rows[-1] + grow_r + 1)
    rect[top:bottom, max(0, cols[0] - grow_c) : min(w, cols[-1] + grow_c + 1)] = True
    session = Session.from_mask(rect, strict=False, keep=False)  # the rectangle is a box, not a mask
    if seed:
        _, r, c = farthest_point(mask)  # the image's edge counts as the mask's boundary
        session.add_click(r, c, True)
    return session


def keep_touching(mask, previous) -> np.ndarray:
    """The connected parts of ``mask`` that overlap ``previous``: the same object, not a neighbour."""
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask.astype(bool)
    ids = np.unique(lab[np.asarray(previous, dtype=bool) & (lab > 0)])
    return np.isin(lab, ids[ids > 0])


def contrast(image, mask, ring: int = 3) -> float:
    """How much ``mask`` stands out: distance between its mean colour and that of a ``ring``-pixel band around it."""
    img = np.asarray(image, dtype=np.float32).reshape(mask.shape + (-1,))
    near = ndimage.binary_dilation(mask, iterations=ring) & ~mask
    if not mask.any() or not near.any():
        return 0.0
    return float(np.linalg.norm(img[mask].mean(axis=0) - img[near].mean(axis=0)))


def propagate(predictor, volume, start_index: int, start_mask, axis: int = 0, direction: int = +1, *,
              channel_axis: int | None = None, limits=None, min_area_ratio: float = MIN_AREA_RATIO,
              min_iou: float = MIN_IOU, min_contrast: float = MIN_CONTRAST, margin: float = BOX_MARGIN, min_area: int = 4,
              max_slices: int | None = None, stop: Callable[[], bool] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Carry an object from slice ``start_index`` to its neighbours, one slice at a time.

    Each step predicts slice ``i + direction`` from a session that starts from the previous slice's
    mask (:func:`next_session`: its box grown by ``margin``, no clicks), keeps the connected parts of
    the prediction that touch the previous mask, and yields it.

    Stop rule: propagation ends, without yielding that slice, at the first slice whose mask

    * is smaller than ``min_area_ratio`` (0.2) times the previous mask, or than ``min_area`` pixels
      (the object has vanished), or
    * has an IoU below ``min_iou`` (0.3) with the previous mask (it jumped to something else), or
    * stands out from a 3-pixel band around it (:func:`contrast`, on the stack-scaled slice) less than
      ``min_contrast`` (0.25) times the object did on the start slice (it faded into the background;
      this catches predictors that fill the box on an empty slice),

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
    start_contrast = contrast(slice_image(arr, start_index, axis, limits, channel_axis)[0], prev) if min_contrast else 0.0
    while 0 <= i < n and (max_slices is None or done < max_slices) and not (stop is not None and stop()):
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


# -- what the widget needs, without Qt ---------------------------------------------------------------
def channel_items(layer) -> list[tuple[str, object]]:
    """``(text, data)`` entries of the widget's channel menu for an image layer.

    ``data`` is ``None`` (all channels), a channel index, or :data:`STACK`. A 3-D grayscale layer is
    either ``(C, H, W)`` or ``(Z, H, W)``: a short first axis (at most 4) is taken for channels,
    a longer one for slices, and the other reading is offered too. 4-D and larger grayscale layers
    are stacks whose leading axes (channels included) are all chosen with napari's sliders.
    """
    n = layer.data.shape[-1] if layer.rgb else (layer.data.shape[0] if layer.ndim == 3 else 0)
    stack_first = not layer.rgb and (layer.ndim > 3 or n > 4)
    items = [("slices (stack)", STACK)] if stack_first else []
    if layer.ndim <= 3 or layer.rgb:
        if stack_first:  # (Z, H, W) with more than 4 planes: slices only, never "channel 0..15"
            return items
        items.append(("RGB" if layer.rgb else ("channels as RGB" if n else "gray"), None))
        items += [(f"channel {k}", k) for k in range(n)]
    if n and not layer.rgb and not stack_first:
        items.append(("slices (stack)", STACK))
    return items


def axis_items(layer, dims) -> list[tuple[str, int]]:
    """``(text, axis)`` entries for the propagation axis: the layer's leading axes, longest first."""
    labels = dims.axis_labels[dims.ndim - layer.ndim :]
    shape = (layer.data[0] if layer.multiscale else layer.data).shape

    def name(k):  # napari's default labels are numbers ("-3", "0"): say "axis 0" instead
        label = str(labels[k])
        return f"axis {k}" if label.lstrip("-").isdigit() else label

    return [(f"along {name(k)} ({shape[k]} slices)", k) for k in sorted(range(layer.ndim - 2), key=lambda k: -shape[k])]


def plane_of(layer, dims) -> tuple[int, ...]:
    """Data indices of ``layer``'s leading (not displayed) axes at the viewer's current position.

    The world position (``dims.point``) goes through the layer's own transform, so an anisotropic
    ``scale`` or a ``translate`` picks the right slice. Only views that show the layer's last two
    axes in 2-D are supported (napari's default); other orders raise ``ValueError``.
    """
    lead = layer.ndim - 2
    if lead <= 0:
        return ()
    n = dims.ndim
    if dims.ndisplay != 2 or tuple(dims.displayed) != (n - 2, n - 1):
        raise ValueError("stacks are segmented in 2-D views of their last two axes; switch to 2-D and reset the axis order")
    pos = np.asarray(layer.world_to_data(dims.point), dtype=float)
    shape = (layer.data[0] if layer.multiscale else layer.data).shape
    return tuple(int(np.clip(np.round(pos[k]), 0, shape[k] - 1)) for k in range(lead))


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
        ``(index, values, wrote)``: for ``layer.data_setitem(index, values)``; ``wrote`` is false when
        every pixel of ``mask`` lies under another object.
    """
    view = np.asarray(data[tuple(plane)])
    write = mask if overwrite else mask & ((view == 0) | (view == label))
    drop = (view == label) & ~mask
    rc = np.nonzero(write | drop)
    index = tuple(np.full(rc[0].size, p, dtype=np.intp) for p in plane) + rc
    return index, np.where(write[rc], label, 0).astype(data.dtype), bool(write.any())


def propagate_both(predictor, data, plane, axis: int, start_mask, directions=(1, -1), rgb: bool = False,
                   channel=None, **kw) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
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
        for index, mask in propagate(predictor, volume, plane[axis], start_mask, 0, direction,
                                     channel_axis=channel_axis, limits=limits, **kw):
            yield plane[:axis] + (index,) + plane[axis + 1 :], mask


class PropagationRun:
    """One propagation in a napari ``thread_worker``; each slice is written to ``target`` as it arrives.

    The GUI thread only writes finished slices; ``stop()`` ends the worker after the slice being
    predicted. Qt is imported only here, so the rest of this module works without it.

    Parameters
    ----------
    predictor : Predictor
        Used only by this run (pass a copy of the widget's predictor).
    image : napari.layers.Image
        The stack layer; ``channel`` is the widget's channel choice.
    plane, axis, mask, directions
        Start slice, axis and mask, and the directions to walk (see :func:`propagate_both`).
    target : napari.layers.Labels
        Receives object ``label`` (other ids kept unless ``overwrite``).
    on_status, on_done : callable
        ``on_status(text)`` after each slice; ``on_done(text)`` once, a text starting with "SPBox"
        when the run failed.
    """

    def __init__(self, predictor, image, channel, plane, axis, mask, directions, target, label: int,
                 overwrite: bool, on_status, on_done):
        from napari.qt.threading import thread_worker

        self.target, self.label, self.overwrite = target, int(label), overwrite
        self.done: list[tuple[int, ...]] = []
        self._on_status, self._on_done, self._error = on_status, on_done, None
        data = image.data[0] if image.multiscale else image.data
        self.worker = thread_worker(propagate_both, start_thread=False)(
            predictor, data, plane, axis, mask, directions, image.rgb, channel)
        self.worker.yielded.connect(self._write)
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(self._finished)
        on_status(f"propagating object {label}…")
        self.worker.start()

    def stop(self) -> None:
        self.worker.quit()

    def _write(self, result) -> None:
        plane, mask = result
        idx, values, _ = labels_update(self.target.data, plane, mask, self.label, self.overwrite)
        self.target.data_setitem(idx, values)
        self.done.append(plane)
        self._on_status(f"propagating object {self.label}: {len(self.done)} slices, at {plane} (Stop ends it)")

    def _failed(self, exc) -> None:
        self._error = f"SPBox: propagation failed after {len(self.done)} slices ({type(exc).__name__}: {exc})"

    def _finished(self) -> None:
        self._on_done(self._error or f"object {self.label} propagated to {len(self.done)} more slices")
