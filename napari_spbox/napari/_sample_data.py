"""Sample data for the napari plugin, bundled so nothing is downloaded: scikit-image's coffee cup
and a fluorescence image of nuclei from the 2018 Data Science Bowl (DSB2018, CC0)."""

from __future__ import annotations

from pathlib import Path

#: One image of ``nuclei-dev`` (DSB2018 stage 1, CC0; BBBC038, Caicedo et al. 2019), 256x256, 8-bit
#: grey.
NUCLEI_FILE = Path(__file__).resolve().parent.parent / "samples" / "nuclei_8a26b134.png"


def coffee_sample():
    """The coffee cup (400x600 RGB) from ``skimage.data.coffee``.

    Returns
    -------
    list of tuple
        One napari layer-data tuple ``(data, {"name": ...}, "image")``.
    """
    from skimage import data

    return [(data.coffee(), {"name": "coffee", "rgb": True}, "image")]


def nuclei_sample():
    """Fluorescent nuclei (256x256, 8-bit grey, a few dozen nuclei) from the DSB2018 data (CC0).

    Returns
    -------
    list of tuple
        One napari layer-data tuple, shown with napari's grey colormap.
    """
    from ..io import read_image

    return [(read_image(NUCLEI_FILE), {"name": "nuclei (DSB2018)", "colormap": "gray"}, "image")]
