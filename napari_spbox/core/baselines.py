"""Classical baselines behind the common :class:`~napari_spbox.core.predictor.Predictor` interface.

OpenCV GrabCut and scikit-image's random walker, seeded from the same clicks and box as the network,
so ``spbox evaluate --method`` compares like with like.
"""

from __future__ import annotations

import numpy as np

from .image import to_uint8
from .predictor import Predictor, _disk_mask
from .protocol import Box, Session


def _seed_radius(shape) -> int:
    return max(2, int(round(0.01 * max(shape))))  # noqa: RUF046


def _default_box(session: Session, shape) -> Box:
    """Box used by the baselines before the protocol has one: a window around the positive
    clicks."""
    if session.box is not None:
        return session.box
    half = int(0.25 * max(shape))
    box = Box(
        session.positives[0].row,
        session.positives[0].col,
        session.positives[0].row,
        session.positives[0].col,
    )
    for c in session.positives:
        box = box.grow_to(c.row, c.col)
    return Box(box.top - half, box.left - half, box.bottom + half, box.right + half).clip(shape)


class GrabCutPredictor(Predictor):
    """Baseline: OpenCV GrabCut seeded from the box (outside = background) and the clicks (hard
    seeds)."""

    name = "grabcut"

    def __init__(self, iterations: int = 5, **kw):
        super().__init__(**kw)
        self.iterations = iterations

    def warm_up(self) -> None:
        """Nothing to prepare: GrabCut uses no superpixels."""

    def _predict(self, session: Session, mark) -> np.ndarray:
        import cv2

        shape = self.shape
        box = _default_box(session, shape)
        gc = np.full(shape, cv2.GC_BGD, dtype=np.uint8)
        gc[box.top : box.bottom + 1, box.left : box.right + 1] = cv2.GC_PR_FGD
        r = _seed_radius(shape)
        gc[_disk_mask(shape, session.negatives, r)] = cv2.GC_BGD
        gc[_disk_mask(shape, session.positives, r)] = cv2.GC_FGD
        if not (gc == cv2.GC_BGD).any():  # the box covers the image: GrabCut needs some background
            gc[[0, -1], :] = cv2.GC_PR_BGD
            gc[:, [0, -1]] = cv2.GC_PR_BGD
        if (
            not np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD)).any()
            or not np.isin(gc, (cv2.GC_BGD, cv2.GC_PR_BGD)).any()
        ):
            # a frame of a few pixels: GrabCut needs pixels on both sides to learn two colour
            # models, so the answer is the clicked spots themselves
            return _disk_mask(shape, session.positives, r).astype(np.float32)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        img = to_uint8(self.rgb)[..., ::-1].copy()
        cv2.grabCut(img, gc, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        return np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)


class RandomWalkerPredictor(Predictor):
    """Baseline: scikit-image random walker seeded from the clicks (and the outside of the box).

    Runs on a copy downscaled to at most ``max_side`` pixels (the solver is slow on full frames) and
    upsamples the foreground probability.
    """

    name = "random-walker"

    def __init__(self, beta: float = 130.0, max_side: int = 320, **kw):
        super().__init__(**kw)
        self.beta = beta
        self.max_side = max_side

    def warm_up(self) -> None:
        """Nothing to prepare: the random walker uses no superpixels."""

    def _predict(self, session: Session, mark) -> np.ndarray:
        from skimage.segmentation import random_walker
        from skimage.transform import resize

        shape = self.shape
        scale = min(1.0, self.max_side / max(shape))
        small = (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))
        img = resize(self.rgb, small + (3,), order=1, anti_aliasing=True) if scale < 1 else self.rgb
        seeds = np.zeros(small, dtype=np.int32)

        def pts(clicks):
            return [
                type(c)(
                    min(small[0] - 1, int(c.row * scale)),
                    min(small[1] - 1, int(c.col * scale)),
                    c.positive,
                )
                for c in clicks
            ]

        box = _default_box(session, shape)
        b = Box(
            int(box.top * scale),
            int(box.left * scale),
            int(box.bottom * scale),
            int(box.right * scale),
        )
        outside = np.ones(small, dtype=bool)
        outside[b.top : b.bottom + 1, b.left : b.right + 1] = False
        if not outside.any():
            outside[[0, -1], :] = True
            outside[:, [0, -1]] = True
        seeds[outside] = 2
        r = max(1, _seed_radius(small))
        seeds[_disk_mask(small, pts(session.negatives), r)] = 2
        seeds[_disk_mask(small, pts(session.positives), r)] = 1
        if not (seeds == 0).any():
            # a frame of a few pixels, every one a seed: nothing left to decide (scikit-image
            # then returns the seed labels, not probabilities)
            return resize((seeds == 1).astype(np.float32), shape, order=0)
        prob = random_walker(
            img,
            seeds,
            beta=self.beta,
            mode="cg_j",
            tol=1e-3,
            channel_axis=-1,
            return_full_prob=True,
        )[0]
        if scale < 1:
            prob = resize(prob, shape, order=1)
        return prob
