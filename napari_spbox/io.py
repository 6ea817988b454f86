"""Reading images from files or bytes, keeping their depth: one loader for the CLI, datasets,
training and CVAT.

TIFF goes through tifffile (16-bit, float, multi-channel and stacks as stored); every other format
through Pillow, keeping 16-bit and float modes. The pixels stay in their own dtype:
:func:`~napari_spbox.core.image.to_rgb_float` scales them as napari's contrast limits would, so an
8-bit PNG, a 16-bit TIFF and a float TIFF of the same scene give the network the same picture.

Errors are :class:`ImageReadError` (a ``ValueError``) with a one-line message naming the file.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

TIFF_SUFFIXES = {".tif", ".tiff"}
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: At most this many channels on the last (or first) axis count as colour channels, not as a stack.
MAX_COLOUR_CHANNELS = 4


class ImageReadError(ValueError):
    """A file or buffer that is not an image this tool can read; the message says why, on one
    line."""


def size_text(shape) -> str:
    """An image size as every message writes it: width x height, in pixels.

    >>> size_text((480, 854, 3))
    '854x480 (width x height)'
    """
    return f"{int(shape[1])}x{int(shape[0])} (width x height)"


def read_image(
    source,
    channel: int | None = None,
    plane: int | None = None,
    name: str | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """An image as ``(H, W)`` or ``(H, W, C)`` in the dtype it was stored in.

    Parameters
    ----------
    source : str, Path or bytes
        A file path, or the encoded bytes (a CVAT frame).
    channel : int, optional
        For an image of more than :data:`MAX_COLOUR_CHANNELS` channels: the one to use.
    plane : int, optional
        For a stack (3-D TIFF, ``(Z, H, W)`` or ``(Z, H, W, C)``): the slice to use.
    name : str, optional
        What to call the source in messages (default: its path, or "the image").
    max_pixels : int, optional
        Refuse an image with more pixels per plane, read from its header before anything is decoded.

    Raises
    ------
    ImageReadError
        For a missing path, a folder, an empty or unreadable file, or a stack / multi-channel image
        without the ``plane`` / ``channel`` that says which part to use.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw, what = bytes(source), name or "the image"
    else:
        path = Path(source)
        what = name or str(path)
        if path.is_dir():
            raise ImageReadError(f"{what} is a folder, not an image file")
        if not path.is_file():
            raise ImageReadError(f"{what}: no such file")
        raw = path.read_bytes()
    if not raw:
        raise ImageReadError(f"{what} is empty (0 bytes)")
    if raw[:4] in _TIFF_MAGIC:
        arr = _read_tiff(raw, what, max_pixels)
    else:
        arr = _read_pillow(raw, what, max_pixels)
    return _pick(arr, channel, plane, what)


def _check_size(what: str, width: int, height: int, max_pixels: int | None) -> None:
    if width < 1 or height < 1:
        raise ImageReadError(f"{what} has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            f"{what} is {size_text((height, width))} = {width * height / 1e6:.1f} MP; "
            f"the limit is {max_pixels / 1e6:g} MP"
        )


def _read_tiff(raw: bytes, what: str, max_pixels: int | None) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(raw)) as tif:
            series = tif.series[0]
            axes = series.axes
            if "X" in axes and "Y" in axes:
                _check_size(
                    what, series.shape[axes.index("X")], series.shape[axes.index("Y")], max_pixels
                )
            elif (
                max_pixels is not None and np.prod(series.shape) > max_pixels * MAX_COLOUR_CHANNELS
            ):
                raise ImageReadError(
                    f"{what} holds {np.prod(series.shape) / 1e6:.1f} M values; "
                    f"the limit is {max_pixels / 1e6:g} MP"
                )
            arr = series.asarray()
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for broken files
        raise ImageReadError(f"{what} is not a readable TIFF: {_first_line(exc)}") from None
    # tifffile names the axes (Y, X, S for samples, C, Z, T, Q...): move colour samples last
    if "S" in axes and axes.index("S") != len(axes) - 1:
        arr = np.moveaxis(arr, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    return np.squeeze(arr) if arr.ndim > 2 else arr


def _read_pillow(raw: bytes, what: str, max_pixels: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # the caller's limit applies, from the header; Pillow's bomb warning would only add
            # noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as im:
                _check_size(what, *im.size, max_pixels)
                im.load()
                if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F", "L", "RGB"):
                    arr = np.asarray(im)  # keeps 16-bit and float depth
                else:  # palette, alpha, CMYK, 1-bit...: as the RGB a viewer shows
                    arr = np.asarray(im.convert("RGB"))
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{what} is not an image file Pillow or tifffile can read") from None
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data
        raise ImageReadError(f"{what} could not be decoded: {_first_line(exc)}") from None
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _pick(arr: np.ndarray, channel, plane, what: str) -> np.ndarray:
    """Reduce a stack or a many-channel image to one 2-D image, as ``plane`` / ``channel`` say.

    3-D arrays: a last axis of at most :data:`MAX_COLOUR_CHANNELS` is colour, so is such a first
    axis (``(C, H, W)``, as microscopes often save); a longer last axis, shorter than both sides,
    holds channels; otherwise the first axis is a stack of planes. 4-D arrays are stacks of colour
    or multi-channel planes.
    """
    if arr.ndim < 2 or 0 in arr.shape:
        raise ImageReadError(f"{what} has no usable pixels (shape {arr.shape})")
    if arr.ndim > 4:
        raise ImageReadError(
            f"{what} has {arr.ndim} dimensions {arr.shape}; save one 2-D image or a 3-D stack"
        )
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise ImageReadError(f"{what} holds {arr.dtype} values, not numbers")
    small = MAX_COLOUR_CHANNELS
    if arr.ndim == 3 and arr.shape[-1] > small and arr.shape[0] <= small:
        arr = np.moveaxis(arr, 0, -1)
    channels_last = arr.ndim == 3 and (arr.shape[-1] <= small or arr.shape[-1] < min(arr.shape[:2]))
    if arr.ndim == 4 or (arr.ndim == 3 and not channels_last):
        n = arr.shape[0]
        if plane is None:
            raise ImageReadError(
                f"{what} is a stack of {n} planes of {size_text(arr.shape[1:])}; choose one "
                f"(--plane 0..{n - 1} on the command line), or open the stack in napari"
            )
        if not 0 <= plane < n:
            raise ImageReadError(f"{what} has planes 0..{n - 1}, not {plane}")
        arr = arr[plane]
    elif plane not in (None, 0):
        raise ImageReadError(f"{what} is a single plane; --plane {plane} does not exist")
    if arr.ndim == 3 and (arr.shape[-1] > small or channel is not None):
        n = arr.shape[-1]
        if channel is None:
            raise ImageReadError(
                f"{what} has {n} channels; choose one (--channel 0..{n - 1} on the command line)"
            )
        if not 0 <= channel < n:
            raise ImageReadError(f"{what} has channels 0..{n - 1}, not {channel}")
        arr = arr[..., channel]
    return arr


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
