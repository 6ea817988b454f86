"""DAVIS-dev with a band of +-W px around each object's outline ignored (as GrabCut's 128 pixels are):
how much of NoC@90 is outline precision. Usage: band.py DATASET W OUT.json"""
import functools, json, sys
from dataclasses import dataclass
import numpy as np
from scipy import ndimage


@dataclass
class BandItem:
    item: object
    width: int

    @property
    def name(self):
        return self.item.name

    def load(self):
        image, gt, ignore = self.item.load()
        band = ndimage.binary_dilation(gt, iterations=self.width) & ~ndimage.binary_erosion(gt, iterations=self.width)
        ignore = band if ignore is None else (ignore | band)
        return image, gt & ~band, ignore


if __name__ == "__main__":
    from napari_spbox.core.predictor import make_predictor
    from napari_spbox.datasets import read_dataset
    from napari_spbox.evaluation.metrics import summarise
    from napari_spbox.evaluation.robot import evaluate
    from napari_spbox.report import write_csv

    path, width, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    items = [BandItem(it, width) for it in read_dataset(path)]
    build = functools.partial(make_predictor, "spbox")
    build = functools.partial(build, backend=build().backend)
    per = evaluate(build, items, "standard", 20, False, desc=f"band {width}", jobs=2)
    s = summarise(per, 20)
    json.dump(s, open(out, "w"), indent=1)
    write_csv(out.replace(".json", ".csv"), per)
    print(width, {k: s[k] for k in ("noc@85", "noc@90", "nof@90") if k in s})
