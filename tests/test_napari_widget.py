"""GUI tests of the napari dock widget (run under ``xvfb-run -a``).

They click through the Points layers as a user would (``layer.add`` is what the Points tool calls)
and use the random-walker predictor: fast, deterministic, and needs no trained weights.
"""

import numpy as np
import pytest

pytest.importorskip("napari")
from napari_spbox.napari import SPBoxWidget, _widget, coffee_sample
from napari_spbox.napari._controls import NEGATIVE, POSITIVE, PREVIEW
from napari_spbox.predictors import make_predictor

pytestmark = pytest.mark.gui

CENTRE, RADIUS = (80, 100), 40


@pytest.fixture
def notes(monkeypatch):
    """Record the widget's notifications by severity instead of only displaying them."""
    seen = {"error": [], "warning": [], "info": []}
    for kind, msgs in seen.items():
        real = getattr(_widget, f"show_{kind}")
        monkeypatch.setattr(
            _widget,
            f"show_{kind}",
            lambda msg, msgs=msgs, real=real: (msgs.append(msg), real(msg)),
        )
    return seen


@pytest.fixture
def setup(make_napari_viewer, disk_image, notes):
    """Viewer with the disk image, an existing Labels layer holding object 1, and the widget
    docked."""

    def _make(image=None, predictor=None):
        viewer = make_napari_viewer()
        img = disk_image[0] if image is None else image
        viewer.add_image(img, name="img", rgb=img.ndim == 3 and img.shape[-1] in (3, 4))
        labels = np.zeros(
            img.shape[:2] if img.ndim == 2 or img.shape[-1] in (3, 4) else img.shape[1:], np.int32
        )
        labels[5:20, 5:20] = 1  # an earlier object far from the disk
        viewer.add_labels(labels, name="labels")
        widget = SPBoxWidget(viewer, predictor=predictor or make_predictor("random-walker"))
        viewer.window.add_dock_widget(widget)
        return viewer, widget

    return _make


def click(viewer, widget, row, col, positive=True, wait=True):
    viewer.layers[POSITIVE if positive else NEGATIVE].add([row, col])
    if wait:
        widget.wait()


def disk_mask(shape=(160, 200)):
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    return (rr - CENTRE[0]) ** 2 + (cc - CENTRE[1]) ** 2 <= RADIUS**2


def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def test_positive_click_segments_disk_and_sets_box(setup):
    viewer, widget = setup()
    click(viewer, widget, *CENTRE)
    assert widget.preview_mask is not None and iou(widget.preview_mask, disk_mask()) > 0.3
    click(viewer, widget, 130, 150, positive=False)  # just outside, diagonal: the box
    box = widget.log.session.box
    assert (box.top, box.left, box.bottom, box.right) == (30, 50, 130, 150)
    assert len(viewer.layers["SPBox box"].data) == 1
    assert iou(widget.preview_mask, disk_mask()) > 0.85
    assert viewer.layers[PREVIEW].data.astype(bool).sum() == widget.preview_mask.sum()


def test_negative_click_inside_removes_area_and_undo_restores(setup):
    viewer, widget = setup()
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    before = widget.preview_mask.copy()
    click(viewer, widget, 80, 120, positive=False)  # inside the disk: the right half goes
    after = widget.preview_mask.copy()
    assert after.sum() < before.sum() - 200
    assert not after[80, 125]
    widget.undo()
    widget.wait()
    assert len(viewer.layers[NEGATIVE].data) == 1
    np.testing.assert_array_equal(widget.preview_mask, before)
    np.testing.assert_array_equal(viewer.layers[PREVIEW].data.astype(bool), before)


def test_commit_adds_new_id_and_keeps_earlier_objects(setup):
    viewer, widget = setup()
    labels = viewer.layers["labels"]
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    mask = widget.preview_mask.copy()
    widget.commit()
    assert labels.data[5:20, 5:20].tolist() == np.ones((15, 15)).tolist()  # object 1 untouched
    assert set(np.unique(labels.data)) == {0, 1, 2}
    np.testing.assert_array_equal(labels.data == 2, mask & (labels.data != 1))
    # the widget starts the next object: no clicks, empty preview
    assert len(viewer.layers[POSITIVE].data) == 0 and not viewer.layers[PREVIEW].data.any()
    click(viewer, widget, 140, 180)
    click(viewer, widget, 155, 195, positive=False)
    widget.commit()
    assert labels.data.max() == 3 and (labels.data == 2).sum() == mask.sum()


def test_commit_does_not_overwrite_unless_asked(setup):
    viewer, widget = setup()
    labels = viewer.layers["labels"]
    labels.data[60:100, 90:110] = 1  # object 1 now covers part of the disk
    labels.refresh()
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    widget.commit()
    assert (labels.data[60:100, 90:110] == 1).all()
    assert (labels.data == 2).sum() > 1000
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    widget.overwrite_box.setChecked(True)
    widget.commit()
    assert (labels.data[70:90, 95:105] == 3).all()


def test_keys_bound_on_viewer_and_points_layers(setup):
    viewer, widget = setup()
    for target in (viewer, viewer.layers[POSITIVE], viewer.layers[NEGATIVE]):
        assert {str(k) for k in target.keymap} >= {"Shift+C", "Shift+X", "Shift+Z"}
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    viewer.layers[POSITIVE].keymap[
        next(k for k in viewer.layers[POSITIVE].keymap if str(k) == "Shift+Z")
    ](None)
    assert len(widget.log.session.clicks) == 1 and len(viewer.layers[NEGATIVE].data) == 0
    viewer.keymap[next(k for k in viewer.keymap if str(k) == "Shift+X")](viewer)
    assert len(widget.log.session.clicks) == 0 and len(viewer.layers[POSITIVE].data) == 0


def test_inference_error_notifies_and_changes_no_labels(setup, notes):
    class Broken:
        def set_image(self, image, channel_axis=-1):
            pass

        def warm_up(self):
            pass

        def predict(self, session):
            raise RuntimeError("boom")

    viewer, widget = setup(predictor=Broken())
    labels_before = viewer.layers["labels"].data.copy()
    preview_before = viewer.layers[PREVIEW].data.copy()
    click(viewer, widget, *CENTRE)
    assert any("boom" in m for m in notes["error"])
    widget.commit()
    widget.wait()
    np.testing.assert_array_equal(viewer.layers["labels"].data, labels_before)
    np.testing.assert_array_equal(viewer.layers[PREVIEW].data, preview_before)


def test_missing_weights_is_reported(setup, notes, tmp_path):
    viewer, widget = setup()
    widget.method_combo.setCurrentText("spbox")
    widget.weights_edit.setText(str(tmp_path / "nope.pt"))
    widget._on_model_changed()
    widget.wait()
    assert any("nope.pt" in m and "Model settings" in m for m in notes["error"])
    widget.method_combo.setCurrentText("random-walker")  # choosing a baseline works again
    widget.wait()
    click(viewer, widget, *CENTRE)
    assert widget.preview_mask.any() and widget.predictor.name == "random-walker"


def test_precise_edges_box_rebuilds_the_spbox_predictor(setup):
    viewer, widget = setup()
    widget.method_combo.setCurrentText("spbox")
    widget.wait()
    assert widget.predictor.name == "spbox" and widget.predictor.precise_edges is False
    widget.model_settings.precise.setChecked(True)
    widget.wait()
    assert widget.predictor.precise_edges is True
    click(viewer, widget, *CENTRE)
    assert widget.preview_mask[CENTRE]  # the rebuilt predictor segments


def test_out_of_protocol_click_is_refused_under_the_papers_rules(setup, notes):
    viewer, widget = setup()
    assert not widget.strict_box.isChecked()  # the paper's rules are an option, off by default
    widget.strict_box.setChecked(True)
    click(viewer, widget, 10, 190, positive=False)  # first click negative: refused
    assert len(viewer.layers[NEGATIVE].data) == 0 and not widget.log.session.clicks
    assert any("first click must be positive" in m for m in notes["warning"])
    # the whole message is in the widget's status line, not only in a toast that may cut it
    assert (
        "first click must be positive" in widget.status.text()
        and "paper's click rules" in widget.status.text()
    )
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    click(viewer, widget, 5, 5, positive=False)  # negative outside the box: refused
    assert len(viewer.layers[NEGATIVE].data) == 1
    assert any("inside the box" in m for m in notes["warning"])
    widget.strict_box.setChecked(False)  # non-strict accepts it
    click(viewer, widget, 5, 5, positive=False)
    assert len(viewer.layers[NEGATIVE].data) == 2 and len(widget.log.session.clicks) == 3


def test_removing_a_point_reruns_prediction(setup):
    viewer, widget = setup()
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    before = widget.preview_mask.copy()
    click(viewer, widget, 80, 120, positive=False)
    neg = viewer.layers[NEGATIVE]
    neg.selected_data = {1}
    neg.remove_selected()
    widget.wait()
    assert len(widget.log.session.negatives) == 1
    np.testing.assert_array_equal(widget.preview_mask, before)


def test_correction_mode_commits_back_to_same_id(setup):
    viewer, widget = setup()
    labels = viewer.layers["labels"]
    rough = disk_mask() & (np.mgrid[:160, :200][1] < 100)  # half the disk, as id 5
    labels.data[rough] = 5
    labels.refresh()
    widget.start_correction(5)
    np.testing.assert_array_equal(widget.preview_mask, rough)
    box = widget.log.session.box
    rows, cols = np.nonzero(rough)
    assert (box.top, box.left, box.bottom, box.right) == (
        rows.min(),
        cols.min(),
        rows.max(),
        cols.max(),
    )
    click(viewer, widget, 80, 139)  # positive outside the box: grows it over the missing half
    assert widget.log.session.box.right == 139
    mask = widget.preview_mask.copy()
    assert mask[:, 100:].sum() > 500  # the correction reaches into the missing half
    widget.commit()
    assert set(np.unique(labels.data)) == {0, 1, 5}  # no new id
    assert (labels.data == 1).sum() == 15 * 15
    # old pixels outside the new mask are gone
    np.testing.assert_array_equal(labels.data == 5, mask)


def test_uint16_grayscale_image(setup):
    img = np.full((160, 200), 9000, np.uint16) + np.random.default_rng(1).integers(
        0, 300, (160, 200)
    ).astype(np.uint16)
    img[disk_mask()] = 52000
    viewer, widget = setup(image=img)
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    assert iou(widget.preview_mask, disk_mask()) > 0.85
    widget.commit()
    assert (viewer.layers["labels"].data == 2).sum() > 4000


def test_multichannel_stack_channel_choice(setup):
    rng = np.random.default_rng(2)
    stack = rng.normal(100, 5, (3, 160, 200)).astype(np.float32)
    stack[1][disk_mask()] += 400  # the disk is only visible in channel 1
    viewer, widget = setup(image=stack)
    widget.channel_combo.setCurrentIndex(widget.channel_combo.findData(1))
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    assert iou(widget.preview_mask, disk_mask()) > 0.85


def test_coffee_sample_and_new_labels_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    ((data, kwargs, kind),) = coffee_sample()
    assert kind == "image" and data.shape == (400, 600, 3)
    viewer.add_image(data, **kwargs)
    widget = SPBoxWidget(viewer, predictor=make_predictor("random-walker"))
    click(viewer, widget, 200, 300)
    click(viewer, widget, 300, 420, positive=False)
    assert widget.preview_mask.any()
    widget.commit()
    assert "SPBox labels" in viewer.layers and viewer.layers["SPBox labels"].data.max() == 1


def test_fast_clicks_run_only_the_newest_state(setup):
    import time

    class Slow:
        """Random walker that takes a while and records the click count of every job it ran."""

        def __init__(self):
            self.inner, self.calls = make_predictor("random-walker"), []

        def set_image(self, image, channel_axis=-1):
            self.inner.set_image(image, channel_axis=channel_axis)

        def warm_up(self):
            self.inner.warm_up()

        def predict(self, session):
            self.calls.append(len(session.clicks))
            time.sleep(0.5)
            return self.inner.predict(session)

    slow = Slow()
    viewer, widget = setup(predictor=slow)
    widget.wait()  # the image's warm-up job
    click(viewer, widget, *CENTRE, wait=False)
    for r, c, p in ((130, 150, False), (80, 120, False), (60, 90, False)):
        click(viewer, widget, r, c, p, wait=False)
    assert widget.busy  # the clicks above returned at once: the GUI thread is not blocked
    widget.wait()
    assert slow.calls == [1, 4]  # the two intermediate states were never computed
    assert widget._preview_key == widget.log.key and len(widget.log.session.clicks) == 4


def test_plugin_dock_widget_survives_new_layers(make_napari_viewer, disk_image, notes):
    viewer = make_napari_viewer()
    viewer.add_image(disk_image[0], name="img")
    _, widget = viewer.window.add_plugin_dock_widget("napari-spbox", "SPBox segmentation")
    widget.wait()  # loads the default method; the shipped weights may not exist yet
    assert widget.method_combo.currentText() == "spbox"
    # the shipped weights loaded
    assert widget.predictor is not None and widget.predictor.name == "spbox"
    assert not notes["error"]
    widget.predictor = make_predictor("random-walker")
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    viewer.add_points(name="unrelated")  # adding layers must not reset the object
    assert len(widget.log.session.clicks) == 2 and iou(widget.preview_mask, disk_mask()) > 0.85
    widget.commit()
    assert viewer.layers["SPBox labels"].data.max() == 1


def test_moving_a_point_is_checked_against_the_protocol(setup, notes):
    viewer, widget = setup()
    widget.strict_box.setChecked(True)
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    click(viewer, widget, 80, 120, positive=False)
    neg = viewer.layers[NEGATIVE]
    neg.data = np.array([[130.0, 150.0], [80.0, 60.0]])  # drag the inner negative to the left side
    widget.wait()
    assert widget.log.session.negatives[-1].col == 60 and not widget.preview_mask[80, 55]
    neg.data = np.array([[130.0, 150.0], [5.0, 5.0]])  # out of the box: refused, put back
    widget.wait()
    np.testing.assert_array_equal(neg.data, [[130.0, 150.0], [80.0, 60.0]])
    assert widget.log.session.negatives[-1].col == 60
    assert any("inside the box" in m for m in notes["warning"])


def test_the_image_is_prepared_before_the_first_click(setup):
    """SLIC runs off the GUI thread when the image is chosen, so the first click waits only for the
    network; that click then reuses those superpixels."""
    pred = make_predictor("spbox")
    viewer, widget = setup(predictor=pred)
    widget.wait()
    warmed = pred._superpixels
    assert warmed is not None and warmed.shape == (160, 200) and not widget.preview_mask.any()
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    assert pred.superpixels is warmed and iou(widget.preview_mask, disk_mask()) > 0.8


def two_tone_disk():
    """The disk with a red left half and a blue right half on grey: one click finds one half
    only."""
    img = np.full((160, 200, 3), 120, np.uint8)
    left = disk_mask() & (np.mgrid[:160, :200][1] < CENTRE[1])
    img[left] = (230, 30, 30)
    img[disk_mask() & ~left] = (30, 30, 230)
    return img


def test_positive_click_on_a_missed_part_inside_the_box_grows_the_mask(setup, notes):
    """The natural correction (a positive click where the mask is missing) works by default."""
    viewer, widget = setup(image=two_tone_disk())
    click(viewer, widget, 80, 75)  # the red half
    click(viewer, widget, 130, 150, positive=False)  # the box covers the whole disk
    before = widget.preview_mask.copy()
    assert before[80, 75] and not before[80, 130]  # the blue half is missed
    assert widget.log.session.box.right >= 130  # so the next click lies inside the box
    click(viewer, widget, 80, 130)  # positive on the missed part
    assert len(widget.log.session.positives) == 2 and not notes["warning"]
    assert widget.preview_mask[80, 130] and widget.preview_mask.sum() > before.sum() + 1000
    assert iou(widget.preview_mask, disk_mask()) > 0.85
    widget.undo()
    widget.strict_box.setChecked(True)  # the paper's rules refuse that same click
    click(viewer, widget, 80, 130)
    assert len(widget.log.session.positives) == 1 and "outside the box" in widget.status.text()


def test_switching_images_gives_a_matching_labels_layer(setup):
    """A second image of another shape never writes into the first one's labels, and propagation
    works there."""
    viewer, widget = setup()
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    widget.commit()
    first = viewer.layers["labels"].data.copy()
    stack = np.full((5, 160, 200), 20.0, np.float32)
    stack[:, disk_mask()] = 200.0
    viewer.add_image(stack, name="cells")
    widget.image_combo.select(viewer.layers["cells"])
    widget.wait()
    assert widget.labels_combo.layer() is None  # the 2-D labels do not fit a 5-slice stack
    assert widget.channel_combo.currentData() == "stack" and widget.propagate_button.isEnabled()
    assert widget.axis_combo.itemText(0) == "along axis 0 (5 slices)"
    viewer.dims.set_current_step(0, 2)
    widget.clear()
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    widget.commit()
    made = widget.target_layer()
    assert made is not None and made.data.shape == (5, 160, 200) and made.data[2][CENTRE] == 1
    # the 2-D labels are untouched
    np.testing.assert_array_equal(viewer.layers["labels"].data, first)
    widget.propagate()
    widget.wait()
    assert all(made.data[k][CENTRE] == 1 for k in range(5)), "propagation reaches every slice"
    widget.image_combo.select(viewer.layers["img"])  # back: the 2-D labels again, no propagation
    widget.wait()
    assert widget.labels_combo.layer().name == "labels" and not widget.propagate_button.isEnabled()


def test_controls_fit_the_image(setup):
    viewer, widget = setup(image=np.zeros((50, 60), np.uint8))
    # no empty, unlabelled menu on 2-D grey
    assert not widget._form.isRowVisible(widget.channel_combo)
    assert not widget.propagate_button.isEnabled() and not widget.axis_combo.isEnabled()
    assert widget.axis_combo.isHidden() and widget.propagate_button.isHidden()  # no empty menu
    viewer.add_image(np.zeros((16, 40, 50), np.float32), name="z16")
    widget.image_combo.select(viewer.layers["z16"])
    items = [widget.channel_combo.itemText(i) for i in range(widget.channel_combo.count())]
    assert items == ["slices (stack)"]  # 16 slices are never offered as "channel 0..15"
    assert widget.propagate_button.isEnabled() and not widget.axis_combo.isHidden()
    assert widget.axis_combo.currentText() == "along axis 0 (16 slices)"


def test_parts_no_click_supports_are_left_out(setup):
    from napari_spbox.core.predictor import Prediction

    class Speckled:
        """Random walker plus a stray 6x6 speck far from the clicks (the spoon beside the cup)."""

        def __init__(self):
            self.inner = make_predictor("random-walker")

        def set_image(self, image, channel_axis=-1):
            self.inner.set_image(image, channel_axis=channel_axis)

        def warm_up(self):
            self.inner.warm_up()

        def predict(self, session):
            pred = self.inner.predict(session)
            prob = pred.prob.copy()
            prob[140:146, 10:16] = 1.0
            return Prediction(prob, pred.threshold, pred.elapsed_ms)

    viewer, widget = setup(predictor=Speckled())
    click(viewer, widget, *CENTRE)
    click(viewer, widget, 130, 150, positive=False)
    assert (
        not widget.preview_mask[140:146, 10:16].any()
        and iou(widget.preview_mask, disk_mask()) > 0.85
    )
    assert "apart from the clicks left out" in widget.status.text()
    click(viewer, widget, 142, 12)  # a positive click on the speck keeps it
    assert widget.preview_mask[140:146, 10:16].all()


def test_many_objects_in_a_row_need_only_clicks_and_commits(setup):
    """Annotating a field of objects: each commit leaves the widget ready, the next click starts the
    next."""
    img = np.full((160, 200), 30, np.uint8)
    rr, cc = np.mgrid[:160, :200]
    centres = [(40, 40), (40, 150), (120, 60), (115, 160)]
    truth = [(rr - r) ** 2 + (cc - c) ** 2 <= 18**2 for r, c in centres]
    for t in truth:
        img[t] = 220
    viewer, widget = setup(image=img)
    for k, (r, c) in enumerate(centres):
        click(viewer, widget, r, c)  # one positive click, nothing else pressed
        click(viewer, widget, r + 24, c + 24, positive=False)
        assert len(widget.log.session.clicks) == 2
        widget.commit()
        assert (
            len(viewer.layers[POSITIVE].data) == 0
            and "click the next object" in widget.status.text()
        )
    labels = viewer.layers["labels"].data
    for k, t in enumerate(truth):
        assert iou(labels == k + 2, t) > 0.85, k


def test_nuclei_sample_opens_and_a_nucleus_is_segmented(make_napari_viewer):
    """File > Open Sample > Nuclei: a real fluorescence image (DSB2018, CC0) shipped with the
    package."""
    from napari_spbox.io import read_image
    from napari_spbox.napari._sample_data import NUCLEI_FILE

    viewer = make_napari_viewer()
    viewer.open_sample("napari-spbox", "nuclei")
    layer = viewer.layers["nuclei (DSB2018)"]
    assert layer.data.shape == (256, 256) and layer.data.dtype == np.uint8 and not layer.rgb
    np.testing.assert_array_equal(layer.data, read_image(NUCLEI_FILE))
    widget = SPBoxWidget(viewer, predictor=make_predictor("grabcut"))
    # the nucleus of nuclei-dev's 8a26b134_29 (rows 93-112, cols 53-70)
    click(viewer, widget, 102, 61)
    click(viewer, widget, 116, 74, positive=False)
    rows, cols = np.nonzero(widget.preview_mask)
    assert (
        widget.preview_mask[102, 61] and rows.min() >= 85 and rows.max() <= 118 and cols.max() <= 76
    )


def test_microscopy_weights_are_picked_by_name_and_find_the_nucleus(make_napari_viewer):
    """The weights menu offers the shipped files by name; the microscopy weights segment a nucleus
    of the nuclei sample with one click."""
    from pathlib import Path

    from napari_spbox.io import read_image

    viewer = make_napari_viewer()
    viewer.open_sample("napari-spbox", "nuclei")
    widget = SPBoxWidget(viewer)
    settings = widget.model_settings
    assert [settings.preset.itemText(i) for i in range(settings.preset.count())] == [
        "natural",
        "microscopy",
    ]
    settings.preset.setCurrentText("microscopy")
    widget.wait()
    assert widget.predictor.model.arch == "espnetv2"
    click(viewer, widget, 102, 61)
    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nuclei-dev"
    gt = read_image(shared / "gt" / "8a26b134_29.png") > 0
    assert iou(widget.preview_mask, gt) > 0.7
