"""Stop 34's confirmation slice: large objects of the COCO training data that the colour head
trained in stop 34 never sees (and that no earlier check looked at).

From the training part of coco-train + coco-mini (``spbox train``'s split, objects >= 900 px),
the objects whose bounding box's longer side is >= 160 px (40 % of a <= 400 px image), in images
whose ``sha1("confirm:" + file name)`` bucket is below 0.25. Geometry only: no model output
chose them. Writes ``<out>/img/<name>.jpg`` + ``<out>/gt/<name>.png`` (0 / 255, one object a
file, for ``spbox evaluate``) and the list of their image file names (``spbox train
--exclude-images``).

Usage, from the checkout root:
    python docs/results/stop34/make_confirm_slice.py runs/s34/confirm \
        docs/results/stop34/confirm_images.txt
"""

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from napari_spbox.train.validation import held_apart

D = Path("../shared/datasets")
MIN_SIDE = 160
FRACTION = 0.25


def bucket(name: str) -> float:
    return int(hashlib.sha1(f"confirm:{name}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def main(out: Path, names_file: Path) -> None:
    train, _ = held_apart([D / "coco-train", D / "coco-mini"])
    (out / "img").mkdir(parents=True, exist_ok=True)
    (out / "gt").mkdir(parents=True, exist_ok=True)
    images, n = set(), 0
    for k, it in enumerate(train):
        image_name = Path(it.image_path).name
        if bucket(image_name) >= FRACTION:
            continue
        _, mask, _ = it.load()
        ys, xs = np.nonzero(mask)
        if max(np.ptp(ys), np.ptp(xs)) + 1 < MIN_SIDE:
            continue
        stem = f"{Path(image_name).stem}_{k:04d}"
        shutil.copyfile(it.image_path, out / "img" / f"{stem}{Path(image_name).suffix}")
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "gt" / f"{stem}.png")
        images.add(image_name)
        n += 1
    names_file.write_text("".join(f"{name}\n" for name in sorted(images)))
    print(f"{n} objects in {len(images)} images -> {out}; names -> {names_file}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
