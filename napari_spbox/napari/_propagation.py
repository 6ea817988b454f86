"""Stacks: carrying the widget's current object to neighbouring slices (:func:`.stacks.propagate_both`).

Kept apart from :mod:`._widget` so each file stays readable; the methods use the widget's controls,
layers and runner.
"""

from __future__ import annotations

import copy

import numpy as np
from napari.utils.notifications import show_error

from . import stacks


class PropagationMixin:
    """Propagate / Stop of :class:`~napari_spbox.napari.SPBoxWidget`."""

    def propagate(self) -> None:
        """Carry the current object (previewed, else object ``id`` on this slice) to neighbouring slices.

        Runs off the GUI thread (:func:`.stacks.propagate_both`); each slice is written into the
        Labels layer as it arrives, under one id, leaving other ids alone. Stop ends it early.
        """
        if self.prop_worker is not None or self.busy:
            self.runner.then = None if self.prop_worker is not None else self.propagate
            return
        image, axis = self.image_combo.layer(), self.axis_combo.currentData()
        if not self._is_stack(image) or axis is None or self.log is None:
            self._tell("propagation needs a stack (choose 'slices (stack)' as the channel)")
            return
        if self.preview_mask is not None and self.log.session.clicks and self._preview_key == self.log.key:
            self.commit()  # the previewed object becomes an id first; clear() keeps this slice
        target, label, plane = self.target_layer(), self.id_spin.value(), self.plane
        data = None if target is None else target.data
        if data is None or data.ndim != len(plane) + 2 or not (mask := np.asarray(data[plane]) == label).any():
            self._tell(f"object {label} is not on this slice of the labels layer: commit it first")
            return
        if self.predictor is None:
            self._tell("the model is not loaded yet")
            return
        self.prop_worker = stacks.PropagationRun(
            copy.copy(self.predictor),  # its own copy: set_image per slice must not disturb the click predictor
            image, self.channel_combo.currentData(), plane, axis, mask,
            stacks.DIRECTIONS[self.direction_combo.currentText()],
            target, label, self.overwrite_box.isChecked(), on_status=self.status.setText, on_done=self._propagation_done)
        self.stop_button.setEnabled(True)

    def _propagation_done(self, message: str) -> None:
        self.prop_worker = None
        self.stop_button.setEnabled(False)
        self.status.setText(message)
        if message.startswith("SPBox"):
            show_error(message)

    def stop_propagation(self) -> None:
        """Stop a running propagation after the slice being predicted; written slices stay."""
        if self.prop_worker is not None:
            self.prop_worker.stop()
