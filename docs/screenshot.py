"""Regenerate ``docs/napari_widget.png``: the dock widget on the coffee sample with the shipped
model.

Run under a display (``xvfb-run -a .venv/bin/python docs/screenshot.py``). Clicks follow the paper's
protocol: a positive at the cup's centre, a negative just outside it (the box), commit; then a
second object (the saucer) with two corrective negatives is left in preview so both layers show.
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_spbox.napari import SPBoxWidget, coffee_sample
from napari_spbox.napari._controls import NEGATIVE, POSITIVE
from napari_spbox.predictors import make_predictor

OUT = Path(__file__).resolve().parent / "napari_widget.png"


def main(out=OUT) -> Path:
    viewer = napari.Viewer(show=True)
    ((data, kwargs, _),) = coffee_sample()
    viewer.add_image(data, **kwargs)
    widget = SPBoxWidget(viewer, predictor=make_predictor("spbox"))
    viewer.window.add_dock_widget(widget, name="SPBox segmentation")

    def click(row, col, positive=True):
        viewer.layers[POSITIVE if positive else NEGATIVE].add([row, col])
        widget.wait()
        QApplication.processEvents()

    click(125, 290)  # the cup's centre
    click(250, 425, positive=False)  # just outside its lower-right corner: the box
    widget.commit()
    click(330, 300)  # the saucer, below the cup
    click(395, 520, positive=False)
    click(268, 300, positive=False)  # corrections: the cup's foot and handle are not the saucer
    click(250, 228, positive=False)
    QApplication.processEvents()
    viewer.window._qt_window.resize(1500, 900)
    QApplication.processEvents()
    viewer.reset_view()  # the whole image, whatever the window size did to the camera
    QApplication.processEvents()
    Path(out).write_bytes(b"")  # fail early on an unwritable path, before the screenshot
    viewer.screenshot(str(out), canvas_only=False)
    viewer.close()
    return Path(out)


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
