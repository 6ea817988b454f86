import json

import numpy as np
import pytest
from PIL import Image

from napari_spbox.datasets import read_dataset


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_grabcut_layout_ignores_128(tmp_path):
    img = np.zeros((10, 12, 3), np.uint8)
    gt = np.zeros((10, 12), np.uint8)
    gt[2:6, 2:6] = 255
    gt[6:8, 2:6] = 128
    _save(tmp_path / "data_GT" / "a.jpg", img)
    _save(tmp_path / "boundary_GT" / "a.png", gt)
    (item,) = read_dataset(tmp_path)
    image, mask, ignore = item.load()
    assert (
        image.shape == (10, 12, 3)
        and mask.sum() == 16
        and ignore.sum() == 8
        and not (mask & ignore).any()
    )


def test_folder_layout_binary_ignore_and_instances(tmp_path):
    img = np.zeros((10, 12, 3), np.uint8)
    gt = np.zeros((10, 12), np.uint8)
    gt[1:3, 1:3] = 1
    gt[5:9, 5:9] = 2
    gt[0, 11] = 7
    _save(tmp_path / "img" / "x.jpg", img)
    _save(tmp_path / "gt" / "x.png", gt)
    _save(tmp_path / "img" / "orphan.jpg", img)  # no mask: skipped
    (item,) = read_dataset(tmp_path, ignore_value=7)
    _, mask, ignore = item.load()
    assert mask.sum() == 4 + 16 and ignore.sum() == 1
    items = read_dataset(tmp_path, instances=True)
    assert sorted(i.name for i in items) == ["x#1", "x#2", "x#7"]
    assert items[1].load()[1].sum() == 16


def test_coco_json_polygons(tmp_path):
    _save(tmp_path / "images" / "5.jpg", np.zeros((20, 30, 3), np.uint8))
    data = {
        "images": [{"id": 5, "file_name": "5.jpg", "height": 20, "width": 30}],
        "annotations": [
            {
                "id": 1,
                "image_id": 5,
                "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]],
                "area": 100,
                "iscrowd": 0,
            },
            {"id": 2, "image_id": 5, "segmentation": {"counts": "x"}, "area": 50, "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "instances.json").write_text(json.dumps(data))
    (item,) = read_dataset(tmp_path)
    _, mask, ignore = item.load()
    assert ignore is None and 90 <= mask.sum() <= 121 and mask[7, 7] and not mask[15, 20]


def test_unknown_layout_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot tell the layout"):
        read_dataset(tmp_path)


def test_shared_datasets_read():
    from pathlib import Path

    # shared/ sits beside the repo
    root = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    assert len(read_dataset(root / "grabcut")) == 50
    assert len(read_dataset(root / "davis-dev")) == 87
