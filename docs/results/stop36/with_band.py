"""Run an ``spbox`` command with the edge refinement's band set by ``SPBOX_BAND`` (stop 36, part B).

The band is a default argument of ``refine_edges``; the spawned workers of ``--jobs`` import this
script too, so the setting holds in them. Usage:
``SPBOX_BAND=0.05 python docs/results/stop36/with_band.py validate ...``.
"""

import os
import sys

from napari_spbox.core import predictor

defaults = list(predictor.refine_edges.__defaults__)
defaults[1] = float(os.environ.get("SPBOX_BAND", predictor.REFINE_BAND))
predictor.refine_edges.__defaults__ = tuple(defaults)

if __name__ == "__main__":
    from napari_spbox.cli import main

    sys.exit(main(sys.argv[1:]))
