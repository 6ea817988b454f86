"""napari plugin: the :class:`SPBoxWidget` dock widget and the coffee, nuclei and 3-D cell samples (see ``napari.yaml``).

Importing this package needs napari, Qt (through qtpy) and magicgui: ``pip install 'napari-spbox[napari]'``.
"""

from ._sample_data import coffee_sample, nuclei_sample
from ._stack_data import blobs3d_sample
from ._widget import SPBoxWidget

__all__ = ["SPBoxWidget", "blobs3d_sample", "coffee_sample", "nuclei_sample"]
