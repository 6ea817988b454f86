"""Guidance maps: the paper's Eq. 1 (S+/S-), Eq. 2-6 (superpixel box G) and the ablation variants.

Every map is ``(H, W)`` float32. Distance maps are in pixels truncated at 255; box maps are 0/1.
:func:`guidance_stack` turns a :class:`~napari_spbox.core.protocol.Session` into the three network
channels; training and inference both call it, so the two cannot drift apart.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial.distance import cdist

from .protocol import Box, Session
from .superpixels import Superpixels

TRUNCATE = 255.0

#: Named guidance variants: (click encoding, box encoding). ``spbox`` is the paper's model; the
#: others are the ablations of Table 1 (EU = Euclidean click maps and no box, as in iFCN).
VARIANTS = {
    "spbox": ("superpixel", "spbox"),
    "bbox": ("superpixel", "bbox"),
    "dt": ("superpixel", "dt"),
    "eu": ("euclidean", "none"),
}


def click_superpixels(sp: Superpixels, clicks) -> np.ndarray:
    """Indices of the superpixels holding the clicks: {z} = f_Z^p({c}) (Sec. 3.2)."""
    if not clicks:
        return np.zeros(0, dtype=np.int64)
    rows = np.array([c.row for c in clicks])
    cols = np.array([c.col for c in clicks])
    return np.unique(sp.labels[rows, cols]).astype(np.int64)


def _paint(values: np.ndarray, sp: Superpixels, window: Box | None) -> np.ndarray:
    """Per-superpixel values onto pixels, of the whole image or only of ``window``."""
    labels = (
        sp.labels
        if window is None
        else sp.labels[window.top : window.bottom + 1, window.left : window.right + 1]
    )
    return values[labels]


def _crop(image: np.ndarray, window: Box | None) -> np.ndarray:
    return (
        image
        if window is None
        else image[window.top : window.bottom + 1, window.left : window.right + 1]
    )


def superpixel_distance_map(
    sp: Superpixels, clicks, truncate: float = TRUNCATE, window: Box | None = None
) -> np.ndarray:
    """Superpixel guidance map S_Z (Eq. 1).

    S_Z(p) = min over clicked superpixels z of d_2^c(z, f_Z^p(p)): the Euclidean distance between
    the centroid of p's superpixel and the nearest centroid of a clicked superpixel, truncated at
    255. Computed once per superpixel (an ``n x k`` centroid distance matrix), then painted onto
    pixels. With no clicks every pixel is 255. ``window`` paints only that part of the image.

    Examples
    --------
    An 8 x 8 image cut into a 4 x 4 grid of 2 x 2 superpixels: superpixel (i, j) has its centroid at
    (2i + 0.5, 2j + 0.5). A click in superpixel (0, 0) puts superpixel (i, j) at 2 hypot(i, j):

    >>> from napari_spbox.core.protocol import Box, Click
    >>> sp = Superpixels.from_labels(np.arange(16).reshape(4, 4).repeat(2, 0).repeat(2, 1))
    >>> s = superpixel_distance_map(sp, [Click(0, 1, True)])
    >>> s.shape
    (8, 8)
    >>> print(s[::2, ::2].round(2))  # one pixel per superpixel; all 4 of its pixels are the same
    [[0.   2.   4.   6.  ]
     [2.   2.83 4.47 6.32]
     [4.   4.47 5.66 7.21]
     [6.   6.32 7.21 8.49]]

    With a second click in superpixel (3, 3) each superpixel takes the nearer of the two:

    >>> s = superpixel_distance_map(sp, [Click(0, 1, True), Click(7, 6, True)])
    >>> print(s[::2, ::2].round(2))
    [[0.   2.   4.   6.  ]
     [2.   2.83 4.47 4.  ]
     [4.   4.47 2.83 2.  ]
     [6.   4.   2.   0.  ]]
    >>> float(superpixel_distance_map(sp, []).min())  # no click: 255 everywhere
    255.0
    """
    clicked = click_superpixels(sp, clicks)
    if clicked.size == 0:
        per_sp = np.full(sp.n, truncate, dtype=np.float32)
    else:
        per_sp = np.minimum(
            cdist(sp.centroids, sp.centroids[clicked]).min(axis=1), truncate
        ).astype(np.float32)
    return _paint(per_sp, sp, window)


def box_superpixels(sp: Superpixels, box: Box | None) -> np.ndarray:
    """Membership of {Z_b} (Eq. 2): superpixels lying on or inside the box, as a bool per
    superpixel.

    "On or inside" is read as "has at least one pixel in the box", so superpixels crossing the box
    edge are taken whole and G follows image edges rather than the box outline. ``None`` (no box
    yet) means no localisation: every superpixel is in.

    Examples
    --------
    On the 4 x 4 grid of 2 x 2 superpixels, a box over rows 1-4 and columns 1-2 touches superpixel
    rows 0-2 (pixel rows 0-1, 2-3, 4-5) and columns 0-1 (pixel columns 0-1, 2-3), each taken whole:

    >>> from napari_spbox.core.protocol import Box, Click
    >>> sp = Superpixels.from_labels(np.arange(16).reshape(4, 4).repeat(2, 0).repeat(2, 1))
    >>> print(box_superpixels(sp, Box(1, 1, 4, 2)).reshape(4, 4).astype(int))
    [[1 1 0 0]
     [1 1 0 0]
     [1 1 0 0]
     [0 0 0 0]]
    >>> bool(box_superpixels(sp, None).all())
    True
    """
    member = np.zeros(sp.n, dtype=bool)
    if box is None:
        member[:] = True
        return member
    member[np.unique(sp.labels[box.top : box.bottom + 1, box.left : box.right + 1])] = True
    return member


def refined_box_superpixels(
    sp: Superpixels, box: Box | None, extra_positive=(), extra_negative=()
) -> np.ndarray:
    """Membership of {Z-hat_b} = {Z_b} ∪ {z+_{i!=0}} \\ {z-_{i!=0}} (Eq. 3-5), a bool per
    superpixel."""
    member = box_superpixels(sp, box)
    member[click_superpixels(sp, list(extra_positive))] = True
    member[click_superpixels(sp, list(extra_negative))] = False
    return member


def superpixel_box_map(
    sp: Superpixels,
    box: Box | None,
    extra_positive=(),
    extra_negative=(),
    window: Box | None = None,
) -> np.ndarray:
    """Superpixel-box guidance G-hat (Eq. 6): 1 where p's superpixel is in {Z-hat_b} (Eq. 3-5).

    With no extra clicks this is G of Eq. 2. ``window`` paints only that part of the image.

    Examples
    --------
    The box of :func:`box_superpixels`' example (superpixel rows 0-2, columns 0-1); an extra
    positive click adds superpixel (3, 3) (Eq. 3), an extra negative one removes (0, 0) (Eq. 4):

    >>> from napari_spbox.core.protocol import Box, Click
    >>> sp = Superpixels.from_labels(np.arange(16).reshape(4, 4).repeat(2, 0).repeat(2, 1))
    >>> g = superpixel_box_map(sp, Box(1, 1, 4, 2), [Click(7, 7, True)], [Click(0, 0, False)])
    >>> print(g.astype(int))
    [[0 0 1 1 0 0 0 0]
     [0 0 1 1 0 0 0 0]
     [1 1 1 1 0 0 0 0]
     [1 1 1 1 0 0 0 0]
     [1 1 1 1 0 0 0 0]
     [1 1 1 1 0 0 0 0]
     [0 0 0 0 0 0 1 1]
     [0 0 0 0 0 0 1 1]]
    """
    member = refined_box_superpixels(sp, box, extra_positive, extra_negative)
    return _paint(member.astype(np.float32), sp, window)


def session_box_superpixels(sp: Superpixels, session: Session) -> np.ndarray:
    """{Z-hat_b} of a session: its box refined by the clicks after the opening pair (Eq. 3-5)."""
    extra = session.extra_clicks
    return refined_box_superpixels(
        sp, session.box, [c for c in extra if c.positive], [c for c in extra if not c.positive]
    )


def euclidean_distance_map(shape, clicks, truncate: float = TRUNCATE) -> np.ndarray:
    """EU ablation: per-pixel Euclidean distance to the nearest click, truncated at 255 (iFCN)."""
    if not clicks:
        return np.full(shape[:2], truncate, dtype=np.float32)
    seeds = np.ones(shape[:2], dtype=bool)
    seeds[[c.row for c in clicks], [c.col for c in clicks]] = False
    return np.minimum(ndimage.distance_transform_edt(seeds), truncate).astype(np.float32)


def box_map(shape, box: Box | None) -> np.ndarray:
    """BBox ablation: 1 inside the rectilinear box between e0 and e1, 0 outside (all 1 without a
    box)."""
    if box is None:
        return np.ones(shape[:2], dtype=np.float32)
    out = np.zeros(shape[:2], dtype=np.float32)
    out[box.top : box.bottom + 1, box.left : box.right + 1] = 1.0
    return out


def box_distance_map(shape, box: Box | None, truncate: float = TRUNCATE) -> np.ndarray:
    """DT ablation: distance transform of the BBox, as 1 - min(d, 255) / 255 (1 inside, fading
    outside)."""
    inside = box_map(shape, box)
    if box is None:
        return inside
    d = ndimage.distance_transform_edt(inside == 0)
    return (1.0 - np.minimum(d, truncate) / truncate).astype(np.float32)


def guidance_stack(
    sp: Superpixels, session: Session, variant: str = "spbox", window: Box | None = None
) -> np.ndarray:
    """The three guidance channels (S+, S-, G) for a session, as float32 ``(H, W, 3)`` in [0, 1].

    S+ and S- are divided by 255; G (or its ablation) is already 0..1. This is the one function that
    turns clicks into network input, for training and inference alike. With ``window`` only that
    crop is returned (superpixel maps are painted only there, so large images stay cheap).
    """
    try:
        click_kind, box_kind = VARIANTS[variant]
    except KeyError:
        raise ValueError(
            f"unknown guidance variant {variant!r}; choose one of {sorted(VARIANTS)}"
        ) from None
    pos, neg = session.positives, session.negatives
    if click_kind == "superpixel":
        s_pos, s_neg = (
            superpixel_distance_map(sp, pos, window=window),
            superpixel_distance_map(sp, neg, window=window),
        )
    else:
        s_pos = _crop(euclidean_distance_map(sp.shape, pos), window)
        s_neg = _crop(euclidean_distance_map(sp.shape, neg), window)
    if box_kind == "spbox":
        g = _paint(session_box_superpixels(sp, session).astype(np.float32), sp, window)
    elif box_kind == "bbox":
        g = _crop(box_map(sp.shape, session.box), window)
    elif box_kind == "dt":
        g = _crop(box_distance_map(sp.shape, session.box), window)
    else:
        g = np.ones(s_pos.shape, dtype=np.float32)
    return np.stack([s_pos / TRUNCATE, s_neg / TRUNCATE, g], axis=-1).astype(np.float32)
