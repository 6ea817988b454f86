"""Regenerate the napari screenshots of ``docs/``.

Run under a display: ``xvfb-run -a .venv/bin/python docs/screenshot.py`` writes
``docs/napari_widget.png``, the dock widget on the coffee sample with the shipped model;
``... docs/screenshot.py stack`` writes ``docs/napari_stack.png``, a nucleus of the generated
Cells 3-D sample annotated on its middle slice with the shipped microscopy weights and propagated
both ways. Clicks follow the paper's protocol: a positive at the object's centre, a negative just
outside it (the box).

napari_widget.png: the cup is clicked and committed; then a second object (the saucer) with two
corrective negatives is left in preview so both layers show.
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_spbox.napari import SPBoxWidget, coffee_sample
from napari_spbox.napari._controls import NEGATIVE, POSITIVE
from napari_spbox.napari._stack_data import blobs3d_sample
from napari_spbox.predictors import make_predictor

OUT = Path(__file__).resolve().parent / "napari_widget.png"
STACK_OUT = Path(__file__).resolve().parent / "napari_stack.png"


def _clicker(viewer, widget):
    def click(row, col, positive=True):
        viewer.layers[POSITIVE if positive else NEGATIVE].add([row, col])
        widget.wait()
        QApplication.processEvents()

    return click


def _save(viewer, out) -> Path:
    """Screenshot the whole window (1500x900, the image fitted) to ``out`` and close the viewer."""
    QApplication.processEvents()
    viewer.window._qt_window.resize(1500, 900)
    QApplication.processEvents()
    viewer.reset_view()  # the whole image, whatever the window size did to the camera
    QApplication.processEvents()
    Path(out).write_bytes(b"")  # fail early on an unwritable path, before the screenshot
    viewer.screenshot(str(out), canvas_only=False)
    viewer.close()
    return Path(out)


def main(out=OUT) -> Path:
    viewer = napari.Viewer(show=True)
    ((data, kwargs, _),) = coffee_sample()
    viewer.add_image(data, **kwargs)
    widget = SPBoxWidget(viewer, predictor=make_predictor("spbox"))
    viewer.window.add_dock_widget(widget, name="SPBox segmentation")
    click = _clicker(viewer, widget)

    click(125, 290)  # the cup's centre
    click(250, 425, positive=False)  # just outside its lower-right corner: the box
    widget.commit()
    click(330, 300)  # the saucer, below the cup
    click(395, 520, positive=False)
    click(268, 300, positive=False)  # corrections: the cup's foot and handle are not the saucer
    click(250, 228, positive=False)
    return _save(viewer, out)


def stack(out=STACK_OUT) -> Path:
    viewer = napari.Viewer(show=True)
    ((data, kwargs, _),) = blobs3d_sample()
    nuclei, cells = viewer.add_image(data, **kwargs)
    cells.visible = False  # the green channel would tint the labelled nucleus
    # Injected so the natural default is never loaded; picking the weights in the menu, as a user
    # would, then shows them (the widget rebuilds its predictor from the menu).
    widget = SPBoxWidget(viewer, predictor=make_predictor("spbox", weights="microscopy"))
    viewer.window.add_dock_widget(widget, name="SPBox segmentation")
    widget.model_settings.preset.setCurrentText("microscopy")
    widget.image_combo.select(nuclei)
    widget.wait()
    # Slice 7 of 16, through the middle of the top-left nucleus (centre z 7.5, y 40, x 42;
    # semi-axes 18 px in y, 15 px in x); z is a world coordinate (scale 2).
    viewer.dims.set_point(0, 7 * nuclei.scale[0])
    QApplication.processEvents()
    click = _clicker(viewer, widget)

    click(40, 42)  # the nucleus's centre
    click(60, 59, positive=False)  # just outside its lower-right edge: the box
    widget.propagate()  # commits the preview as object 1, then both directions
    widget.wait(timeout=300)
    return _save(viewer, out)


if __name__ == "__main__":
    args = sys.argv[1:]
    print(stack(*args[1:]) if args[:1] == ["stack"] else main(*args))
