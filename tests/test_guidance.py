import numpy as np
import pytest

from napari_spbox.core.guidance import (
    box_distance_map,
    box_map,
    euclidean_distance_map,
    guidance_stack,
    superpixel_box_map,
    superpixel_distance_map,
)
from napari_spbox.core.protocol import Box, Click, Session
from napari_spbox.core.superpixels import Superpixels, compute_superpixels


@pytest.fixture
def grid():
    """A 40x40 image cut into 16 superpixels of 10x10: centroids at (4.5 + 10i, 4.5 + 10j)."""
    labels = (np.arange(40)[:, None] // 10) * 4 + (np.arange(40)[None, :] // 10)
    return Superpixels.from_labels(labels)


def test_eq1_min_centroid_distance(grid):
    s = superpixel_distance_map(grid, [Click(2, 3, True)])  # superpixel (0, 0)
    assert s[0, 0] == 0 and s[9, 9] == 0  # the whole clicked superpixel is 0
    assert s[5, 15] == pytest.approx(10.0)  # one superpixel right
    assert s[35, 35] == pytest.approx(np.hypot(30, 30))
    two = superpixel_distance_map(grid, [Click(2, 3, True), Click(35, 35, True)])
    assert two[25, 35] == pytest.approx(10.0)  # nearest of two clicked superpixels


def test_eq1_truncated_at_255_and_255_without_clicks():
    labels = (np.arange(10)[:, None] * 0) + (np.arange(600)[None, :] // 100)
    sp = Superpixels.from_labels(labels)
    s = superpixel_distance_map(sp, [Click(5, 10, True)])
    assert s.max() == 255 and s[0, 550] == 255 and s[0, 150] == pytest.approx(100)
    assert np.all(superpixel_distance_map(sp, []) == 255)


def test_eq2_superpixels_on_or_inside_box(grid):
    g = superpixel_box_map(grid, Box(12, 12, 17, 27))  # touches superpixels (1,1) and (1,2)
    expect = np.zeros((40, 40), np.float32)
    expect[10:20, 10:30] = 1
    np.testing.assert_array_equal(g, expect)


def test_eq3_6_extra_positive_added_negative_removed(grid):
    g = superpixel_box_map(grid, Box(12, 12, 17, 27), [Click(35, 35, True)], [Click(15, 25, False)])
    assert g[35, 35] == 1 and g[30, 30] == 1  # positive superpixel joins
    assert g[15, 25] == 0 and g[15, 15] == 1  # negative superpixel leaves


def test_no_box_means_everywhere(grid):
    assert np.all(superpixel_box_map(grid, None) == 1)


def test_ablation_variants():
    eu = euclidean_distance_map((50, 50), [Click(0, 0, True)])
    assert eu[0, 0] == 0 and eu[3, 4] == pytest.approx(5.0)
    bb = box_map((20, 20), Box(5, 5, 9, 9))
    assert bb.sum() == 25 and bb[5, 5] == 1 and bb[4, 5] == 0
    dt = box_distance_map((20, 20), Box(5, 5, 9, 9))
    assert dt[7, 7] == 1 and 0 < dt[7, 12] < dt[7, 11] < 1


def test_eu_map_by_hand_on_5x5():
    # one click at (1, 2): squared distances (r - 1)^2 + (c - 2)^2, counted out per pixel
    squared = np.array(
        [
            [5, 2, 1, 2, 5],
            [4, 1, 0, 1, 4],
            [5, 2, 1, 2, 5],
            [8, 5, 4, 5, 8],
            [13, 10, 9, 10, 13],
        ]
    )
    eu = euclidean_distance_map((5, 5), [Click(1, 2, True)])
    assert eu.shape == (5, 5) and eu.dtype == np.float32
    np.testing.assert_allclose(eu, np.sqrt(squared), rtol=1e-6)
    # truncated at 3: sqrt(10) and sqrt(13) become 3, sqrt(9) is 3 already
    cut = euclidean_distance_map((5, 5), [Click(1, 2, True)], truncate=3.0)
    np.testing.assert_allclose(cut, np.minimum(np.sqrt(squared), 3.0), rtol=1e-6)
    # a second click at (4, 0): each pixel takes the nearer one, (r - 4)^2 + c^2 in the lower left
    nearer = np.array(
        [
            [5, 2, 1, 2, 5],
            [4, 1, 0, 1, 4],
            [4, 2, 1, 2, 5],
            [1, 2, 4, 5, 8],
            [0, 1, 4, 9, 13],
        ]
    )
    two = euclidean_distance_map((5, 5), [Click(1, 2, True), Click(4, 0, True)])
    np.testing.assert_allclose(two, np.sqrt(nearer), rtol=1e-6)
    assert np.all(euclidean_distance_map((5, 5), []) == 255)  # no click: 255 everywhere


def test_bbox_map_by_hand_on_5x5():
    expect = np.array(
        [
            [0, 0, 0, 0, 0],
            [0, 1, 1, 1, 0],
            [0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=np.float32,
    )
    bb = box_map((5, 5), Box(1, 1, 2, 3))  # inclusive rows 1-2, cols 1-3
    assert bb.dtype == np.float32
    np.testing.assert_array_equal(bb, expect)
    np.testing.assert_array_equal(box_map((5, 5), None), np.ones((5, 5), np.float32))


def test_dt_map_by_hand_on_5x5():
    # Euclidean distance of each pixel to the box rows 1-2, cols 1-3: hypot of the row and column
    # steps to the box (0 inside); the map is 1 - min(d, truncate) / truncate
    r2, r5 = np.sqrt(2), np.sqrt(5)
    d = np.array(
        [
            [r2, 1, 1, 1, r2],
            [1, 0, 0, 0, 1],
            [1, 0, 0, 0, 1],
            [r2, 1, 1, 1, r2],
            [r5, 2, 2, 2, r5],
        ]
    )
    box = Box(1, 1, 2, 3)
    dt = box_distance_map((5, 5), box)
    assert dt.dtype == np.float32
    np.testing.assert_allclose(dt, 1 - d / 255, rtol=1e-6)
    # truncated at 2: the bottom row (2 and sqrt(5) away) is 0
    cut = box_distance_map((5, 5), box, truncate=2.0)
    np.testing.assert_allclose(cut, 1 - np.minimum(d, 2) / 2, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(box_distance_map((5, 5), None), np.ones((5, 5), np.float32))


def test_guidance_stack_session_paths(grid):
    s = Session((40, 40))
    s.add_click(15, 15, True)
    s.add_click(24, 24, False)  # box 6..24
    s.add_click(35, 35, True)
    g = guidance_stack(grid, s)
    assert g.shape == (40, 40, 3) and g.dtype == np.float32
    assert (
        g[15, 15, 0] == 0
        and g[24, 24, 1] == 0
        and g[0, 35, 1] == pytest.approx(np.hypot(20, 10) / 255)
    )
    assert g[35, 35, 2] == 1  # the box grew to the extra positive
    corr = guidance_stack(grid, Session.from_mask(np.pad(np.ones((10, 10)), 10)))
    # correction start: S+/S- at 255
    assert np.all(corr[..., :2] == 1) and corr[..., 2].sum() == 100
    for v in ("eu", "bbox", "dt"):
        assert guidance_stack(grid, s, v).shape == (40, 40, 3)
    with pytest.raises(ValueError, match="unknown guidance variant"):
        guidance_stack(grid, s, "nope")


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8),
        np.random.default_rng(1).integers(0, 65535, (60, 80), dtype=np.uint16),
        np.random.default_rng(2).normal(size=(60, 80)).astype(np.float32),
        np.random.default_rng(3).uniform(size=(60, 80, 5)),
    ],
)
def test_superpixels_any_dtype(image):
    from napari_spbox.core.image import to_rgb_float

    rgb = to_rgb_float(image)
    assert rgb.shape == (60, 80, 3) and 0 <= rgb.min() and rgb.max() <= 1
    sp = compute_superpixels(rgb, n_segments=50)
    assert sp.labels.min() == 0 and sp.n == sp.labels.max() + 1 and 10 < sp.n < 120
    assert np.all(np.isfinite(sp.centroids))


def test_image_errors():
    from napari_spbox.core.image import to_rgb_float

    with pytest.raises(ValueError, match="no pixels"):
        to_rgb_float(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="2-D image"):
        to_rgb_float(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="finite"):
        to_rgb_float(np.full((4, 4), np.nan))


def test_window_paints_the_same_values_as_the_full_map(grid):
    from napari_spbox.core.predictor import guidance_region

    s = Session((40, 40))
    s.add_click(15, 15, True)
    s.add_click(24, 24, False)
    s.add_click(35, 12, True)
    w = Box(5, 8, 30, 37)
    full = guidance_stack(grid, s)
    np.testing.assert_array_equal(guidance_stack(grid, s, window=w), full[5:31, 8:38])
    # the region of G-hat from per-superpixel boxes equals the bounding box of its pixels
    assert guidance_region(grid, s) == Box.from_mask(full[..., 2] > 0)
