"""Stop 25: what a click costs with a previous-mask network, followed click by click or replayed
from nothing.

Usage: python replay_cost.py [WEIGHTS]   (default: stop 25's epoch 8; stop 26 passed its epoch 10)
"""

import statistics
import sys
import time

import torch
from skimage import data

from napari_spbox.core.protocol import Session
from napari_spbox.model.inference import SPBoxPredictor

torch.set_num_threads(1)
img = data.coffee()
clicks = [
    (200, 300, True),
    (120, 200, False),
    (250, 350, True),
    (300, 420, False),
    (180, 260, True),
    (330, 250, False),
    (150, 330, True),
    (260, 210, False),
    (220, 400, True),
    (140, 380, False),
]
res = {}
for label, w in [
    ("default weights (6 channels until stop 26, 7 since)", None),
    ("WEIGHTS", sys.argv[1] if len(sys.argv) > 1 else "runs/s25/prevmask10/weights_e8.pt"),
]:
    follow, times = SPBoxPredictor(w), []
    follow.set_image(img)
    follow.warm_up()
    s = Session(img.shape, strict=False)
    for r, c, p in clicks:
        s.add_click(r, c, p)
        t = time.perf_counter()
        follow.predict(s)
        times.append((time.perf_counter() - t) * 1000)
    cold = []
    for _ in range(3):
        fresh = SPBoxPredictor(w)
        fresh.set_image(img)
        fresh.warm_up()
        t = time.perf_counter()
        fresh.predict(s)
        cold.append((time.perf_counter() - t) * 1000)
    res[label] = (statistics.median(times[1:]), statistics.median(cold), follow.backend)
    print(
        f"{label}: later click median {res[label][0]:.0f} ms; "
        f"10-click session on a fresh predictor {res[label][1]:.0f} ms ({follow.backend})"
    )
