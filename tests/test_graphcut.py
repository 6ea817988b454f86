"""The band-only GrabCut (core.graphcut): OpenCV's GrabCut answer on the pixels it may change, the
fixed ones untouched."""

import cv2
import numpy as np
from scipy import ndimage

from napari_spbox.core.graphcut import BGD, FGD, PR_BGD, PR_FGD, grabcut_band


def _scene(seed=0, shift=6):
    """A noisy two-tone object on a textured background, and GrabCut labels from an outline moved
    ``shift`` px off the object: a band of 12 px on each side undecided, the rest fixed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:120, :160]
    obj = (yy - 60) ** 2 / 40**2 + (xx - 80) ** 2 / 55**2 < 1
    img = np.where(obj[..., None], [200, 60, 50], [60, 140, 70]).astype(np.float64)
    img[obj & (xx > 80)] = [170, 80, 40]
    img += rng.normal(0, 40, img.shape) + 40 * np.sin(xx / 7.0)[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    guess = np.roll(obj, shift, axis=1)
    labels = np.where(guess, PR_FGD, PR_BGD).astype(np.uint8)
    labels[ndimage.binary_erosion(guess, iterations=12, border_value=1)] = FGD
    labels[ndimage.binary_erosion(~guess, iterations=12, border_value=1)] = BGD
    return img, labels, obj


def _opencv(img, labels):
    seeds = labels.copy()
    cv2.setRNGSeed(0)
    cv2.grabCut(img, seeds, None, np.zeros((1, 65)), np.zeros((1, 65)), 1, cv2.GC_INIT_WITH_MASK)
    return np.isin(seeds, (FGD, PR_FGD))


def test_it_moves_the_outline_as_opencvs_grabcut_does():
    """The same energy as OpenCV's GrabCut: its answer on nearly every undecided pixel, and the
    outline back on the object's edge."""
    for seed in range(3):
        img, labels, obj = _scene(seed)
        ours, theirs = grabcut_band(img, labels), _opencv(img, labels)
        band = np.isin(labels, (PR_BGD, PR_FGD))
        assert np.mean(ours[band] == theirs[band]) > 0.98
        guess_errors = (np.isin(labels, (FGD, PR_FGD)) != obj).sum()
        assert (ours != obj).sum() < 0.05 * guess_errors


def test_fixed_pixels_keep_their_label_and_the_labels_are_not_changed():
    img, labels, _ = _scene()
    img[:] = img.mean(axis=(0, 1)).astype(np.uint8)  # no colour cue at all
    before = labels.copy()
    out = grabcut_band(img, labels)
    assert (out[labels == FGD]).all() and not (out[labels == BGD]).any()
    assert (labels == before).all()


def test_the_same_input_gives_the_same_mask_and_more_iterations_still_snap():
    img, labels, obj = _scene(1)
    assert (grabcut_band(img, labels) == grabcut_band(img, labels)).all()
    three = grabcut_band(img, labels, iterations=3)
    assert (three != obj).sum() <= (grabcut_band(img, labels) != obj).sum() + 20


def test_without_both_sides_the_labels_sides_come_back():
    img, labels, _ = _scene()
    all_fg = np.full(labels.shape, PR_FGD, np.uint8)
    assert grabcut_band(img, all_fg).all()
    only_fixed = np.where(labels == FGD, FGD, BGD).astype(np.uint8)
    assert (grabcut_band(img, only_fixed) == (only_fixed == FGD)).all()


def test_a_tiny_object_still_gets_colour_models():
    """A side of a few pixels (a small nucleus in its window) learns from every one of them, also
    from a single pixel."""
    img, labels, _ = _scene()
    for n_fg in (1, 3, 40):
        tiny = np.full(labels.shape, BGD, np.uint8)
        tiny[60, 80 : 80 + n_fg] = FGD
        tiny[58:63, 78 : 82 + n_fg][tiny[58:63, 78 : 82 + n_fg] != FGD] = PR_BGD
        out = grabcut_band(img, tiny)
        assert out[tiny == FGD].all() and not out[tiny == BGD].any()
