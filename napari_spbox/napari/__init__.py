"""napari plugin: the :class:`SPBoxWidget` dock widget and the coffee, nuclei and 3-D cell samples
(see ``napari.yaml``).

The widget needs napari, Qt (through qtpy) and magicgui: ``pip install 'napari-spbox[napari]'``. It
is imported on first use, so the Qt-free parts of this package (the samples) import without them.
"""

__all__ = ["SPBoxWidget", "blobs3d_sample", "coffee_sample", "nuclei_sample"]


def __getattr__(name):
    if name == "SPBoxWidget":
        from ._widget import SPBoxWidget

        return SPBoxWidget
    if name in ("coffee_sample", "nuclei_sample"):
        from . import _sample_data

        return getattr(_sample_data, name)
    if name == "blobs3d_sample":
        from ._stack_data import blobs3d_sample

        return blobs3d_sample
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
