"""A synthetic stack shared by the propagation tests (Qt-free) and the widget's stack tests."""

import numpy as np

from napari_spbox.core import propagation

Z, H, W = 20, 96, 96
MID = 10  # the slice the user annotates
SPAN = list(range(5, 16))  # slices the ellipsoid covers


def ellipsoid(centre=(MID, 48, 50), axes=(5.5, 22, 18)):
    zz, yy, xx = np.ogrid[:Z, :H, :W]
    return sum(((g - c) / a) ** 2 for g, c, a in zip((zz, yy, xx), centre, axes)) <= 1


def volume(dtype=np.uint16, seed=0):
    """A bright ellipsoid on slices 5..15 of a dark, noisy 20x96x96 stack, and its mask."""
    obj = ellipsoid()
    vol = np.random.default_rng(seed).normal(1000, 60, (Z, H, W))
    vol[obj] += 1500
    return vol.clip(0).astype(dtype), obj


def run_both(predictor, vol, mask, **kw):
    out = {}
    for direction in (1, -1):
        for index, m in propagation.propagate(predictor, vol, MID, mask, direction=direction, **kw):
            assert index not in out
            out[index] = m
    return out
