"""napari dock widget: click-by-click instance segmentation (standard clicks, or the paper's rules).

The user clicks with two Points layers (positive / negative). Every change is replayed into a
:class:`~napari_spbox.core.protocol.Session` (:mod:`._engine`) and predicted off the GUI thread;
only one prediction runs at a time and only the newest request is run next, so clicking fast never
builds a queue of stale work. The preview lives in its own Labels layer until it is committed.
"""

from __future__ import annotations

import time
import weakref

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.postprocess import keep_clicked_components
from ..core.propagation import labels_update, plane_image
from . import stacks
from ._controls import PREVIEW, HelperLayers, ModelSettings
from ._engine import ClickLog, Job, PredictionRunner, _button, _ident, _LayerCombo, _row
from ._propagation import PropagationController

#: Shift+letter keys: napari's Points layer already uses the plain letters (Z pan/zoom, A select,
#: ...).
KEYS = {"commit": "Shift-C", "clear": "Shift-X", "undo": "Shift-Z"}


class SPBoxWidget(QWidget):
    """Dock widget for localized interactive instance segmentation.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer to work in.
    predictor : napari_spbox.core.predictor.Predictor, optional
        Use this predictor instead of building one from the model settings (tests, scripts). It is
        kept until a model setting changes.
    """

    def __init__(self, napari_viewer, predictor=None):
        super().__init__()
        self.viewer = napari_viewer
        self._quiet = False  # set while layers are being removed
        self.helpers = HelperLayers(napari_viewer, self._on_points, self._bind_keys)
        self.log: ClickLog | None = None
        self.correct_id: int | None = None
        self.preview_mask: np.ndarray | None = None
        self._preview_key = None
        # leading data indices of the slice being segmented; () for 2-D images
        self.plane: tuple = ()
        self._build_ui()
        self.propagation = PropagationController(
            self.status.setText, self._propagation_done, self.stop_button.setEnabled
        )
        if predictor is not None:
            self.model_settings.show_predictor(predictor)
        self.runner = PredictionRunner(
            self._job,
            self._on_result,
            self._on_error,
            predictor,
            self._model_key() if predictor is not None else None,
        )
        self._bind_keys(self.viewer)
        for ev in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            ev.connect(self._on_layers_changed)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self._on_image_changed()
        if predictor is None:
            # load the model now, so missing weights are reported before a click
            self.runner.request()

    # -- user interface ------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.image_combo = _LayerCombo(self.viewer, Image)
        self.channel_combo = QComboBox()
        self.labels_combo = _LayerCombo(self.viewer, Labels, skip=lambda ly: ly.name == PREVIEW)
        self.strict_box = QCheckBox("paper's click rules")
        self.strict_box.setChecked(False)
        self.strict_box.setToolTip(
            "Off (default): click where the mask is wrong - positive on a missed part, "
            "negative on a wrong one, anywhere.\n"
            "On: the paper's protocol - 1st click positive at the object's centre, "
            "2nd negative just outside it (sets the box), then negatives only inside the box "
            "and positives only outside it (they grow the box); other clicks are refused."
        )
        self.overwrite_box = QCheckBox("overwrite other objects")
        self.id_spin = QSpinBox()
        self.id_spin.setRange(1, 2**31 - 1)
        self.model_settings = ModelSettings(self._on_model_changed)
        self.method_combo, self.weights_edit = (
            self.model_settings.method,
            self.model_settings.weights,
        )
        self.axis_combo, self.direction_combo = QComboBox(), QComboBox()
        self.direction_combo.addItems(stacks.DIRECTIONS)
        self.stop_button = _button("Stop", self.stop_propagation)
        self.stop_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = self._form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("channel", self.channel_combo)
        form.addRow(
            "labels",
            _row(self.labels_combo, _button("New", lambda: self.target_layer(True, new=True))),
        )
        form.addRow(self.strict_box)
        form.addRow(self.overwrite_box)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(
            _row(
                *[
                    _button(f"{name.title()} ({KEYS[name].replace('-', '+')})", getattr(self, name))
                    for name in ("commit", "undo", "clear")
                ]
            )
        )
        lay.addLayout(
            _row(QLabel("id"), self.id_spin, _button("Correct object", self._correct_clicked))
        )
        self.propagate_button = _button("Propagate", self.propagate)
        self.propagate_button.setToolTip(
            "carry the current object to the neighbouring slices of a stack"
        )
        lay.addLayout(
            _row(self.axis_combo, self.direction_combo, self.propagate_button, self.stop_button)
        )
        lay.addWidget(self.model_settings)
        lay.addWidget(self.status)
        lay.addStretch(1)

        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.channel_combo.currentIndexChanged.connect(self._on_channel_changed)
        self.strict_box.toggled.connect(self._on_strict)

    def _correct_clicked(self) -> None:
        self.start_correction(self.id_spin.value())

    def _bind_keys(self, target) -> None:
        # A weak reference: the viewer outlives a closed widget and must not call into it.
        ref = weakref.ref(self)
        for name, key in KEYS.items():
            target.bind_key(
                key, lambda _obj, name=name: ref() and getattr(ref(), name)(), overwrite=True
            )

    # -- image, channel, helper layers -------------------------------------------------------
    def image_data(self):
        """``(array, channel_axis)`` for the predictor from the chosen image layer and channel."""
        layer = self.image_combo.layer()
        if layer is None:
            raise ValueError("choose an image layer")
        data = np.asarray(layer.data[0] if layer.multiscale else layer.data)
        ch = self.channel_combo.currentData()
        if self._is_stack(layer):
            return plane_image(
                layer.data[0] if layer.multiscale else layer.data, self.plane, layer.rgb, ch
            )
        if layer.rgb:
            return (data, -1) if ch is None else (data[..., ch], None)
        if data.ndim == 2:
            return data, None
        if data.ndim == 3:  # (C, H, W): napari shows the channels as a slider
            return (data, 0) if ch is None else (data[ch], None)
        raise ValueError(
            f"only 2-D images, RGB(A) or (C, H, W) stacks are supported, not shape {data.shape}"
        )

    def _on_layers_changed(self, event=None) -> None:
        # Never add layers while one is being removed: viewer.close() removes them one by one.
        self._quiet = getattr(event, "type", "") == "removed"
        try:
            self.image_combo.refresh()
            self.labels_combo.refresh()
        finally:
            self._quiet = False
        if self.log is not None and self.helpers.missing():
            self.log = None
            self.status.setText("a helper layer was deleted: press Clear to start again")

    def _on_image_changed(self, *_) -> None:
        layer = self.image_combo.layer()
        self.channel_combo.blockSignals(True)
        self.channel_combo.clear()
        self.axis_combo.clear()
        if layer is not None:
            for text, data in stacks.channel_items(layer):
                self.channel_combo.addItem(text, data)
            for text, data in stacks.axis_items(layer, self.viewer.dims):
                self.axis_combo.addItem(text, data)
        self.channel_combo.blockSignals(False)
        # a 2-D grey image has nothing to choose: no empty, unlabelled menu
        self._form.setRowVisible(self.channel_combo, self.channel_combo.count() > 1)
        self._update_stack_controls()
        self._select_matching_labels()
        self.log = None
        if layer is not None and not self._quiet:
            self.clear()

    def _update_stack_controls(self) -> None:
        """Propagation controls only where there are slices to propagate to (hidden otherwise)."""
        stack = self._is_stack(self.image_combo.layer())
        for w in (self.axis_combo, self.direction_combo, self.propagate_button, self.stop_button):
            w.setVisible(stack)
        for w in (self.axis_combo, self.direction_combo, self.propagate_button):
            w.setEnabled(stack)

    def _labels_fit(self, labels, image) -> bool:
        """Whether ``labels`` can hold objects of ``image`` (same spatial shape, slices
        included)."""
        shape = (image.data[0] if image.multiscale else image.data).shape[: image.ndim]
        return labels is not None and tuple(labels.data.shape) == tuple(shape)

    def _select_matching_labels(self) -> None:
        """Keep the chosen Labels layer if it fits the image, else pick one that does (or none: the
        first commit then makes one), so that switching images never writes into another image's
        labels."""
        image = self.image_combo.layer()
        if image is None or self._labels_fit(self.labels_combo.layer(), image):
            return
        fitting = [self.labels_combo.itemData(i) for i in range(self.labels_combo.count())]
        fitting = [ly for ly in fitting if self._labels_fit(ly, image)]
        self.labels_combo.select(fitting[0] if fitting else None)

    def _on_channel_changed(self, *_) -> None:
        self._update_stack_controls()
        self.runner.invalidate()
        if self._is_stack(self.image_combo.layer()) != bool(self.plane):
            self.clear()  # slices and channels swapped roles: the clicks belong to another image
        self._request()

    def _is_stack(self, layer) -> bool:
        """The layer's leading axes are slices (the widget works on the current one)."""
        ch = self.channel_combo.currentData()
        return layer is not None and layer.ndim > 2 and (layer.rgb or ch == stacks.STACK)

    def _current_plane(self) -> tuple:
        layer = self.image_combo.layer()
        return stacks.plane_of(layer, self.viewer.dims) if self._is_stack(layer) else ()

    def _on_step(self, *_) -> None:
        # The clicks belong to one slice: moving to another starts a new object there.
        if self.log is not None and not self._quiet and self._is_stack(self.image_combo.layer()):
            try:
                moved = self._current_plane() != self.plane
            except ValueError:
                moved = False
            if moved:
                self.clear()

    def _spatial(self, layer):
        shape = layer.data[0].shape if layer.multiscale else layer.data.shape
        return tuple(shape[-3:-1] if layer.rgb else shape[-2:])

    # -- clicks ----------------------------------------------------------------------------------
    def _on_points(self, positive: bool, event) -> None:
        if self.helpers.syncing or str(getattr(event, "action", "changed")) not in (
            "added",
            "removed",
            "changed",
        ):
            return
        layer = self.helpers.points(positive)
        if self.log is None:
            self._tell("choose a 2-D image layer before clicking")
            self.helpers.set_points(positive, np.zeros((0, 2)))
            return
        res = self.log.sync(positive, layer.data)
        if res.keep is not None:
            self.helpers.set_points(positive, res.keep)
        for msg in res.refused:
            rule = ' (untick "paper\'s click rules" to allow it)' if self.log.strict else ""
            self._tell(f"click refused: {msg}{rule}")
        if res.changed:
            self._after_change()

    def _tell(self, message: str, level=None) -> None:
        """A message in the status line, whole, and as a napari notification (which may cut it
        short); ``level`` is napari's ``show_info`` / ``show_error``, a warning by default."""
        self.status.setText(message)
        (level or show_warning)(f"SPBox: {message}")

    def _on_strict(self, checked: bool) -> None:
        if self.log is not None:
            self.log.strict = checked

    def undo(self) -> None:
        """Remove the last click (from its Points layer too) and show the mask from before it."""
        if self.log is None or (last := self.log.undo()) is None:
            show_info("SPBox: no click to undo")
            return
        self.helpers.set_points(last[0], self.log.coords(last[0]))
        self._after_change()

    def clear(self) -> None:
        """Drop the current object: clicks, box, preview; leaves correction mode."""
        self._reset(mask=None, correct_id=None)

    def start_correction(self, label_id: int) -> None:
        """Correction mode: start from object ``label_id`` of the target Labels layer."""
        target, image = self.target_layer(), self.image_combo.layer()
        if target is None or image is None:
            self._tell("correction needs an image layer and a Labels layer")
            return
        mask = np.asarray(
            target.data[self.plane] if target.ndim == len(self.plane) + 2 else target.data
        ) == int(label_id)
        if mask.shape != self._spatial(image) or not mask.any():
            self._tell(f"object {label_id} is not in '{target.name}' (or the shapes differ)")
            return
        self._reset(mask=mask, correct_id=int(label_id))

    def _reset(self, mask, correct_id) -> None:
        image = self.image_combo.layer()
        if image is None:
            return
        try:
            self.plane = self._current_plane()
            self.image_data()
        except ValueError as exc:
            self._tell(str(exc))
            return
        self.helpers.setup(image, self._spatial(image))
        self.log = ClickLog(self._spatial(image), self.strict_box.isChecked(), mask=mask)
        self.correct_id = correct_id
        self.runner.invalidate()
        self.runner.then = None
        for positive in (True, False):
            self.helpers.set_points(positive, np.zeros((0, 2)))
        self._after_change()

    def _after_change(self) -> None:
        self.helpers.show_box(self.log.session.box)
        if not self.log.session.clicks:
            # Nothing to predict yet: show the mask being corrected, or nothing.
            base = self.log.mask if self.log.mask is not None else np.zeros(self.log.shape, bool)
            self._show(self.log.key, base)
            self.runner.request()  # warm-up: the image's superpixels now, not on the first click
            return
        self._request()

    # -- prediction --------------------------------------------------------------------------------
    def _model_key(self):
        return self.model_settings.key()

    def _on_model_changed(self, *_) -> None:
        if self._model_key() != self.runner.model:
            self.runner.invalidate()
            self.runner.request()

    @property
    def predictor(self):
        """The predictor in use (``None`` until built); assign one to inject it."""
        return self.runner.predictor

    @predictor.setter
    def predictor(self, value) -> None:
        self.model_settings.show_predictor(value)
        self.runner.predictor, self.runner.model, self.runner.image_key = (
            value,
            self._model_key(),
            None,
        )
        self.runner.invalidate()

    @property
    def busy(self) -> bool:
        """A prediction is running or waiting."""
        return self.runner.busy

    def wait(self, timeout: float = 60.0) -> None:
        """Process Qt events until no prediction or propagation is running or waiting (tests,
        scripts)."""
        deadline = time.monotonic() + timeout
        while self.busy or self.propagation.running:
            if time.monotonic() > deadline:
                raise TimeoutError("SPBox prediction did not finish")
            QApplication.processEvents()
            time.sleep(0.005)
        QApplication.processEvents()

    def _request(self) -> None:
        if self.log is None or not self.log.session.clicks:
            return
        cached = self.runner.cache.get(self.log.key)
        if cached is not None:
            self._show(self.log.key, cached)
        else:
            self.status.setText("computing…")
            self.runner.request()

    def _job(self) -> Job | None:
        layer = self.image_combo.layer()
        session = self.log.session if self.log is not None and self.log.session.clicks else None
        key = None if session is None else self.log.key
        image_key = (
            None
            if layer is None
            else (_ident(layer), self.channel_combo.currentData(), id(layer.data), self.plane)
        )
        return Job(key, session, self._model_key(), image_key, self.image_data)

    def _on_result(self, key, pred) -> None:
        if self.log is not None and key == self.log.key:
            mask = keep_clicked_components(pred.mask, self.log.session, self.log.mask)
            dropped = int(pred.mask.sum() - mask.sum())
            note = f"in {pred.elapsed_ms / 1000:.2f} s" + (
                f" ({dropped} px apart from the clicks left out)" if dropped else ""
            )
            self._show(key, mask, note)

    def _on_error(self, exc) -> None:
        if exc.stage == "model":
            msg = (
                f"SPBox: could not load the '{self.method_combo.currentText()}' model ({exc}). "
                "Choose a weights file, or the grabcut / random-walker method, "
                "under Model settings."
            )
        else:
            msg = f"SPBox: prediction failed ({exc}); the labels were not changed"
        self._tell(msg.removeprefix("SPBox: "), show_error)

    def _show(self, key, mask: np.ndarray, note: str = "") -> None:
        self.preview_mask, self._preview_key = mask, key
        self.helpers.show_preview(mask)
        s = self.log.session
        box = "" if s.box is None else f", box {s.box.height}x{s.box.width}"
        mode = f"correcting object {self.correct_id}: " if self.correct_id is not None else ""
        self.status.setText(
            f"{mode}{len(s.positives)}+ / {len(s.negatives)}- clicks{box}, "
            f"{int(mask.sum())} px {note}"
        )

    # -- labels ----------------------------------------------------------------------------------
    def target_layer(self, create: bool = False, new: bool = False):
        """The Labels layer objects are committed to; made (image-sized, int32) when asked and
        missing."""
        layer = None if new else self.labels_combo.layer()
        image = self.image_combo.layer()
        if layer is not None and image is not None and not self._labels_fit(layer, image):
            layer = None  # another image's labels: never write there (a new layer is made below)
        if layer is None and create and image is not None:
            active = self.viewer.layers.selection.active
            # an RGB axis is last
            shape = (image.data[0] if image.multiscale else image.data).shape[: image.ndim]
            layer = self.viewer.add_labels(
                np.zeros(shape, np.int32),
                name="SPBox labels",
                scale=tuple(image.scale),
                translate=tuple(image.translate),
            )
            # Just above the image, so it never hides the clicks, box or preview.
            self.viewer.layers.move(
                self.viewer.layers.index(layer.name), self.viewer.layers.index(image.name) + 1
            )
            self.labels_combo.refresh()
            self.labels_combo.select(layer)
            self.viewer.layers.selection.active = active  # keep clicking where the user was
        return layer

    def commit(self) -> None:
        """Write the preview into the target Labels layer: a new id, or the corrected object's
        id."""
        if self.busy:
            self.runner.then = self.commit  # commit the newest mask, not the one on screen now
            return
        if (
            self.log is None
            or self._preview_key != self.log.key
            or self.preview_mask is None
            or not self.preview_mask.any()
        ):
            self._tell("nothing to commit (no mask for the current clicks)", show_info)
            return
        target = self.target_layer(create=True)
        data = np.asarray(target.data)
        mask = self.preview_mask
        if data.shape[-2:] != mask.shape or data.ndim != len(self.plane) + 2:
            self._tell(
                f"labels layer '{target.name}' has shape {data.shape}, "
                f"the image slice {mask.shape}",
                show_error,
            )
            return
        label = self.correct_id if self.correct_id is not None else int(data.max()) + 1
        if np.issubdtype(data.dtype, np.integer) and label > np.iinfo(data.dtype).max:
            self._tell(f"id {label} does not fit labels of type {data.dtype}", show_error)
            return
        idx, values, wrote = labels_update(
            data, self.plane, mask, label, self.overwrite_box.isChecked()
        )
        target.data_setitem(idx, values)
        self.id_spin.setValue(label)
        self.clear()  # the next positive click starts the next object
        if not wrote:
            self._tell("the mask lies under other objects; tick 'overwrite' to replace them")
        else:
            self._tell(
                f"committed object {label} to '{target.name}'; click the next object", show_info
            )

    # -- stacks ----------------------------------------------------------------------------------
    @property
    def prop_worker(self):
        """The propagation running now (``None`` when none is)."""
        return self.propagation.run

    def propagate(self) -> None:
        """Carry the current object (previewed, else object ``id`` on this slice) to neighbouring
        slices.

        Runs off the GUI thread; each slice is written into the Labels layer as it arrives, under
        one id, leaving other ids alone. Stop ends it early.
        """
        if self.propagation.running or self.busy:
            self.runner.then = None if self.propagation.running else self.propagate
            return
        image, axis = self.image_combo.layer(), self.axis_combo.currentData()
        if not self._is_stack(image) or axis is None or self.log is None:
            self._tell("propagation needs a stack (choose 'slices (stack)' as the channel)")
            return
        if (
            self.preview_mask is not None
            and self.log.session.clicks
            and self._preview_key == self.log.key
        ):
            self.commit()  # the previewed object becomes an id first; clear() keeps this slice
        target, label, plane = self.target_layer(), self.id_spin.value(), self.plane
        data = None if target is None else target.data
        if (
            data is None
            or data.ndim != len(plane) + 2
            or not (mask := np.asarray(data[plane]) == label).any()
        ):
            self._tell(f"object {label} is not on this slice of the labels layer: commit it first")
            return
        if self.predictor is None:
            self._tell("the model is not loaded yet")
            return
        self.propagation.start(
            self.predictor,
            image,
            self.channel_combo.currentData(),
            plane,
            axis,
            mask,
            stacks.DIRECTIONS[self.direction_combo.currentText()],
            target,
            label,
            self.overwrite_box.isChecked(),
        )

    def stop_propagation(self) -> None:
        """Stop a running propagation after the slice being predicted; written slices stay."""
        self.propagation.stop()

    def _propagation_done(self, message: str) -> None:
        if message.startswith("SPBox"):
            self._tell(message.removeprefix("SPBox: "), show_error)
        else:
            self.status.setText(message)
