"""Normalise any image napari or CVAT hands us into float RGB in [0, 1]."""

from __future__ import annotations

import numpy as np


def to_rgb_float(image, channel_axis: int | None = -1, percentiles=(0.5, 99.5)) -> np.ndarray:
    """Return ``image`` as a float32 ``(H, W, 3)`` array scaled to [0, 1].

    Parameters
    ----------
    image : array_like
        ``(H, W)`` grayscale, or ``(H, W, C)`` with any number of channels (``channel_axis`` says
        where the channels are). uint8 is divided by 255; every other dtype (uint16, float, ...)
        is stretched between the given percentiles, as napari's contrast limits would show it.
    channel_axis : int or None
        Axis holding channels for 3-D input. Ignored for 2-D input.
    percentiles : tuple of float
        Low/high percentiles used for non-uint8 input.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(H, W, 3)``. One channel is repeated three times; two channels are shown
        as red/green with an empty blue; more than three keep the first three.

    Raises
    ------
    ValueError
        For empty images, images with more than one spatial plane, or non-finite values only.
    """
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 3 and channel_axis is not None:
        arr = np.moveaxis(arr, channel_axis, -1)
    elif arr.ndim == 2:
        arr = arr[..., None]
    else:
        raise ValueError(f"expected a 2-D image (H, W) or (H, W, C), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"image has no pixels (shape {arr.shape})")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"image dtype {arr.dtype} is not numeric")
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    else:
        out = _stretch(arr.astype(np.float32), percentiles)
    c = out.shape[2]
    if c == 1:
        out = np.repeat(out, 3, axis=2)
    elif c == 2:
        out = np.concatenate([out, np.zeros_like(out[..., :1])], axis=2)
    elif c > 3:
        out = out[..., :3]
    return np.ascontiguousarray(out, dtype=np.float32)


def _stretch(arr: np.ndarray, percentiles) -> np.ndarray:
    finite = np.isfinite(arr)
    if not finite.any():
        raise ValueError("image has no finite values")
    arr = np.where(finite, arr, np.nan)
    # One pair of limits for all channels keeps their relative brightness, like napari's RGB view.
    lo, hi = np.nanpercentile(arr, percentiles)
    if hi <= lo:
        hi = lo + 1.0
    return np.nan_to_num(np.clip((arr - lo) / (hi - lo), 0.0, 1.0), nan=0.0)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Convert a float image in [0, 1] (as from :func:`to_rgb_float`) to uint8."""
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
