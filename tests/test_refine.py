"""After the network: clicks are kept (click consistency), and the outline moves onto the object's
colour edge (edge refinement), nothing else moves."""

import numpy as np
import pytest

from napari_spbox.core.image import to_rgb_float
from napari_spbox.core.predictor import CLICK_RADIUS, enforce_clicks, refine_edges
from napari_spbox.core.protocol import Box, Session
from napari_spbox.core.superpixels import Superpixels
from napari_spbox.evaluation.metrics import iou


def _session(shape, clicks):
    s = Session(shape, strict=False)
    for c in clicks:
        s.add_click(*c)
    return s


def _prob(mask):
    return np.where(mask, 0.9, 0.1).astype(np.float32)


@pytest.mark.parametrize("negative_first", [False, True])
def test_a_superpixel_clicked_both_ways_keeps_both_clicks(negative_first):
    """A superpixel that straddles the object's edge, clicked positive and negative: neither click
    undoes the other (whole-superpixel labels made the robot alternate between two masks), the rest
    of it stays the network's call, and a superpixel clicked one way still follows its click
    entirely."""
    labels = np.zeros((40, 80), np.int32)
    labels[:, 50:] = 1
    sp = Superpixels.from_labels(labels)
    clicks = [(20, 10, True), (20, 40, False)]
    s = _session(labels.shape, (clicks[::-1] if negative_first else clicks) + [(20, 70, True)])
    prob = enforce_clicks(np.full(labels.shape, 0.3, np.float32), sp, s)
    assert prob[20, 10] == 1.0 and prob[20 + CLICK_RADIUS, 10] == 1.0 and prob[20, 40] == 0.0
    assert prob[5, 25] == np.float32(0.3) and prob[20, 10 + CLICK_RADIUS + 1] == np.float32(0.3)
    assert (prob[:, 50:] == 1.0).all()


@pytest.mark.parametrize("radius", [1, CLICK_RADIUS])
def test_a_click_always_changes_its_own_pixel(radius):
    """A negative click right beside a positive one (the robot user's fix of a one-pixel sliver):
    the clicked pixel turns background although the positive click's spot covers it, in click
    consistency and after the edge refinement; the positive click's own pixel stays foreground.
    Before, the earlier positive spot was painted over the negative click's superpixel and the
    user clicked the same pixel again and again with nothing changing."""
    labels = np.zeros((40, 40), np.int32)
    labels[:, 21:] = 1
    sp = Superpixels.from_labels(labels)
    # the positive click's superpixel is clicked both ways (spots there); the negative click
    # beside it is alone in its superpixel, which follows it entirely
    s = _session(labels.shape, [(20, 20, True), (5, 5, False), (20, 21, False)])
    prob = enforce_clicks(np.full(labels.shape, 0.8, np.float32), sp, s, radius)
    assert prob[20, 21] == 0.0 and prob[20, 20] == 1.0
    rr, cc = np.mgrid[:40, :40]
    img = np.stack([np.where((rr - 20) ** 2 + (cc - 18) ** 2 <= 36, 200, 30)] * 3, -1)
    refined = refine_edges(
        to_rgb_float(img.astype(np.uint8)), prob, s, Box(0, 0, 39, 39), radius=radius
    )
    enforce_clicks(refined, sp, s, radius)
    assert refined[20, 21] <= 0.49 and refined[20, 20] > 0.49


def test_a_smaller_click_spot_changes_fewer_pixels():
    """The microscopy weights' 1 px spot (their card's ``click_radius``): a click in a superpixel
    clicked both ways sets its own pixel and four neighbours, not a 7 px disk."""
    labels = np.zeros((40, 80), np.int32)
    sp = Superpixels.from_labels(labels)
    s = _session(labels.shape, [(20, 10, True), (20, 40, False)])
    prob = enforce_clicks(np.full(labels.shape, 0.3, np.float32), sp, s, radius=1)
    assert (prob == 1.0).sum() == 5 and (prob == 0.0).sum() == 5
    assert prob[21, 10] == 1.0 and prob[21, 11] == np.float32(0.3)


def test_a_corrective_click_on_a_small_objects_sliver_cuts_into_it_only_with_a_large_spot():
    """A nucleus 13 px across whose mask is one pixel too wide: a negative click on that sliver
    with a 3 px spot forces three object pixels to background; a 1 px spot takes at most the one
    next to it."""
    rr, cc = np.mgrid[:64, :64]
    nucleus = (rr - 32) ** 2 + (cc - 32) ** 2 <= 6**2
    img = np.where(nucleus, 200, 30).astype(np.uint8)
    img = np.stack([img] * 3, -1)
    wide = (rr - 32) ** 2 + (cc - 32) ** 2 <= 7**2  # the network's mask: one pixel too wide
    s = _session(nucleus.shape, [(32, 32, True), (32, 39, False)])  # the sliver at column 39
    masks = {
        r: refine_edges(to_rgb_float(img), _prob(wide), s, Box(0, 0, 63, 63), radius=r) > 0.49
        for r in (1, 3)
    }
    assert not masks[1][32, 39] and not masks[3][32, 39]  # the clicked pixel follows the click
    assert masks[1][32, 33:38].all()  # the object's own pixels beside the click stay
    assert not masks[3][32, 36:39].any()  # a 3 px spot cuts them out
    assert iou(masks[1], nucleus) > iou(masks[3], nucleus)


def test_a_shifted_outline_snaps_to_the_object(disk_image):
    img, mask = disk_image
    shifted = np.roll(mask, (6, -5), axis=(0, 1))  # the network's outline, a few pixels off
    s = _session(mask.shape, [(80, 100, True), (80, 150, False)])
    prob = refine_edges(to_rgb_float(img), _prob(shifted), s, Box(0, 0, 159, 199))
    assert iou(shifted, mask) < 0.8
    assert iou(prob > 0.49, mask) > 0.97


def test_far_from_the_outline_the_network_decides(disk_image):
    """A wrong region deeper than the band is the network's call (a click fixes it), not
    GrabCut's."""
    img, mask = disk_image
    wrong = np.zeros_like(mask)
    wrong[10:70, 140:200] = True  # background the network took for object
    net = np.roll(mask, 5, axis=1) | wrong
    s = _session(mask.shape, [(80, 100, True)])
    out = refine_edges(to_rgb_float(img), _prob(net), s, Box(0, 0, 159, 199)) > 0.49
    assert out[30:50, 160:180].all()  # deep inside the wrong region: kept
    # the disk's outline still moves towards the object, though the wrong region is in its colour
    # model
    assert iou(out, mask, ignore=wrong) > iou(net, mask, ignore=wrong) + 0.05


def test_clicks_are_hard_seeds_and_probabilities_keep_the_networks_values(disk_image):
    img, mask = disk_image
    # negative just inside the disk's edge
    s = _session(mask.shape, [(80, 100, True), (80, 135, False)])
    prob = _prob(mask)
    prob[mask] = np.linspace(0.6, 1.0, mask.sum())
    before = prob.copy()
    out = refine_edges(to_rgb_float(img), prob, s, Box(0, 0, 159, 199))
    assert out[80, 135] <= 0.49 and out[80, 100] > 0.49
    same_side = (out > 0.49) == (before > 0.49)
    # only the side of the threshold moved
    np.testing.assert_array_equal(out[same_side], before[same_side])


def test_nothing_to_learn_from_leaves_the_probability_alone(disk_image):
    img, mask = disk_image
    prob = np.zeros(mask.shape, np.float32)
    s = _session(mask.shape, [(80, 150, False)])
    out = refine_edges(to_rgb_float(img), prob.copy(), s, Box(0, 0, 159, 199))
    np.testing.assert_array_equal(out, prob)


def test_the_predictor_refines_only_near_the_outline(disk_image):
    """On a clear edge the refined click is at least as good, and only the band around the outline
    differs."""
    from scipy import ndimage

    from napari_spbox.model.inference import SPBoxPredictor

    img, mask = disk_image
    p, plain = SPBoxPredictor(), SPBoxPredictor(refine=False)
    for pred in (p, plain):
        pred.set_image(img)
    s = _session(mask.shape, [(80, 100, True), (80, 150, False)])
    a, b = p.predict(s).mask, plain.predict(s).mask
    assert iou(a, mask) >= iou(b, mask) - 0.005
    near_outline = ndimage.binary_dilation(b ^ ndimage.binary_erosion(b), iterations=40)
    assert not (a != b)[~near_outline].any()


def test_the_same_clicks_give_the_same_mask():
    """GrabCut's k-means draws from OpenCV's global RNG; a repeated click must not change the
    mask."""
    import cv2
    from skimage import data

    from napari_spbox.model.inference import SPBoxPredictor

    img = data.coffee()
    p = SPBoxPredictor()
    p.set_image(img)
    # the saucer
    s = _session(img.shape[:2], [(330, 300, True), (395, 520, False), (268, 300, False)])
    first = p.predict(s).mask
    for _ in range(3):
        cv2.randu(np.zeros((10, 10), np.float32), 0, 1)  # someone else used the RNG in between
        np.testing.assert_array_equal(p.predict(s).mask, first)


def test_refinement_on_a_reduced_copy_still_snaps(disk_image):
    img, mask = disk_image
    shifted = np.roll(mask, (6, -5), axis=(0, 1))
    s = _session(mask.shape, [(80, 100, True), (80, 150, False)])
    prob = refine_edges(to_rgb_float(img), _prob(shifted), s, Box(0, 0, 159, 199), max_side=100)
    assert iou(prob > 0.49, mask) > 0.95


def test_the_refinement_runs_at_the_side_asked_for(disk_image, monkeypatch):
    """``refine_side`` (``--refine-side``) reaches the refinement; the default keeps the
    pipeline's own side; a side too small to hold an outline is refused."""
    from napari_spbox.model import inference
    from napari_spbox.predictors import PredictorSettings, make_predictor

    sides = []

    def recording(*args, **kw):
        sides.append(kw.get("max_side", "default"))
        return refine_edges(*args, **kw)

    monkeypatch.setattr(inference, "refine_edges", recording)
    img, mask = disk_image
    s = _session(mask.shape, [(80, 100, True), (80, 150, False)])
    for side, expected in ((None, "default"), (64, 64)):
        sides.clear()
        pred = make_predictor(PredictorSettings("spbox", refine_side=side))
        pred.set_image(img)
        assert iou(pred.predict(s).mask, mask) > 0.9
        assert sides and set(sides) == {expected}
    with pytest.raises(ValueError, match="at least 16 px"):
        inference.SPBoxPredictor(refine_side=8)


def test_the_click_spot_asked_for_reaches_click_consistency_and_the_refinement(
    disk_image, monkeypatch
):
    """``click_radius`` (``--click-radius``, or the weights' card) is the spot both pipeline
    steps use."""
    from napari_spbox.model import inference
    from napari_spbox.predictors import PredictorSettings, make_predictor

    radii = {"refine": set(), "consistency": set()}

    def refining(*args, **kw):
        radii["refine"].add(kw["radius"])
        return refine_edges(*args, **kw)

    def enforcing(prob, sp, session, radius=CLICK_RADIUS):
        radii["consistency"].add(radius)
        return enforce_clicks(prob, sp, session, radius)

    monkeypatch.setattr(inference, "refine_edges", refining)
    monkeypatch.setattr(inference, "enforce_clicks", enforcing)
    img, mask = disk_image
    s = _session(mask.shape, [(80, 100, True), (80, 150, False)])
    for radius, expected in ((None, CLICK_RADIUS), (1, 1)):
        radii["refine"].clear()
        radii["consistency"].clear()
        pred = make_predictor(PredictorSettings("spbox", click_radius=radius))
        pred.set_image(img)
        assert iou(pred.predict(s).mask, mask) > 0.9
        assert radii == {"refine": {expected}, "consistency": {expected}}
    with pytest.raises(ValueError, match=">= 0 px"):
        inference.SPBoxPredictor(click_radius=-1)
