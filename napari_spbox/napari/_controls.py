"""Parts of the dock widget that hold no segmentation logic: model settings and the helper
layers."""

from __future__ import annotations

import weakref

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QLineEdit,
    QSpinBox,
)

from ..predictors import METHODS, PredictorSettings
from ._engine import _button, _row

POSITIVE, NEGATIVE, BOX, PREVIEW = (
    "positive clicks",
    "negative clicks",
    "SPBox box",
    "SPBox preview",
)


class ModelSettings(QGroupBox):
    """Method, weights, device, superpixel count and edge precision; ``on_change`` is called after
    any edit."""

    def __init__(self, on_change):
        super().__init__("Model settings")
        self.method = QComboBox()
        self.method.addItems(METHODS)
        from ..model.weights import shipped_weights

        # the shipped weights by name (natural images, microscopy); a file typed or browsed to wins
        self.preset = QComboBox()
        self.preset.addItems(list(shipped_weights()))
        self.preset.setToolTip(
            "natural: photos (COCO-trained); microscopy: fluorescence and stained nuclei "
            "(DSB2018-trained); or choose a weights file on the right"
        )
        self.weights = QLineEdit()
        self.weights.setPlaceholderText("or a weights file (.pt)")
        self.device = QComboBox()
        self.device.addItems(["cpu", "cuda"])
        self.segments = QSpinBox()
        self.segments.setRange(50, 20000)
        self.segments.setSingleStep(100)
        self.segments.setValue(1000)
        self.precise = QCheckBox("precise edges (slower)")
        self.precise.setToolTip(
            "spbox: refine the outline at full size with 3 GrabCut iterations instead of one "
            "on a reduced copy; about 3x the time of a click"
        )
        form = QFormLayout(self)
        form.addRow("method", self.method)
        form.addRow("weights", _row(self.preset, self.weights, _button("…", self._browse)))
        form.addRow("device", self.device)
        form.addRow("superpixels", self.segments)
        form.addRow(self.precise)
        self._on_change = on_change
        self.method.currentIndexChanged.connect(on_change)
        self.weights.editingFinished.connect(on_change)
        self.preset.currentIndexChanged.connect(on_change)
        self.device.currentIndexChanged.connect(on_change)
        self.segments.editingFinished.connect(on_change)
        self.precise.toggled.connect(on_change)

    def key(self) -> PredictorSettings:
        """What the predictor is built from (options of other methods left at their defaults)."""
        method = self.method.currentText()
        return PredictorSettings.for_method(
            method,
            superpixels=self.segments.value(),
            weights=self.weights.text().strip() or self._preset_weights(),
            device=self.device.currentText(),
            edges="precise" if self.precise.isChecked() else None,
        )

    def _preset_weights(self) -> str | None:
        """The chosen shipped weights' name; ``None`` for the first (the default)."""
        index = self.preset.currentIndex()
        return self.preset.currentText() if index > 0 else None

    def show_predictor(self, predictor) -> None:
        """Reflect a predictor injected by code, without treating that as a user's edit.

        Any object with ``set_image`` and ``predict`` may be injected; what it does not say is left
        as is.
        """
        widgets = (self.method, self.device, self.segments, self.precise)
        for w in widgets:
            w.blockSignals(True)
        try:
            if getattr(predictor, "name", None) in METHODS:
                self.method.setCurrentText(predictor.name)
            if getattr(predictor, "device", None) is not None:
                self.device.setCurrentText(predictor.device.type)
            if isinstance(getattr(predictor, "n_segments", None), int):
                self.segments.setValue(predictor.n_segments)
            if isinstance(getattr(predictor, "precise_edges", None), bool):
                self.precise.setChecked(predictor.precise_edges)
        finally:
            for w in widgets:
                w.blockSignals(False)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "SPBox weights", "", "PyTorch weights (*.pt *.pth)"
        )
        if path:
            self.weights.setText(path)
            self._on_change()


class HelperLayers:
    """The widget's own layers: positive and negative Points, the box (Shapes) and the preview
    (Labels).

    ``on_points(positive, event)`` receives the Points layers' data events; ``bind_keys(layer)``
    adds the widget's shortcuts to each new Points layer.
    """

    def __init__(self, viewer, on_points, bind_keys):
        self.viewer = viewer
        self._on_points = weakref.WeakMethod(on_points)
        self._bind_keys = bind_keys
        self.syncing = False  # our own edits of the Points layers are not user clicks

    def get(self, name):
        # napari's LayerList has no get()
        return self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401

    def missing(self) -> bool:
        return any(self.get(n) is None for n in (POSITIVE, NEGATIVE, PREVIEW))

    def setup(self, image, shape) -> None:
        """Create what is missing, sized and placed like ``image`` (2-D ``shape``); select
        positives."""
        geo = {"scale": tuple(image.scale[-2:]), "translate": tuple(image.translate[-2:])}
        size = max(3.0, 0.012 * max(shape))
        preview = self.get(PREVIEW)
        if preview is None or preview.data.shape != shape:
            if preview is not None:
                self.viewer.layers.remove(preview)
            # One fixed bright colour: the preview must not look like a committed object.
            self.viewer.add_labels(
                np.zeros(shape, np.uint8),
                name=PREVIEW,
                opacity=0.5,
                colormap={None: "transparent", 1: "cyan"},
                **geo,
            )
        if self.get(BOX) is None:
            self.viewer.add_shapes(
                ndim=2,
                name=BOX,
                edge_color="yellow",
                face_color="transparent",
                edge_width=max(1.0, 0.004 * max(shape)),
                **geo,
            )
        for name, positive, color in ((NEGATIVE, False, "red"), (POSITIVE, True, "lime")):
            if self.get(name) is None:
                pts = self.viewer.add_points(
                    ndim=2, name=name, face_color=color, border_color="white", size=size, **geo
                )
                pts.current_face_color = color
                pts.events.data.connect(
                    lambda ev, p=positive: (f := self._on_points()) and f(p, ev)
                )
                self._bind_keys(pts)
        for name in (PREVIEW, BOX, NEGATIVE, POSITIVE):
            self.viewer.layers[name].scale, self.viewer.layers[name].translate = (
                geo["scale"],
                geo["translate"],
            )
        self.viewer.layers.selection.active = self.get(POSITIVE)
        self.get(POSITIVE).mode = "add"

    def set_points(self, positive: bool, coords) -> None:
        layer = self.get(POSITIVE if positive else NEGATIVE)
        if layer is None:
            return
        self.syncing = True
        try:
            layer.data = np.asarray(coords, dtype=float).reshape(-1, 2)
            layer.selected_data = set()
        finally:
            self.syncing = False

    def points(self, positive: bool):
        return self.get(POSITIVE if positive else NEGATIVE)

    def show_box(self, box) -> None:
        shapes = self.get(BOX)
        if shapes is not None:
            shapes.data = []
            if box is not None:
                shapes.add(
                    [[box.top - 0.5, box.left - 0.5], [box.bottom + 0.5, box.right + 0.5]],
                    shape_type="rectangle",
                )

    def show_preview(self, mask: np.ndarray) -> None:
        preview = self.get(PREVIEW)
        if preview is not None and preview.data.shape == mask.shape:
            preview.data = mask.astype(np.uint8)
