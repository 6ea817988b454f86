from dataclasses import dataclass

import numpy as np
import pytest
from scipy import ndimage

from napari_spbox.core.predictor import Prediction, Predictor
from napari_spbox.evaluation.metrics import iou, noc, outline_band, summarise
from napari_spbox.evaluation.robot import (
    degrade_mask,
    evaluate,
    next_click,
    paper_first_pair,
    run_object,
)


class Oracle(Predictor):
    """Predicts the ground truth whatever the clicks: the robot must stop at NoC = 1."""

    name = "oracle"

    def __init__(self, gt):
        super().__init__()
        self.gt = gt

    def _predict(self, session, mark):
        return self.gt.astype(np.float32)


class Empty(Predictor):
    name = "empty"

    def _predict(self, session, mark):
        return np.zeros(self.shape, np.float32)


@pytest.fixture
def scene():
    img = np.zeros((80, 100, 3), np.uint8)
    gt = np.zeros((80, 100), bool)
    gt[20:60, 30:70] = True
    return img, gt


def test_first_click_is_farthest_from_boundary(scene):
    _, gt = scene
    r, c, pos = next_click(np.zeros_like(gt), gt)
    assert pos and 38 <= r <= 41 and 48 <= c <= 51


def test_larger_error_decides_click_sign(scene):
    _, gt = scene
    pred = gt.copy()
    pred[0:30, 0:30] = True  # a big false positive
    assert next_click(pred, gt)[2] is False
    assert next_click(gt, gt) is None
    ignore = np.zeros_like(gt)
    ignore[0:30, 0:30] = True
    assert next_click(pred, gt, ignore) is None  # errors in ignored pixels get no click


def test_perfect_predictor_reaches_noc_1_and_empty_never(scene):
    img, gt = scene
    res = run_object(Oracle(gt), img, gt, max_clicks=20)
    assert res["ious"][0] == 1.0 and noc(res["ious"], 0.9) == 1
    empty = run_object(Empty(), img, gt, max_clicks=20)
    assert len(empty["ious"]) == 20 and max(empty["ious"]) == 0
    summary = summarise([res, empty], 20)
    assert summary["noc@90"] == pytest.approx((1 + 20) / 2)
    assert summary["nof@90"] == 1 and summary["nof@85"] == 1 and summary["n_objects"] == 2
    assert (
        summary["miou_per_click"][0] == pytest.approx(0.5) and len(summary["miou_per_click"]) == 20
    )


def test_paper_protocol_opening_is_centre_then_outside_and_box_covers_object(scene):
    from napari_spbox.core.protocol import Box, Click, box_from_pair

    _, gt = scene
    (r, c, p), (nr, nc, n) = paper_first_pair(gt)
    assert p and not n and gt[r, c] and not gt[nr, nc]
    box = box_from_pair(Click(r, c, True), Click(nr, nc, False), gt.shape)
    obj = Box.from_mask(gt)
    assert (
        box.top <= obj.top
        and box.left <= obj.left
        and box.bottom >= obj.bottom
        and box.right >= obj.right
    )


def test_paper_protocol_run_and_correction_start(scene):
    img, gt = scene
    res = run_object(Oracle(gt), img, gt, protocol="paper", max_clicks=5)
    assert res["clicks"][0][2] is True and res["clicks"][1][2] is False and res["ious"][-1] == 1.0
    start = degrade_mask(gt, np.random.default_rng(0))
    assert 0.6 < iou(start, gt) < 0.8
    corr = run_object(Oracle(gt), img, gt, start_mask=start, max_clicks=3)
    assert corr["iou0"] == 1.0


def test_iou_ignores_pixels():
    a = np.array([[1, 1, 0, 0]], bool)
    b = np.array([[1, 0, 0, 1]], bool)
    assert iou(a, b) == pytest.approx(1 / 3)
    assert iou(a, b, np.array([[0, 1, 0, 1]], bool)) == 1.0


def test_prediction_threshold_is_049():
    p = Prediction(np.array([[0.48, 0.5]], np.float32))
    assert p.mask.tolist() == [[False, True]]


def test_large_image_runs_at_working_resolution_and_returns_full_size():
    from napari_spbox.core.baselines import RandomWalkerPredictor
    from napari_spbox.core.protocol import Session

    rng = np.random.default_rng(0)
    h, w = 3000, 4000
    rr, cc = np.ogrid[:h, :w]
    gt = (rr - 1500) ** 2 + (cc - 2000) ** 2 <= 600**2
    img = np.where(gt[..., None], 200, 40).astype(np.uint8) + rng.integers(
        0, 20, (h, w, 1), dtype=np.uint8
    )
    pred = RandomWalkerPredictor(max_side=1024)
    pred.set_image(img)
    assert max(pred.shape) <= 1024
    s = Session(gt.shape)
    s.add_click(1500, 2000, True)
    s.add_click(2200, 2700, False)
    out = pred.predict(s)
    assert out.prob.shape == (h, w) and iou(out.mask, gt) > 0.9


def test_strict_session_keeps_the_mask_inside_its_box(scene):
    """Strict protocol: negatives outside the box are refused, so nothing outside it may be
    foreground."""
    from napari_spbox.core.protocol import Session

    img, _ = scene
    spill = Oracle(np.ones((80, 100), bool))  # a network that spills over the whole image
    spill.set_image(img)
    strict, free = Session(img.shape), Session(img.shape, strict=False)
    for s in (strict, free):
        s.add_click(40, 50, True)
        s.add_click(50, 65, False)  # box rows 25-55, cols 35-65
    box = strict.box
    inside = np.zeros((80, 100), bool)
    inside[box.top : box.bottom + 1, box.left : box.right + 1] = True
    assert np.array_equal(spill.predict(strict).mask, inside)
    assert spill.predict(free).mask.all()  # non-strict (standard robot, CVAT): no such promise
    strict.add_click(40, 80, True)  # a positive outside grows the box, and the mask with it
    assert spill.predict(strict).mask[40, 80] and spill.predict(strict).mask.sum() > inside.sum()


class Dilated(Predictor):
    """The ground truth grown by ``grow`` px whatever the clicks: right but for its outline."""

    name = "dilated"

    def __init__(self, gt, grow):
        super().__init__()
        self.mask = ndimage.binary_dilation(gt, iterations=grow).astype(np.float32)

    def _predict(self, session, mark):
        return self.mask


@dataclass
class _Item:
    name: str
    image: np.ndarray
    gt: np.ndarray

    def load(self):
        return self.image, self.gt, None


def test_outline_band_is_a_ring_either_side_of_the_outline(scene):
    _, gt = scene
    band = outline_band(gt, 2)
    outline = gt & ~ndimage.binary_erosion(gt)
    dist_in, dist_out = (ndimage.distance_transform_cdt(m, metric="taxicab") for m in (gt, ~gt))
    assert band[outline].all() and not band[dist_in > 2].any() and not band[dist_out > 2].any()
    assert (
        band[(dist_in > 0) & (dist_in <= 2)].all() and band[(dist_out > 0) & (dist_out <= 2)].all()
    )
    assert not outline_band(gt, 0).any() and not outline_band(np.zeros_like(gt), 2).any()
    corner = np.zeros_like(gt)
    corner[:10, :10] = True  # the image's edge is no outline: no band along it
    assert not outline_band(corner, 2)[0, :8].any() and outline_band(corner, 2)[0, 8:12].all()


def test_ignore_band_forgives_outline_errors_up_to_its_width_only(scene):
    """A mask 2 px too large everywhere: short of 90 % as scored, right with a 2 px band, still
    wrong with 1 px."""
    img, gt = scene
    small = np.zeros_like(gt)
    small[30:42, 40:52] = True  # 12 x 12: a 2 px rim is a large share of it
    items = [_Item("sq", img, small)]
    scores = {
        w: evaluate(Dilated(small, 2), items, max_clicks=3, progress=False, ignore_band=w)[0][
            "ious"
        ]
        for w in (0, 1, 2)
    }
    assert max(scores[0]) < 0.9 and max(scores[1]) < 0.9
    assert scores[2][0] == 1.0 and len(scores[2]) == 1  # nothing left to click: the robot stops
    assert noc(scores[0], 0.9, 3) == 3 and noc(scores[2], 0.9, 3) == 1
