"""Readers for the dataset layouts in ``shared/datasets`` and for users' own data.

* GrabCut: ``data_GT/<stem>.*`` images, ``boundary_GT/<stem>.png`` masks (255 object, 128 ignore).
* Folders: ``img/<stem>.*`` + ``gt/<stem>.png``; mask > 0 is the object (``instances=True`` gives
  one object per non-zero id instead), an optional ``ignore_value`` is excluded.
* COCO JSON: ``instances.json`` with polygon or RLE-free polygon segmentations, images beside it.

Each reader returns a list of :class:`Item`; ``item.load()`` gives ``(image, mask, ignore)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .io import read_image, size_text

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def load_image(path, channel: int | None = None, plane: int | None = None) -> np.ndarray:
    """An image file in its own dtype, ``(H, W)`` or ``(H, W, C)``
    (:func:`napari_spbox.io.read_image`)."""
    return read_image(path, channel=channel, plane=plane)


@dataclass
class Item:
    """One object to segment: an image file and how to get its mask."""

    name: str
    image_path: Path
    mask_path: Path | None = None
    object_value: int | None = None  # this id only; None: every value > 0
    ignore_value: int | None = None
    polygons: list = field(default_factory=list)  # COCO polygons, used when mask_path is None

    def load(self):
        """Return ``(image (H, W[, C]) in its file's dtype, mask bool (H, W), ignore bool (H, W) or
        None)``."""
        image = load_image(self.image_path)
        if self.mask_path is None:
            return image, polygons_to_mask(self.polygons, image.shape[:2]), None
        with Image.open(self.mask_path) as im:
            gt = np.asarray(im.convert("L") if im.mode not in ("L", "I", "I;16", "P") else im)
        if gt.shape[:2] != image.shape[:2]:
            raise ValueError(
                f"mask {self.mask_path} is {size_text(gt.shape)}, image {self.image_path} is "
                f"{size_text(image.shape)}"
            )
        ignore = gt == self.ignore_value if self.ignore_value is not None else None
        mask = gt == self.object_value if self.object_value is not None else gt > 0
        if ignore is not None:
            mask &= ~ignore
        return image, mask, ignore


def polygons_to_mask(polygons, shape) -> np.ndarray:
    """Rasterise COCO polygons (lists of x0, y0, x1, y1, ...) into a bool mask."""
    from skimage.draw import polygon as draw_polygon

    mask = np.zeros(shape, dtype=bool)
    for poly in polygons:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        rr, cc = draw_polygon(xy[:, 1], xy[:, 0], shape)
        mask[rr, cc] = True
    return mask


def _images_by_stem(folder: Path) -> dict:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def read_grabcut(root) -> list[Item]:
    """The GrabCut benchmark: 128 in the masks is ignored (no IoU, no clicks there)."""
    root = Path(root)
    images = _images_by_stem(root / "data_GT")
    masks = _images_by_stem(root / "boundary_GT")
    return [
        Item(s, images[s], masks[s], object_value=255, ignore_value=128)
        for s in sorted(images)
        if s in masks
    ]


def read_folder(root, ignore_value: int | None = None, instances: bool = False) -> list[Item]:
    """``img/`` + ``gt/`` folders matched by stem; ``instances`` splits masks into one item per
    id."""
    root = Path(root)
    images = _images_by_stem(root / "img")
    masks = _images_by_stem(root / "gt")
    items = []
    for stem in sorted(images):
        if stem not in masks:
            continue
        if not instances:
            items.append(Item(stem, images[stem], masks[stem], ignore_value=ignore_value))
            continue
        ids = np.unique(np.asarray(Image.open(masks[stem])))
        ids = [int(i) for i in ids if i != 0 and i != ignore_value]
        for i in ids:
            name = stem if len(ids) == 1 else f"{stem}#{i}"
            items.append(
                Item(name, images[stem], masks[stem], object_value=i, ignore_value=ignore_value)
            )
    return items


def read_coco(json_path, images_dir=None, min_area: float = 0.0) -> list[Item]:
    """COCO instances JSON with polygon segmentations (crowd/RLE annotations are skipped)."""
    json_path = Path(json_path)
    images_dir = Path(images_dir) if images_dir else json_path.parent / "images"
    data = json.loads(json_path.read_text())
    if not isinstance(data, dict) or not {"images", "annotations"} <= data.keys():
        raise ValueError(f"{json_path}: not a COCO instances file (no images and annotations)")
    files = {im["id"]: im["file_name"] for im in data["images"]}
    items = []
    for ann in data["annotations"]:
        seg = ann.get("segmentation")
        if ann.get("iscrowd") or not isinstance(seg, list) or ann.get("area", 0) < min_area:
            continue
        items.append(
            Item(
                f"{Path(files[ann['image_id']]).stem}#{ann['id']}",
                images_dir / files[ann["image_id"]],
                polygons=seg,
            )
        )
    return items


def read_dataset(path, ignore_value: int | None = None, instances: bool = False) -> list[Item]:
    """Detect the layout of ``path`` (GrabCut, img/gt folders, COCO JSON) and read it."""
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return read_coco(path)
    if (path / "data_GT").is_dir() and (path / "boundary_GT").is_dir():
        return read_grabcut(path)
    if (path / "img").is_dir() and (path / "gt").is_dir():
        return read_folder(path, ignore_value=ignore_value, instances=instances)
    if (path / "instances.json").is_file():
        return read_coco(path / "instances.json")
    raise ValueError(
        f"cannot tell the layout of {path}: expected data_GT/ + boundary_GT/ (GrabCut), "
        "img/ + gt/, or a COCO instances.json"
    )
