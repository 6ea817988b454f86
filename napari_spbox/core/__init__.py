"""Framework-free core: image normalisation, superpixels, guidance maps, click protocol, predictors.

Nothing under this package imports Qt, napari or nuclio.
"""

from .protocol import Box, Click, ClickRuleError, OutsideImageError, ProtocolError, Session
from .superpixels import Superpixels, compute_superpixels

__all__ = [
    "Box",
    "Click",
    "ClickRuleError",
    "OutsideImageError",
    "ProtocolError",
    "Session",
    "Superpixels",
    "compute_superpixels",
]
