"""Mask geometry shared by the evaluation, the training simulation and the napari stacks.

One copy of each helper, numpy and scipy only (no torch, no Qt), so that the robot user, the
simulated clicks and the slice propagation cannot drift apart.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def iou(a: np.ndarray, b: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union of two bool masks, the pixels in ``ignore`` left out.

    Parameters
    ----------
    a, b : array_like of bool
        The two masks, of the same shape.
    ignore : array_like of bool, optional
        Pixels counted in neither the intersection nor the union.

    Returns
    -------
    float
        ``|a & b| / |a | b|`` over the pixels not ignored; 1.0 when both masks are empty there
        (nothing to find, nothing wrong).

    Examples
    --------
    >>> a = np.array([[1, 1, 0, 0]], dtype=bool)
    >>> b = np.array([[0, 1, 1, 0]], dtype=bool)
    >>> print(iou(a, b))
    0.3333333333333333
    >>> print(iou(a, b, ignore=np.array([[1, 0, 0, 0]], dtype=bool)))
    0.5
    >>> print(iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)))
    1.0
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if ignore is not None:
        keep = ~np.asarray(ignore, bool)
        a, b = a & keep, b & keep
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def boundary_distance(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel of ``region`` to the nearest pixel outside it.

    The image's edge counts as boundary: the region is padded with one background pixel on every
    side before :func:`scipy.ndimage.distance_transform_edt`, so a pixel on the edge is 1 px deep.
    Pixels outside the region are 0.

    Examples
    --------
    >>> region = np.zeros((3, 5), bool)
    >>> region[:, :4] = True
    >>> boundary_distance(region)
    array([[1., 1., 1., 1., 0.],
           [1., 2., 2., 1., 0.],
           [1., 1., 1., 1., 0.]])
    """
    return ndimage.distance_transform_edt(np.pad(np.asarray(region, bool), 1))[1:-1, 1:-1]


def farthest_point(region: np.ndarray):
    """The pixel of ``region`` farthest from its boundary (the image's edge included).

    Parameters
    ----------
    region : array_like of bool
        ``(H, W)`` mask.

    Returns
    -------
    tuple
        ``(distance, row, col)``: the distance (float, :func:`boundary_distance`) and the first such
        pixel in row-major order; ``(0.0, None, None)`` when ``region`` is empty.

    Examples
    --------
    >>> region = np.zeros((5, 6), bool)
    >>> region[1:4, 1:4] = True
    >>> farthest_point(region)
    (2.0, 2, 2)

    A region that runs off the image is not deepest at the edge: the edge is boundary too.

    >>> region = np.zeros((4, 6), bool)
    >>> region[:, :3] = True
    >>> farthest_point(region)
    (2.0, 1, 1)
    >>> farthest_point(np.zeros((2, 2), bool))
    (0.0, None, None)
    """
    region = np.asarray(region, bool)
    if not region.any():
        return 0.0, None, None
    dt = boundary_distance(region)
    r, c = np.unravel_index(np.argmax(dt), dt.shape)
    return float(dt[r, c]), int(r), int(c)
