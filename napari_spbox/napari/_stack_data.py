"""A small generated microscopy stack for the napari plugin: no download, the same on every run."""

from __future__ import annotations

import numpy as np

#: ``(centre z, centre y, centre x, semi-axis z, semi-axis y, semi-axis x, channel)`` of each cell.
#: Channel 0 holds "nuclei", channel 1 larger, dimmer "cells"; all stay inside a 16x128x128 stack.
_CELLS = (
    (7.5, 40.0, 42.0, 4.5, 18.0, 15.0, 0),
    (5.0, 90.0, 38.0, 3.5, 12.0, 14.0, 0),
    (10.0, 64.0, 96.0, 4.0, 16.0, 20.0, 0),
    (3.5, 100.0, 100.0, 2.5, 10.0, 10.0, 0),
    (8.0, 60.0, 60.0, 6.0, 30.0, 34.0, 1),
    (11.5, 24.0, 104.0, 3.0, 14.0, 12.0, 1),
)


def blobs3d(shape=(16, 128, 128), seed: int = 0, return_labels: bool = False):
    """Two-channel uint16 stack of ellipsoidal cells with photon (Poisson) noise.

    Parameters
    ----------
    shape : tuple of int
        ``(Z, Y, X)``; the cells are placed for the default shape and scaled with it.
    seed : int
        Seed of the noise; the same seed gives the same stack.
    return_labels : bool
        Also return the ground-truth objects.

    Returns
    -------
    numpy.ndarray or tuple
        ``(Z, 2, Y, X)`` uint16 (about 1 MB for the default shape); with ``return_labels`` also a
        ``(2, Z, Y, X)`` uint8 array: per channel, cell ``k`` (1-based, in channel order) is ``k``.
    """
    z, y, x = (int(s) for s in shape)
    sz, sy, sx = z / 16.0, y / 128.0, x / 128.0
    zz, yy, xx = np.ogrid[:z, :y, :x]
    signal = np.zeros((2, z, y, x), np.float32)
    labels = np.zeros((2, z, y, x), np.uint8)
    for cz, cy, cx, az, ay, ax, ch in _CELLS:
        r2 = (
            ((zz - cz * sz) / (az * sz)) ** 2
            + ((yy - cy * sy) / (ay * sy)) ** 2
            + ((xx - cx * sx) / (ax * sx)) ** 2
        )
        inside = r2 <= 1.0
        labels[ch][inside] = labels[ch].max() + 1
        # A soft edge, as out-of-focus light gives, so the boundary is not a perfect step.
        signal[ch] = np.maximum(signal[ch], np.clip(1.3 - r2, 0.0, 1.0).astype(np.float32))
    rng = np.random.default_rng(seed)
    # Typical camera counts: an offset, a dim background and a few hundred photons in the cells.
    expected = np.stack([100.0 + 400.0 * signal[0], 60.0 + 150.0 * signal[1]])
    stack = (500 + rng.poisson(expected)).astype(np.uint16)
    stack = np.ascontiguousarray(np.moveaxis(stack, 0, 1))  # (Z, C, Y, X), as microscopes write it
    return (stack, labels) if return_labels else stack


def blobs3d_sample():
    """napari sample: the :func:`blobs3d` stack as two channel layers, anisotropic (z step 2x the
    pixel).

    Returns
    -------
    list of tuple
        One layer-data tuple; napari splits it into one image layer per channel.
    """
    return [
        (
            blobs3d(),
            {
                "name": ["nuclei", "cells"],
                "channel_axis": 1,
                "scale": (2.0, 1.0, 1.0),
                "colormap": ["magenta", "green"],
                "blending": "additive",
            },
            "image",
        )
    ]
