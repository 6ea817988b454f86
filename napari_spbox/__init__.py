"""napari-spbox: localized interactive instance segmentation with superpixel-box guidance.

The core (:mod:`napari_spbox.core`) is numpy in, numpy out; the napari widget and the CVAT
function are thin adapters over :class:`napari_spbox.core.predictor.Predictor`.
"""

__version__ = "0.1.0"
