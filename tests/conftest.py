import numpy as np
import pytest


@pytest.fixture
def disk_image():
    """A bright disk (radius 40) on a dark, slightly noisy 160x200 background, and its mask."""
    rng = np.random.default_rng(0)
    rr, cc = np.mgrid[:160, :200]
    mask = (rr - 80) ** 2 + (cc - 100) ** 2 <= 40**2
    img = np.where(mask[..., None], [200, 60, 50], [30, 40, 90]).astype(np.float64)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), mask
