"""The Qt-free slice-to-slice propagation (core.propagation) and the generated 3-D sample: no napari
needed.

The classical predictors need no weights: GrabCut (it starts from a box alone, as the network does).
"""

import numpy as np
import pytest
from stack_volumes import MID, SPAN, H, W, Z, ellipsoid, run_both, volume

from napari_spbox.core import propagation as stacks
from napari_spbox.core.geometry import iou
from napari_spbox.napari._stack_data import blobs3d, blobs3d_sample
from napari_spbox.predictors import make_predictor


# -- pure functions -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method, rule", [("grabcut", {"min_contrast": 0.0}), ("random-walker", {})]
)
def test_propagate_covers_the_blob_and_stops_where_it_vanishes(method, rule):
    # GrabCut finds nothing in an empty slice, so the area/IoU rule alone stops it; the seeded
    # random walker fills the box there and needs the contrast rule.
    vol, obj = volume()
    out = run_both(make_predictor(method), vol, obj[MID], **rule)
    # every other slice it spans, nothing beyond
    assert sorted(out) == [i for i in SPAN if i != MID]
    for i, m in out.items():
        assert m.shape == (H, W) and m.dtype == bool
        assert iou(m, obj[i]) > 0.6, (i, iou(m, obj[i]))


def test_propagate_two_channel_float_stack():
    vol, obj = volume(np.float32)
    two = np.stack(
        [np.random.default_rng(5).normal(1000, 60, vol.shape).astype(np.float32), vol], axis=-1
    )
    out = run_both(make_predictor("grabcut"), two, obj[MID], channel_axis=-1)
    assert sorted(out) == [i for i in SPAN if i != MID]
    assert min(iou(m, obj[i]) for i, m in out.items()) > 0.6


def test_stop_rule_jump_and_max_slices():
    obj = ellipsoid(centre=(MID, 30, 30), axes=(30, 14, 14))  # a column through every slice...
    # ...that jumps away at slice 13
    obj[13:] = ellipsoid(centre=(MID, 70, 70), axes=(30, 14, 14))[13:]
    vol = np.random.default_rng(1).normal(1000, 60, (Z, H, W))
    vol[obj] += 1500
    pred = make_predictor("grabcut")
    fwd = [i for i, _ in stacks.propagate(pred, vol.astype(np.uint16), MID, obj[MID], direction=1)]
    assert fwd == [11, 12]  # slice 13 has nothing that overlaps slice 12's mask
    few = [
        i
        for i, _ in stacks.propagate(
            pred, vol.astype(np.uint16), MID, obj[MID], direction=-1, max_slices=3
        )
    ]
    assert few == [9, 8, 7]
    calls = iter([False, True])
    assert [
        i
        for i, _ in stacks.propagate(
            pred, vol, MID, obj[MID], direction=-1, stop=lambda: next(calls)
        )
    ] == [9]
    with pytest.raises(ValueError, match="empty"):
        next(stacks.propagate(pred, vol, MID, np.zeros((H, W), bool)))


def test_stack_limits_keep_empty_slices_dark():
    vol, _ = volume()
    lim = stacks.stack_limits(vol)
    empty, _ = stacks.slice_image(vol, 0, limits=lim)
    full, _ = stacks.slice_image(vol, MID, limits=lim)
    # Per-slice stretching would make an empty slice as contrasty as a full one.
    assert empty.dtype == np.uint8 and empty.max() < 128 and full.max() == 255


def test_labels_update_keeps_other_ids():
    data = np.zeros((4, 10, 10), np.int32)
    data[2, :5, :5] = 7  # another object, partly under the new mask
    data[2, 8, 8] = 3  # the object's old pixel outside the new mask
    data[1, 0, 0] = 3  # the same object on another slice
    mask = np.zeros((10, 10), bool)
    mask[3:7, 3:7] = True
    idx, values, wrote = stacks.labels_update(data, (2,), mask, 3)
    data[idx] = values
    assert wrote and (data[2, :5, :5] == 7).all() and data[2, 8, 8] == 0 and data[1, 0, 0] == 3
    assert (data[2] == 3).sum() == 16 - 4


def test_blobs3d_sample_is_small_deterministic_and_two_channel():
    a, labels = blobs3d(return_labels=True)
    assert a.shape == (16, 2, 128, 128) and a.dtype == np.uint16 and a.nbytes <= 2**21
    np.testing.assert_array_equal(a, blobs3d())
    assert labels[0].max() == 4 and labels[1].max() == 2
    inside, outside = a[:, 0][labels[0] > 0].mean(), a[:, 0][labels[0] == 0].mean()
    assert inside > outside + 150  # the nuclei stand out of the background
    ((_data, kwargs, kind),) = blobs3d_sample()
    assert kind == "image" and kwargs["channel_axis"] == 1 and kwargs["scale"] == (2.0, 1.0, 1.0)


# -- the widget ------------------------------------------------------------------------------------
