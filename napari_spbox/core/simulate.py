"""Simulated user clicks for training (paper Sec. 3.4) and guidance dropout (Sec. 4.2).

Everything draws from a ``numpy.random.Generator`` passed in, so a seed reproduces a sample exactly.
The clicks are fed through a non-strict :class:`Session`, so the box is built by the very rule the
front-ends use (:func:`~napari_spbox.core.protocol.box_from_pair`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .geometry import boundary_distance, farthest_point
from .protocol import Box, Click, Session, box_from_pair
from .superpixels import Superpixels


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two inclusive pixel boxes."""
    ih = min(a.bottom, b.bottom) - max(a.top, b.top) + 1
    iw = min(a.right, b.right) - max(a.left, b.left) + 1
    inter = max(0, ih) * max(0, iw)
    return inter / float(a.height * a.width + b.height * b.width - inter)


def centre_click(
    mask: np.ndarray, rng: np.random.Generator, displacement=(20, 50), tries: int = 30
) -> Click:
    """First positive click: the mask centroid, moved inside for concave shapes, displaced 20-50 px.

    The displaced click must stay in the object; if no try lands inside (a small object), the
    largest displacement that does is used, down to none.
    """
    rows, cols = np.nonzero(mask)
    r, c = int(round(rows.mean())), int(round(cols.mean()))  # noqa: RUF046
    if not mask[r, c]:
        _, r, c = farthest_point(mask)
    lo, hi = displacement
    for scale in (1.0, 0.5, 0.25):
        for _ in range(tries):
            rad, ang = rng.uniform(lo, hi) * scale, rng.uniform(0, 2 * np.pi)
            rr, cc = int(round(r + rad * np.sin(ang))), int(round(c + rad * np.cos(ang)))  # noqa: RUF046
            if 0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1] and mask[rr, cc]:
                return Click(rr, cc, True)
    return Click(r, c, True)


def negative_click_distance(r1: float, r2: float, width: int, height: int) -> float:
    """How far from the centre click the first negative click lands (paper Eq. 7).

    The paper draws d = (r1 - r2) w + (1 + r2) h, with r1 ~ U(0, 1) and r2 ~ N(0, 1), for an object
    box of width w and height h. We read d as the diagonal of the box the click pair spans, so the
    negative click lies |d| / 2 from the centre click (:func:`first_negative`).

    Examples
    --------
    A 4 x 4 object box: with r2 = 0 the pair spans a box of 4 + 4 r1 pixels' diagonal,

    >>> negative_click_distance(0.5, 0.0, 4, 4)
    3.0
    >>> negative_click_distance(1.0, -1.0, 4, 4)  # (2 * 4 + 0 * 4) / 2
    4.0
    """
    return abs((r1 - r2) * width + (1 + r2) * height) / 2.0


def first_negative(
    mask: np.ndarray,
    positive: Click,
    rng: np.random.Generator,
    min_iou: float = 0.7,
    tries: int = 60,
):
    """First negative click, just outside the object (Eq. 7).

    The negative lands :func:`negative_click_distance` (Eq. 7) from the centre click, towards a
    random corner of the object's box (angle jittered by up to 20 degrees), on a background pixel.
    Pairs whose box (by :func:`box_from_pair`) has IoU >= ``min_iou`` with the object's box are
    kept; if no try qualifies the best one is used.

    Returns
    -------
    (Click, float)
        The negative click and the IoU of its box with the object's box.
    """
    gt = Box.from_mask(mask)
    h, w = gt.height, gt.width
    corners = [(gt.top, gt.left), (gt.top, gt.right), (gt.bottom, gt.left), (gt.bottom, gt.right)]
    best, best_iou = None, -1.0
    for _ in range(tries):
        r1, r2 = rng.uniform(0, 1), rng.normal(0, 1)
        d = negative_click_distance(r1, r2, w, h)
        cr, cc = corners[rng.integers(4)]
        ang = np.arctan2(cr - positive.row, cc - positive.col) + np.deg2rad(rng.uniform(-20, 20))
        nr, nc = (
            int(round(positive.row + d * np.sin(ang))),  # noqa: RUF046
            int(round(positive.col + d * np.cos(ang))),  # noqa: RUF046
        )
        if not (0 <= nr < mask.shape[0] and 0 <= nc < mask.shape[1]) or mask[nr, nc]:
            continue
        neg = Click(nr, nc, False)
        iou = box_iou(box_from_pair(positive, neg, mask.shape), gt)
        if iou >= min_iou:
            return neg, iou
        if iou > best_iou:
            best, best_iou = neg, iou
    if best is None:  # the object fills the image around the click: take the corner outside it
        cr, cc = corners[rng.integers(4)]
        best = Click(
            int(np.clip(cr, 0, mask.shape[0] - 1)), int(np.clip(cc, 0, mask.shape[1] - 1)), False
        )
        best_iou = box_iou(box_from_pair(positive, best, mask.shape), gt)
    return best, best_iou


def first_pair(mask: np.ndarray, rng: np.random.Generator, min_iou: float = 0.7, tries: int = 30):
    """Centre click and first negative whose box has IoU >= ``min_iou`` with the object's box.

    A displaced centre click can make every box fail the IoU test, so the pair is drawn again (up to
    ``tries`` times); the best pair seen is used if none qualifies.
    """
    best, best_iou = None, -1.0
    for _ in range(tries):
        pos = centre_click(mask, rng)
        neg, iou = first_negative(mask, pos, rng, min_iou)
        if iou >= min_iou:
            return pos, neg
        if iou > best_iou:
            best, best_iou = (pos, neg), iou
    return best


def _pick_superpixel_clicks(
    sp: Superpixels, candidates: np.ndarray, allowed: np.ndarray, k: int, positive, rng
) -> list:
    """Click on ``k`` random candidate superpixels, at their allowed pixel nearest the centroid."""
    if candidates.size == 0 or k <= 0:
        return []
    chosen = rng.choice(candidates, size=min(k, candidates.size), replace=False)
    clicks = []
    for z in chosen:
        rows, cols = np.nonzero((sp.labels == z) & allowed)
        if rows.size == 0:
            continue
        i = np.argmin((rows - sp.centroids[z, 0]) ** 2 + (cols - sp.centroids[z, 1]) ** 2)
        clicks.append(Click(int(rows[i]), int(cols[i]), positive))
    return clicks


def _fraction_in_mask(sp: Superpixels, mask: np.ndarray) -> np.ndarray:
    count = np.bincount(sp.labels.ravel(), minlength=sp.n)
    inside = np.bincount(sp.labels.ravel(), weights=mask.ravel().astype(np.float64), minlength=sp.n)
    return inside / np.maximum(count, 1)


def _sample_pixel(weights: np.ndarray, rng: np.random.Generator):
    flat = weights.ravel()
    total = flat.sum()
    if total <= 0:
        return None
    i = rng.choice(flat.size, p=flat / total)
    return divmod(int(i), weights.shape[1])


def robot_like_session(mask: np.ndarray, rng: np.random.Generator, max_extra: int = 8) -> Session:
    """Clicks as the field's standard robot user leaves them, without running a model.

    The first positive is near the point farthest from the boundary; then 0-``max_extra`` clicks in
    random order: positives on the object, weighted by their distance to its boundary, and negatives
    on background near the object (its box grown by half its size), weighted towards the object. The
    first negative sets the box by the usual rule, positives outside grow it, so the model learns
    the states the standard evaluation protocol produces, not only the paper's.
    """
    session = Session(mask.shape, strict=False)
    _add_robot_clicks(session, mask, rng, max_extra)
    return session


def boxed_session(
    mask: np.ndarray,
    rng: np.random.Generator,
    jitter: float = 0.12,
    p_exact: float = 0.25,
    max_extra: int = 5,
) -> Session:
    """A box given before any click, and every click a corrective one.

    This is the state of correction mode (the box of an existing mask), of a box drawn by two
    corners, and of the predictor's implied box (:func:`~napari_spbox.core.predictor.implied_box`:
    the box of a first whole-image mask, which may miss part of the object or take in a neighbour).
    None of them come from :func:`simulate_session`'s click pair, so the network met them only at
    inference. The box is the object's own with probability ``p_exact``, else each side moves in or
    out by a normal draw of ``jitter`` times the object's size; then come standard-robot-like clicks
    (:func:`robot_like_session`), up to ``max_extra`` after the first positive.
    """
    gt = Box.from_mask(mask)
    box = gt
    if rng.uniform() >= p_exact:
        h, w = gt.height, gt.width
        t, l, b, r = (rng.normal(0, jitter, 4) * [h, w, h, w]).round().astype(int).tolist()
        top, left = gt.top + t, gt.left + l
        box = Box(top, left, max(top, gt.bottom + b), max(left, gt.right + r)).clip(mask.shape)
    session = Session(mask.shape, strict=False, box=box, start="box")
    _add_robot_clicks(session, mask, rng, max_extra)
    return session


def _add_robot_clicks(
    session: Session, mask: np.ndarray, rng: np.random.Generator, max_extra: int
) -> None:
    # the pixel farthest_point picks, from the map that also weighs the extra positives below
    inside = boundary_distance(mask)
    r, c = np.unravel_index(np.argmax(inside), mask.shape)
    for _ in range(10):  # a little jitter, staying in the object
        rr, cc = int(r + rng.integers(-8, 9)), int(c + rng.integers(-8, 9))
        if 0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1] and mask[rr, cc]:
            r, c = rr, cc
            break
    session.add_click(int(r), int(c), True)
    gt = Box.from_mask(mask)
    near = np.zeros_like(mask)
    near[
        max(0, gt.top - gt.height // 2) : gt.bottom + gt.height // 2 + 1,
        max(0, gt.left - gt.width // 2) : gt.right + gt.width // 2 + 1,
    ] = True
    outside = ndimage.distance_transform_edt(~mask)
    neg_weight = np.where(near & ~mask, 1.0 / (1.0 + outside), 0.0)
    for _ in range(rng.integers(0, max_extra + 1)):
        positive = rng.uniform() < 0.5
        pix = _sample_pixel(inside if positive else neg_weight, rng)
        if pix is not None:
            session.add_click(pix[0], pix[1], positive)


def simulate_session(
    mask: np.ndarray,
    sp: Superpixels,
    rng: np.random.Generator,
    p_single: float = 0.1,
    p_pair_only: float = 0.1,
    p_free: float = 0.3,
    p_robot: float = 0.0,
    n_extra=(2, 5),
    p_boxed: float = 0.0,
) -> Session:
    """Simulate the clicks for one training sample (Sec. 3.4) as a non-strict :class:`Session`.

    * centre positive and first negative (:func:`first_pair`) set the box;
    * with probability ``p_single`` only the centre click is given, with ``p_pair_only`` only the
      pair (Sec. 4.2: robustness to the number of clicks);
    * otherwise 2-5 extra positive superpixels outside the box and 2-5 negative superpixels inside
      it (each kind present half of the time). With probability ``p_free`` the extra clicks ignore
      the box rule (positives anywhere on the object, negatives on nearby background), as the
      field's standard robot user clicks, so one model serves both protocols;
    * with probability ``p_robot`` the whole session is :func:`robot_like_session` instead, and with
      ``p_boxed`` it is :func:`boxed_session` (a box before any click).
    """
    mask = np.asarray(mask, dtype=bool)
    kind = rng.uniform()
    if kind < p_robot:
        return robot_like_session(mask, rng)
    if kind < p_robot + p_boxed:
        return boxed_session(mask, rng)
    session = Session(mask.shape, strict=False)
    u = rng.uniform()
    if u < p_single:
        pos = centre_click(mask, rng)
        session.add_click(pos.row, pos.col, True)
        return session
    pos, neg = first_pair(mask, rng)
    session.add_click(pos.row, pos.col, True)
    session.add_click(neg.row, neg.col, False)
    if u < p_single + p_pair_only:
        return session
    frac = _fraction_in_mask(sp, mask)
    free = rng.uniform() < p_free
    lo, hi = n_extra
    if rng.uniform() < 0.5:
        cy, cx = sp.centroids[:, 0], sp.centroids[:, 1]
        b = session.box
        outside = ~((cy >= b.top) & (cy <= b.bottom) & (cx >= b.left) & (cx <= b.right))
        cand = np.flatnonzero((frac > 0.5) & (True if free else outside))
        for c in _pick_superpixel_clicks(sp, cand, mask, rng.integers(lo, hi + 1), True, rng):
            session.add_click(c.row, c.col, True)
    if rng.uniform() < 0.5:
        b = session.box
        cy, cx = sp.centroids[:, 0], sp.centroids[:, 1]
        if free:  # background near the object: within one object size of its box
            gt = Box.from_mask(mask)
            mh, mw = gt.height, gt.width
            b = Box(gt.top - mh, gt.left - mw, gt.bottom + mh, gt.right + mw)
        inside = (cy >= b.top) & (cy <= b.bottom) & (cx >= b.left) & (cx <= b.right)
        cand = np.flatnonzero((frac < 0.2) & inside)
        for c in _pick_superpixel_clicks(sp, cand, ~mask, rng.integers(lo, hi + 1), False, rng):
            session.add_click(c.row, c.col, False)
    return session


def guidance_dropout(guidance: np.ndarray, rng: np.random.Generator, p: float = 0.1) -> np.ndarray:
    """With probability ``p`` replace every guidance map by the constant 255 (1.0 after scaling).

    ``guidance`` is the ``(H, W, 3)`` output of :func:`~napari_spbox.core.guidance.guidance_stack`.
    """
    if rng.uniform() < p:
        return np.ones_like(guidance)
    return guidance
