"""Sample data for the napari plugin: scikit-image's coffee cup, bundled, so nothing is downloaded."""

from __future__ import annotations


def coffee_sample():
    """The coffee cup (400x600 RGB) from ``skimage.data.coffee``.

    Returns
    -------
    list of tuple
        One napari layer-data tuple ``(data, {"name": ...}, "image")``.
    """
    from skimage import data

    return [(data.coffee(), {"name": "coffee", "rgb": True}, "image")]
