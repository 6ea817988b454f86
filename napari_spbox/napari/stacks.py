"""Stacks in the napari widget: the channel and axis menus, the slice napari shows, and a
propagation run in a worker thread. The propagation itself is Qt-free, in
:mod:`napari_spbox.core.propagation`.
"""

from __future__ import annotations

import numpy as np

from ..core.propagation import labels_update, propagate_both

#: Channel-menu entry of a stack: the leading axes are slices, not channels.
STACK = "stack"
#: Propagation directions offered by the widget: steps along the axis, in order.
DIRECTIONS = {"both directions": (1, -1), "forward (+)": (1,), "backward (-)": (-1,)}


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
    """``(text, axis)`` entries for the propagation axis: the layer's leading axes, longest
    first."""
    labels = dims.axis_labels[dims.ndim - layer.ndim :]
    shape = (layer.data[0] if layer.multiscale else layer.data).shape

    def name(k):  # napari's default labels are numbers ("-3", "0"): say "axis 0" instead
        label = str(labels[k])
        return f"axis {k}" if label.lstrip("-").isdigit() else label

    return [
        (f"along {name(k)} ({shape[k]} slices)", k)
        for k in sorted(range(layer.ndim - 2), key=lambda k: -shape[k])
    ]


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
        raise ValueError(
            "stacks are segmented in 2-D views of their last two axes; "
            "switch to 2-D and reset the axis order"
        )
    pos = np.asarray(layer.world_to_data(dims.point), dtype=float)
    shape = (layer.data[0] if layer.multiscale else layer.data).shape
    return tuple(int(np.clip(np.round(pos[k]), 0, shape[k] - 1)) for k in range(lead))


class PropagationRun:
    """One propagation in a napari ``thread_worker``; each slice is written to ``target`` as it
    arrives.

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

    def __init__(
        self,
        predictor,
        image,
        channel,
        plane,
        axis,
        mask,
        directions,
        target,
        label: int,
        overwrite: bool,
        on_status,
        on_done,
    ):
        from napari.qt.threading import thread_worker

        self.target, self.label, self.overwrite = target, int(label), overwrite
        self.done: list[tuple[int, ...]] = []
        self._on_status, self._on_done, self._error = on_status, on_done, None
        data = image.data[0] if image.multiscale else image.data
        self.worker = thread_worker(propagate_both, start_thread=False)(
            predictor, data, plane, axis, mask, directions, image.rgb, channel
        )
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
        self._on_status(
            f"propagating object {self.label}: {len(self.done)} slices, at {plane} (Stop ends it)"
        )

    def _failed(self, exc) -> None:
        self._error = (
            f"SPBox: propagation failed after {len(self.done)} slices ({type(exc).__name__}: {exc})"
        )

    def _finished(self) -> None:
        self._on_done(
            self._error or f"object {self.label} propagated to {len(self.done)} more slices"
        )
