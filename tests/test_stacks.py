"""Stacks in the napari widget: annotating a slice of 3-D/4-D images and propagating it (the Qt-free
propagation itself is tested in test_propagation.py).

GUI tests run under ``xvfb-run -a``. The classical predictors need no weights: GrabCut for the
propagation (it starts from a box alone, as the network does), the random walker for the clicks.
"""

import time

import numpy as np
import pytest

pytest.importorskip("napari")
from qtpy.QtWidgets import QApplication
from stack_volumes import MID, SPAN, H, W, Z, ellipsoid, run_both, volume  # noqa: F401

from napari_spbox.core.geometry import iou
from napari_spbox.napari import SPBoxWidget, stacks
from napari_spbox.napari._controls import NEGATIVE, POSITIVE
from napari_spbox.napari._stack_data import blobs3d
from napari_spbox.predictors import make_predictor


@pytest.fixture
def stack_viewer(make_napari_viewer):
    def _make(image, scale=(3.0, 1.0, 1.0), labels=None):
        viewer = make_napari_viewer()
        viewer.add_image(image, name="stack", scale=scale)
        if labels is not None:
            viewer.add_labels(labels, name="labels", scale=scale)
        widget = SPBoxWidget(viewer, predictor=make_predictor("grabcut"))
        viewer.window.add_dock_widget(widget)
        return viewer, widget

    return _make


def click(viewer, widget, row, col, positive=True):
    viewer.layers[POSITIVE if positive else NEGATIVE].add([row, col])
    widget.wait()


def test_widget_annotates_a_slice_and_propagates_one_id(stack_viewer):
    vol, obj = volume()
    labels = np.zeros((Z, H, W), np.int32)
    labels[:, 85:95, 85:95] = 1  # another object on every slice, away from the blob
    labels[MID + 3, 40:50, 40:50] = 9  # and one inside the blob on slice 13
    viewer, widget = stack_viewer(vol, labels=labels.copy())
    assert widget.channel_combo.currentData() == stacks.STACK
    viewer.dims.set_current_step(0, MID)  # anisotropic scale: world z 30 is data slice 10
    widget.wait()
    assert widget.plane == (MID,)
    click(viewer, widget, 48, 50)
    click(viewer, widget, 74, 72, positive=False)
    assert iou(widget.preview_mask, obj[MID]) > 0.8
    widget.propagate()  # commits the preview as id 10, then propagates
    assert widget.prop_worker is not None  # returned at once: the work is off the GUI thread
    widget.wait()
    out = viewer.layers["labels"].data
    has = [z for z in range(Z) if (out[z] == 10).any()]
    assert has == SPAN
    assert all(iou(out[z] == 10, obj[z] & (labels[z] == 0)) > 0.6 for z in SPAN)
    np.testing.assert_array_equal(np.where(out == 10, 0, out), labels)  # other ids untouched
    assert "propagated to 10 more slices" in widget.status.text()
    # Moving to another slice starts a new object there, with that slice's image.
    viewer.dims.set_current_step(0, 2)
    widget.wait()
    assert widget.plane == (2,) and not widget.log.session.clicks


def test_widget_four_d_two_channel_stack_and_correction(stack_viewer):
    vol, _obj = volume()
    # (Z, C, H, W)
    two = np.stack(
        [np.random.default_rng(3).normal(1000, 60, vol.shape).astype(np.uint16), vol], axis=1
    )
    viewer, widget = stack_viewer(two, scale=(2.0, 1.0, 1.0, 1.0))
    assert widget.axis_combo.currentData() == 0  # the longest leading axis, Z, not the channels
    viewer.dims.set_current_step(1, 1)  # the blob is in channel 1
    viewer.dims.set_current_step(0, MID)
    widget.wait()
    assert widget.plane == (MID, 1)
    click(viewer, widget, 48, 50)
    click(viewer, widget, 74, 72, positive=False)
    widget.commit()
    target = viewer.layers["SPBox labels"]
    assert target.data.shape == two.shape and target.data.max() == 1
    widget.direction_combo.setCurrentText("forward (+)")
    widget.propagate()
    widget.wait()
    has = [z for z in range(Z) if (target.data[z, 1] == 1).any()]
    assert has == [z for z in SPAN if z >= MID] and not target.data[:, 0].any()
    # Correction on one slice changes that slice only.
    before = target.data.copy()
    widget.start_correction(1)
    assert widget.log.session.start == "mask"
    click(viewer, widget, 48, 50)
    widget.commit()
    after = target.data
    np.testing.assert_array_equal(np.delete(after, MID, axis=0), np.delete(before, MID, axis=0))
    assert (after[MID, 1] == 1).sum() > 500


def test_stop_ends_propagation_and_keeps_written_slices(stack_viewer):
    class Slow:
        name = "grabcut"

        def __init__(self):
            self.inner = make_predictor("grabcut")

        def set_image(self, image, channel_axis=-1):
            self.inner.set_image(image, channel_axis=channel_axis)

        def warm_up(self):
            self.inner.warm_up()

        def predict(self, session):
            time.sleep(0.4)
            return self.inner.predict(session)

    vol, obj = volume()
    labels = np.zeros((Z, H, W), np.int32)
    labels[MID][obj[MID]] = 4
    viewer, widget = stack_viewer(vol, labels=labels)
    viewer.dims.set_current_step(0, MID)
    widget.predictor = Slow()
    widget.id_spin.setValue(4)
    widget.wait()  # the slice's warm-up job: propagate() would otherwise wait for it
    widget.propagate()  # no preview: propagates the committed object 4
    run = widget.prop_worker
    deadline = time.monotonic() + 30
    while not run.done and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)
    widget.stop_propagation()
    widget.wait()
    out = viewer.layers["labels"].data
    has = [z for z in range(Z) if (out[z] == 4).any()]
    assert MID in has and 2 <= len(has) < len(SPAN)  # stopped early; what was written stays
    assert has == list(range(min(has), max(has) + 1))


def test_blobs3d_sample_in_the_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-spbox", "blobs3d")
    assert [ly.name for ly in viewer.layers] == ["nuclei", "cells"]
    widget = SPBoxWidget(viewer, predictor=make_predictor("grabcut"))
    widget.image_combo.select(viewer.layers["nuclei"])
    _, labels = blobs3d(return_labels=True)
    viewer.dims.set_current_step(0, 8)
    widget.wait()
    click(viewer, widget, 40, 42)  # nucleus 1: centre (z 7.5, y 40, x 42)
    click(viewer, widget, 60, 59, positive=False)
    assert iou(widget.preview_mask, labels[0, 8] == 1) > 0.7
    widget.propagate()
    widget.wait()
    out = viewer.layers["SPBox labels"].data
    has = [z for z in range(16) if (out[z] == 1).any()]
    assert set(range(5, 11)) <= set(has) and set(has) <= set(range(2, 14))
