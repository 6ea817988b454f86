"""Clean-ups of a finished mask that a front-end applies before showing it (not in the paper)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .protocol import Session


def keep_clicked_components(
    mask: np.ndarray, session: Session, start_mask: np.ndarray | None = None
) -> np.ndarray:
    """The connected parts of ``mask`` that a positive click (or the mask being corrected) supports.

    A stray speck beside the object (a spoon's highlight next to a cup) is not what the user asked
    for; the parts that hold a positive click, or overlap ``start_mask`` in correction mode, are
    kept. A session with no positive click (a box alone) keeps everything: the box is its only
    support.

    Parameters
    ----------
    mask : numpy.ndarray
        Bool ``(H, W)`` mask, as predicted.
    session : Session
        The clicks behind it.
    start_mask : numpy.ndarray, optional
        The object being corrected (correction mode).

    Returns
    -------
    numpy.ndarray
        A bool copy of ``mask`` without unsupported parts.

    Examples
    --------
    >>> from napari_spbox.core.protocol import Session
    >>> m = np.zeros((4, 6), bool); m[:2, :2] = True; m[3, 5] = True
    >>> s = Session((4, 6), strict=False); _ = s.add_click(0, 0, True)
    >>> keep_clicked_components(m, s).astype(int)
    array([[1, 1, 0, 0, 0, 0],
           [1, 1, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0]])
    """
    mask = np.asarray(mask, dtype=bool)
    positives = [c for c in session.clicks if c.positive]
    if not positives or not mask.any():
        return mask.copy()
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    keep = np.zeros(n + 1, dtype=bool)
    keep[[labels[c.row, c.col] for c in positives]] = True
    if start_mask is not None:
        keep[np.unique(labels[np.asarray(start_mask, dtype=bool)])] = True
    keep[0] = False
    return keep[labels]
