"""One predictor interface for every front-end: ``set_image`` once, then ``predict(session)``.

:class:`Predictor` caches the normalised image and its superpixels; subclasses turn a session into a
probability map. The classical baselines (OpenCV GrabCut, scikit-image random walker) are in
:mod:`napari_spbox.core.baselines`; the trained network is
:class:`napari_spbox.model.SPBoxPredictor`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .guidance import session_box_superpixels
from .image import to_rgb_float, to_uint8
from .protocol import Box, Click, Session
from .superpixels import Superpixels, compute_superpixels

THRESHOLD = 0.49

#: Zoom-in crop margin: the window is the superpixel box grown by this fraction of its size per
#: side.
CROP_MARGIN = 0.4
#: The window is never smaller than this many pixels per side (tiny objects keep some context).
CROP_MIN_SIDE = 64
#: Images with a longer side than this run at a working resolution reduced by an integer factor
#: (block mean), so SLIC, guidance and the baselines stay fast and small on 4000 x 3000 photos and
#: 2048 x 2048 slices; the probability is upsampled back to full size.
MAX_WORKING_SIDE = 1024
#: Edge refinement (:func:`refine_edges`): the mask's outline may move by up to this fraction of the
#: zoom window's longer side (chosen on the validation slice: docs/pipeline.md).
REFINE_BAND = 0.10
#: GrabCut iterations of the refinement, and the side it runs at: one iteration on a reduced copy is
#: nearly as good as three at full size and several times faster, since GrabCut's cost follows the
#: window's pixel count (docs/pipeline.md).
REFINE_ITERATIONS = 1
REFINE_MAX_SIDE = 320
#: The "precise edges" option: three iterations at the window's full size, for users who would
#: rather wait longer than place the outline from a reduced copy (its cost: docs/pipeline.md).
PRECISE_REFINE = {"iterations": 3, "max_side": None}
#: Radius in pixels of a click's own spot: the hard seed it gives the refinement, and what it keeps
#: in a superpixel that holds clicks of both signs (:func:`enforce_clicks`). Weights may name
#: another on their card (``click_radius``: 1 px for the microscopy weights, whose nuclei are a
#: dozen pixels across; docs/experiments/stop34_colour_confirm.md).
CLICK_RADIUS = 3


@dataclass
class Prediction:
    """Result of one prediction: probability map, thresholded mask and how long it took."""

    prob: np.ndarray
    threshold: float = THRESHOLD
    elapsed_ms: float = 0.0

    @property
    def mask(self) -> np.ndarray:
        return self.prob > self.threshold


def zoom_window(
    region: Box | None, shape, margin: float = CROP_MARGIN, min_side: int = CROP_MIN_SIDE
) -> Box:
    """The crop the network sees: ``region`` grown by ``margin`` of its size per side, clipped.

    ``region`` is the bounding box of the superpixel-box map G (so it follows superpixels and grown
    boxes); ``None`` (no box yet) gives the whole image. Training uses the same function.
    """
    h, w = shape[:2]
    if region is None:
        return Box(0, 0, h - 1, w - 1)
    cy, cx = (region.top + region.bottom) / 2.0, (region.left + region.right) / 2.0
    half_h = max(region.height * (0.5 + margin), min_side / 2.0)
    half_w = max(region.width * (0.5 + margin), min_side / 2.0)
    return Box(
        int(cy - half_h), int(cx - half_w), int(np.ceil(cy + half_h)), int(np.ceil(cx + half_w))
    ).clip(shape)


def guidance_region(sp: Superpixels, session: Session) -> Box | None:
    """Bounding box of G-hat's support (Eq. 6), or ``None`` when there is no box yet.

    Taken from the per-superpixel boxes, so no pixel is touched.
    """
    if session.box is None:
        return None
    member = session_box_superpixels(sp, session)
    if not member.any():
        return session.box
    b = sp.bboxes[member]
    return Box(int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max()), int(b[:, 3].max()))


def enforce_clicks(
    prob: np.ndarray, sp: Superpixels, session: Session, radius: int = CLICK_RADIUS
) -> np.ndarray:
    """Give each clicked superpixel its click's label, in place.

    A user expects every click to change the mask where they clicked; a network may not honour a
    corrective click, and the robot user would then repeat it. Superpixels are the unit the paper
    already reads clicks at (Eq. 1, Eq. 3-5), so the click's whole superpixel follows it (what it
    gains: docs/pipeline.md).

    A superpixel can straddle the object's edge and so be clicked with both signs. There each click
    keeps only a disk of ``radius`` px (a later click wins where disks overlap) and the rest
    stays the network's (and the edge refinement's) call. Giving the whole superpixel to the latest
    click instead undid the earlier click, and the next click undid this one: the robot user
    alternated between two masks until its click budget ran out.

    Last, every clicked pixel takes its own click's label (:func:`click_spots`): a neighbouring
    click's disk or superpixel must not undo it, or the user (and the robot) clicks the same
    pixel again and nothing changes.
    """
    signs: dict[int, set] = {}
    for c in session.clicks:
        signs.setdefault(int(sp.labels[c.row, c.col]), set()).add(c.positive)
    for k, s in signs.items():
        if len(s) == 1:
            t, l, b, r = sp.bboxes[k]
            inside = sp.labels[t : b + 1, l : r + 1] == k
            prob[t : b + 1, l : r + 1][inside] = 1.0 if True in s else 0.0
    mixed = [c for c in session.clicks if len(signs[int(sp.labels[c.row, c.col])]) > 1]
    spots = click_spots(prob.shape, mixed, radius)
    for c in session.clicks:
        spots[c.row, c.col] = c.positive
    prob[spots == 1] = 1.0
    prob[spots == 0] = 0.0
    return prob


def click_spots(shape, clicks, radius: int) -> np.ndarray:
    """Each click's spot: a disk of ``radius`` px, later clicks winning where disks overlap, and
    each clicked pixel its own click's label however close an opposite click lies.

    Returns an ``int8`` map: 1 positive, 0 negative, -1 no click's spot.

    Examples
    --------
    A positive click and a negative one beside it, 1 px spots: each disk covers the other's pixel,
    yet each clicked pixel keeps its own label.

    >>> from napari_spbox.core.protocol import Click
    >>> click_spots((3, 4), [Click(1, 1, True), Click(1, 2, False)], 1)
    array([[-1,  1,  0, -1],
           [ 1,  1,  0,  0],
           [-1,  1,  0, -1]], dtype=int8)
    """
    out = np.full(shape[:2], -1, dtype=np.int8)
    for c in clicks:
        _paint_disks(out, [c], radius, c.positive)
    for c in clicks:
        out[c.row, c.col] = c.positive
    return out


def implied_box(prob: np.ndarray, session: Session, threshold: float = THRESHOLD) -> Box:
    """Bounding box of the predicted mask's connected parts under the positive clicks.

    The network reads the object's whereabouts from the superpixel box G (Eq. 2-6), which exists
    only once a negative click has set the box (Sec. 3.1). Until then it sees the whole image and no
    G, a state it rarely met in training, and the field's standard robot user often clicks positive
    two or three times before its first negative. So a click without a box runs the network twice:
    this box, taken from the first pass, serves as the enclosing box of the second, with every click
    as a corrective one (as in correction mode). Parts the first pass found away from every positive
    click are left out; the clicked pixels are always in. Chosen against growing the box, keeping
    all parts and a third pass on the validation slice (docs/pipeline.md).
    """
    labels, _ = ndimage.label(prob > threshold)
    parts = sorted({int(labels[c.row, c.col]) for c in session.positives} - {0})
    mask = np.isin(labels, parts)
    for c in session.positives:
        mask[c.row, c.col] = True
    return Box.from_mask(mask)


def refine_edges(
    rgb: np.ndarray,
    prob: np.ndarray,
    session: Session,
    window: Box,
    threshold: float = THRESHOLD,
    band: float = REFINE_BAND,
    iterations: int = REFINE_ITERATIONS,
    max_side: int | None = REFINE_MAX_SIDE,
    radius: int = CLICK_RADIUS,
) -> np.ndarray:
    """Move the mask's outline onto the image's colour edges with GrabCut, within ``window``, in
    place.

    The network sees a 320 x 320 resize of the window and predicts at a quarter of that, so its
    outline is a few pixels off where the object really ends, and a robot or a person then spends
    clicks on thin slivers. Here OpenCV GrabCut (colour models + contrast-sensitive graph cut)
    decides only a band around the network's outline: pixels deeper than ``band`` x the window's
    longer side inside or outside the mask are fixed to the network's label (up to resampling, when
    GrabCut runs on a copy reduced to ``max_side``), each click is a hard seed of radius
    ``radius`` (:func:`click_spots`: a later click wins where seeds overlap), so the network still
    decides *what* the object is and the refinement only *where* its edge runs. The probabilities
    keep the network's values; only their side of ``threshold`` follows GrabCut in the band. The
    paper uses no such step (Sec. 4.1, no CRF); DeepLab's dense CRF is the same idea. Needs
    ``opencv-python-headless``.

    Parameters
    ----------
    rgb : ndarray
        ``(H, W, 3)`` float image in [0, 1] (the predictor's working copy).
    prob : ndarray
        ``(H, W)`` foreground probability, changed in place.
    session : Session
        Its clicks become hard seeds.
    window : Box
        Where to refine (the network's zoom window).
    max_side : int, optional
        GrabCut runs on the window resized to at most this many pixels per side (its cost follows
        the pixel count); its label is resized back bilinearly. ``None``: at the working resolution.
    radius : int
        Radius in pixels (of the copy GrabCut runs on) of each click's hard seed.

    Returns
    -------
    ndarray
        ``prob``. Unchanged when the window holds no foreground or no background to learn from.
    """
    import cv2

    sl = (slice(window.top, window.bottom + 1), slice(window.left, window.right + 1))
    p = prob[sl]
    img = to_uint8(rgb[sl])[..., ::-1]
    scale = min(1.0, max_side / max(p.shape)) if max_side else 1.0
    work = p
    if scale < 1.0:
        size = (max(1, round(p.shape[1] * scale)), max(1, round(p.shape[0] * scale)))
        work, img = (
            cv2.resize(p, size, interpolation=cv2.INTER_AREA),
            cv2.resize(img, size, interpolation=cv2.INTER_AREA),
        )
    fg = work > threshold
    depth = max(radius, int(band * max(work.shape)))
    seeds = np.where(fg, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    seeds[ndimage.binary_erosion(fg, iterations=depth, border_value=1)] = cv2.GC_FGD
    seeds[ndimage.binary_erosion(~fg, iterations=depth, border_value=1)] = cv2.GC_BGD

    def local(clicks):
        return [
            Click(
                min(int((c.row - window.top) * scale), work.shape[0] - 1),
                min(int((c.col - window.left) * scale), work.shape[1] - 1),
                c.positive,
            )
            for c in clicks
            if window.contains(c.row, c.col)
        ]

    spots = click_spots(work.shape, local(session.clicks), radius)
    seeds[spots == 0] = cv2.GC_BGD
    seeds[spots == 1] = cv2.GC_FGD
    if not (seeds == cv2.GC_BGD).any() or not (seeds == cv2.GC_FGD).any():
        return prob  # GrabCut needs both colour models
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut's k-means draws from OpenCV's global RNG: the same clicks must give the same mask
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(img), seeds, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    inside = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if scale < 1.0:
        inside = (
            cv2.resize(
                inside.astype(np.float32), (p.shape[1], p.shape[0]), interpolation=cv2.INTER_LINEAR
            )
            > 0.5
        )
    prob[sl] = np.where(
        inside,
        np.maximum(p, np.nextafter(np.float32(threshold), np.float32(1))),
        np.minimum(p, threshold),
    )
    return prob


def keep_inside_box(prob: np.ndarray, box) -> np.ndarray:
    """Zero the probability outside ``box``, in place: under the strict protocol the box encloses
    the object.

    The network may still spill onto look-alike background beyond the box, and there a user could
    not undo it: the protocol refuses negative clicks outside the box (Sec. 3.1). A positive click
    outside grows the box first, so no clicked object part is ever cut.
    """
    prob[: box.top] = 0.0
    prob[box.bottom + 1 :] = 0.0
    prob[:, : box.left] = 0.0
    prob[:, box.right + 1 :] = 0.0
    return prob


class Predictor:
    """Base class: holds one image, its normalised RGB and its superpixels.

    Parameters
    ----------
    n_segments : int
        SLIC superpixels per image (about 1000 in the paper).
    threshold : float
        Probability above which a pixel is in the mask.
    """

    name = "base"

    def __init__(
        self, n_segments: int = 1000, threshold: float = THRESHOLD, max_side: int = MAX_WORKING_SIDE
    ):
        self.n_segments = n_segments
        self.threshold = threshold
        self.max_side = max_side
        self.rgb: np.ndarray | None = None
        self.image_shape: tuple[int, int] | None = None
        self._superpixels: Superpixels | None = None
        self._source = None

    def set_image(self, image, channel_axis: int | None = -1) -> None:
        """Normalise ``image`` and forget cached per-image work (superpixels are computed lazily
        once).

        Images longer than ``max_side`` are reduced by an integer factor for the working copy.
        """
        if image is self._source and self.rgb is not None:
            return
        rgb = to_rgb_float(image, channel_axis=channel_axis)
        self.image_shape = rgb.shape[:2]
        factor = int(np.ceil(max(self.image_shape) / self.max_side))
        if factor > 1:
            from skimage.measure import block_reduce

            rgb = block_reduce(rgb, (factor, factor, 1), np.mean).astype(np.float32)
        self.rgb = rgb
        self._source = image
        self._forget_image()

    def _forget_image(self) -> None:
        """Drop what was cached for the previous image (subclasses add their own per-image
        caches)."""
        self._superpixels = None

    @property
    def superpixels(self) -> Superpixels:
        """SLIC superpixels of the current image, computed on first use and cached."""
        if self.rgb is None:
            raise RuntimeError("call set_image() before predicting")
        if self._superpixels is None:
            self._superpixels = compute_superpixels(self.rgb, self.n_segments)
        return self._superpixels

    def warm_up(self) -> None:
        """Do the per-image work now (SLIC), so the first click waits only for its own prediction.

        Front-ends call it when an image is chosen; a no-op without an image or once done.
        """
        if self.rgb is not None:
            self.superpixels  # noqa: B018 - computed and cached by the property

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the working copy (the image's own shape unless it is larger than
        ``max_side``)."""
        if self.rgb is None:
            raise RuntimeError("call set_image() before predicting")
        return self.rgb.shape[:2]

    def predict(self, session: Session, on_stage=None) -> Prediction:
        """Probability map, at the image's full size, for the object described by ``session``.

        ``on_stage(name)``, if given, is called as each stage of the click ends (the benchmark times
        them on the real click path): the predictor's own stages, then ``postprocess``. In a strict
        session nothing outside the enclosing box is foreground (:func:`keep_inside_box`).
        """
        if self.rgb is None:
            raise RuntimeError("call set_image() before predicting")
        if session.shape != self.image_shape:
            raise ValueError(
                f"session is for a {session.shape} image, predictor holds {self.image_shape}"
            )
        mark = on_stage or _no_mark
        t0 = time.perf_counter()
        if not session.positives and session.box is None:
            prob = np.zeros(self.image_shape, dtype=np.float32)
        elif self.shape != self.image_shape:
            prob = _upsample(
                np.clip(self._predict(session.rescaled(self.shape), mark), 0.0, 1.0),
                self.image_shape,
            )
        else:
            prob = np.clip(self._predict(session, mark), 0.0, 1.0).astype(np.float32)
        if session.strict and session.box is not None:
            keep_inside_box(prob, session.box)
        mark("postprocess")
        return Prediction(prob, self.threshold, (time.perf_counter() - t0) * 1000.0)

    def _predict(self, session: Session, mark) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def _no_mark(stage: str) -> None:
    pass


def _upsample(prob: np.ndarray, shape) -> np.ndarray:
    """Bilinear upsampling of the working-resolution probability to the image's ``shape``.

    Samples at the centres of the full-resolution pixels (half-pixel convention). torch's
    ``interpolate`` does exactly that and is ~5x faster than ``scipy.ndimage.map_coordinates`` on a
    12-megapixel photo (39 vs 182 ms, 1 thread); torch is imported here only, lazily, so the core
    stays importable without it.
    """
    import torch

    t = torch.from_numpy(np.ascontiguousarray(prob, dtype=np.float32))[None, None]
    return torch.nn.functional.interpolate(
        t, size=tuple(shape[:2]), mode="bilinear", align_corners=False
    )[0, 0].numpy()


def _disk_mask(shape, clicks, radius: int) -> np.ndarray:
    """A boolean image, True within ``radius`` px of any of ``clicks``."""
    return _paint_disks(np.zeros(shape, dtype=bool), clicks, radius, True)


def _paint_disks(out: np.ndarray, clicks, radius: int, value) -> np.ndarray:
    """Set ``out`` to ``value`` within ``radius`` px of each click, in place (only each disk's own
    pixels are touched, so many clicks on a large image cost no image-sized work)."""
    rr, cc = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    disk = rr**2 + cc**2 <= radius**2
    h, w = out.shape[:2]
    for c in clicks:
        r0, c0 = c.row - radius, c.col - radius
        sr0, sc0 = max(0, -r0), max(0, -c0)
        sr1, sc1 = (
            disk.shape[0] - max(0, r0 + disk.shape[0] - h),
            disk.shape[1] - max(0, c0 + disk.shape[1] - w),
        )
        out[max(0, r0) : r0 + sr1, max(0, c0) : c0 + sc1][disk[sr0:sr1, sc0:sc1]] = value
    return out
