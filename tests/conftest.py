import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_graph_cache(tmp_path_factory):
    """Exported ONNX graphs go to a per-run folder, not the user's ~/.cache (exported once per
    run)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SPBOX_CACHE_DIR", str(tmp_path_factory.mktemp("spbox_cache")))
    yield
    mp.undo()


@pytest.fixture
def disk_image():
    """A bright disk (radius 40) on a dark, slightly noisy 160x200 background, and its mask."""
    rng = np.random.default_rng(0)
    rr, cc = np.mgrid[:160, :200]
    mask = (rr - 80) ** 2 + (cc - 100) ** 2 <= 40**2
    img = np.where(mask[..., None], [200, 60, 50], [30, 40, 90]).astype(np.float64)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), mask


@pytest.fixture
def disk_dataset(tmp_path, disk_image):
    """The disk image as a one-image ``img/`` + ``gt/`` dataset (mask 255 = object); returns its
    folder."""
    from PIL import Image

    img, mask = disk_image
    root = tmp_path / "disk_dataset"
    (root / "img").mkdir(parents=True)
    (root / "gt").mkdir()
    Image.fromarray(img).save(root / "img" / "disk.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(root / "gt" / "disk.png")
    return root


@pytest.fixture
def tiny_training():
    """``TrainConfig`` options of a seconds-long CPU run on the small test images: batch 2 at
    64 px, no validation, no progress bars, objects of 100 px and more."""
    return {"batch_size": 2, "size": 64, "val_objects": 0, "progress": False, "min_area": 100}
