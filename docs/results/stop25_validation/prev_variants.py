"""Stop-25 diagnostics: what the previous-mask network does with other previous masks (validation
slice)."""

import json
import sys

import numpy as np
import torch

from napari_spbox.core.predictor import (
    enforce_clicks,
    guidance_region,
    refine_edges,
    zoom_window,
)
from napari_spbox.evaluation.metrics import summarise
from napari_spbox.evaluation.robot import evaluate
from napari_spbox.model import inference as inf
from napari_spbox.train.loop import held_apart


class ZeroPrev(inf.SPBoxPredictor):
    """The previous mask always empty: does the network read the channel at all?"""

    def previous_mask(self, session):
        return np.zeros(self.shape, dtype=np.float32)


class RawPrev(inf.SPBoxPredictor):
    """The previous mask is the network's own thresholded output (as in training), not the mask
    shown."""

    def _pass(self, session, mark, prev=None):
        sp = self.superpixels
        window = zoom_window(guidance_region(sp, session), self.shape)
        x = inf.window_input(self.rgb, sp, session, window, self.size, self.variant, prev=prev)
        prob = inf.paste_back(torch.sigmoid(self.forward(x)), window, self.shape)
        self._raw = prob.copy()
        enforce_clicks(prob, sp, session)
        if session.box is not None:
            refine_edges(self.rgb, prob, session, window, self.threshold)
            enforce_clicks(prob, sp, session)
        return prob

    def _remember(self, session, prob):
        super()._remember(session, self._raw)


weights, kind, out = sys.argv[1], sys.argv[2], sys.argv[3]
torch.set_num_threads(1)
_, items = held_apart(["../shared/datasets/coco-train", "../shared/datasets/coco-mini"])
cls = {"zero": ZeroPrev, "raw": RawPrev, "shown": inf.SPBoxPredictor}[kind]
pred = cls(weights, backend="torch")
records = evaluate(pred, items, max_clicks=20, progress=False, jobs=1)
res = summarise(records, 20)
m = res["miou_per_click"]
summary = {
    "weights": weights,
    "prev": kind,
    "objects": len(records),
    "noc@85": res["noc@85"],
    "noc@90": res["noc@90"],
    "miou1": m[0],
    "miou5": m[4],
    "miou20": m[19],
}
from napari_spbox.report import write_csv

write_csv(out.replace(".json", ".csv"), records, 20)
with open(out, "w") as f:
    f.write(json.dumps(summary, indent=1))
print(summary)
