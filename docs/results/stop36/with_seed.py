"""Run an ``spbox`` command with OpenCV's random generator seeded by ``SPBOX_CV_SEED`` before each
GrabCut (stop 36, a diagnostic): how far GrabCut's own k-means draw moves the robot's figures.

``refine_edges`` seeds OpenCV's generator with 0 before each call, so the same clicks always give
the same mask; this reseeds with another fixed value. Usage:
``SPBOX_CV_SEED=1 python docs/results/stop36/with_seed.py evaluate ...``.
"""

import os
import sys

import cv2

_seed = cv2.setRNGSeed
cv2.setRNGSeed = lambda _: _seed(int(os.environ.get("SPBOX_CV_SEED", "0")))

if __name__ == "__main__":
    from napari_spbox.cli import main

    sys.exit(main(sys.argv[1:]))
