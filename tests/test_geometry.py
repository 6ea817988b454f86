import numpy as np
import pytest
from scipy import ndimage

from napari_spbox.core.geometry import boundary_distance, farthest_point, iou


def test_iou_counts_intersection_over_union():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True  # 4 pixels
    b[1:3, 1:3] = True  # 4 pixels, 1 shared
    assert iou(a, b) == pytest.approx(1 / 7)
    assert iou(a, a) == 1.0 and iou(a, ~a) == 0.0
    assert iou(a.astype(np.uint8), b.astype(np.float32)) == pytest.approx(1 / 7)  # any 0/1 dtype


def test_iou_of_two_empty_masks_is_one():
    empty = np.zeros((3, 3), bool)
    assert iou(empty, empty) == 1.0
    assert iou(empty, ~empty) == 0.0  # one empty, one not: no overlap


def test_iou_leaves_out_ignored_pixels():
    a = np.array([[1, 1, 0, 0]], bool)
    b = np.array([[0, 1, 1, 0]], bool)
    assert iou(a, b) == pytest.approx(1 / 3)
    assert iou(a, b, ignore=np.array([[1, 0, 0, 0]], bool)) == pytest.approx(1 / 2)
    assert iou(a, b, ignore=np.array([[1, 0, 1, 0]], bool)) == 1.0  # only the shared pixel left
    # all but the last pixel, which neither mask has, ignored: both empty where counted
    assert iou(a, b, ignore=np.array([[1, 1, 1, 0]], bool)) == 1.0


def test_metrics_still_exports_the_same_iou():
    from napari_spbox.evaluation import metrics

    assert metrics.iou is iou


def test_farthest_point_of_an_interior_square():
    region = np.zeros((7, 7), bool)
    region[1:6, 1:6] = True
    assert farthest_point(region) == (3.0, 3, 3)


def test_farthest_point_of_an_empty_region():
    assert farthest_point(np.zeros((4, 5), bool)) == (0.0, None, None)


def test_farthest_point_treats_the_image_edge_as_boundary():
    # a band along the top edge, 3 rows deep: unpadded, the edge row would look deepest
    region = np.zeros((8, 9), bool)
    region[:3, 1:8] = True
    unpadded = ndimage.distance_transform_edt(region)
    assert np.unravel_index(np.argmax(unpadded), region.shape)[0] == 0  # on the edge
    d, r, c = farthest_point(region)
    assert (d, r, c) == (2.0, 1, 2)  # the middle row, 2 px from the edge and from the bottom
    assert region[r, c] and 0 < r < region.shape[0] - 1


def test_farthest_point_of_a_full_image_is_its_middle():
    d, r, c = farthest_point(np.ones((5, 7), bool))
    assert (d, r, c) == (3.0, 2, 2)  # 3 px from the top/bottom edges; first of the row's maxima
    dt = boundary_distance(np.ones((5, 7), bool))
    assert dt[0].max() == 1 and dt[2, 2:5].tolist() == [3, 3, 3]


def test_farthest_point_takes_the_first_deepest_pixel_row_major():
    region = np.zeros((3, 6), bool)
    region[:, 0:2] = True  # two 3 x 2 blocks on the left and right edges
    region[:, 4:6] = True
    assert farthest_point(region) == (1.0, 0, 0)


def test_boundary_distance_is_zero_outside():
    region = np.zeros((4, 4), bool)
    region[1:3, 1:3] = True
    dt = boundary_distance(region)
    assert dt.shape == (4, 4) and np.all(dt[~region] == 0) and np.all(dt[region] == 1)
