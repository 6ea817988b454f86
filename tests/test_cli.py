import json

import numpy as np
import pytest
from PIL import Image

from napari_spbox.cli import main


@pytest.fixture
def tiny_dataset(tmp_path, disk_image):
    img, mask = disk_image
    for k in range(2):
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / "gt").mkdir(exist_ok=True)
        Image.fromarray(np.roll(img, 15 * k, axis=0)).save(tmp_path / "img" / f"{k}.jpg")
        Image.fromarray(np.roll(mask, 15 * k, axis=0).astype(np.uint8)).save(tmp_path / "gt" / f"{k}.png")
    return tmp_path


def test_evaluate_writes_json_csv_plot(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "res" / "rw.json"
    plot = tmp_path / "res" / "rw.png"
    assert main(["evaluate", str(tiny_dataset), "--method", "random-walker", "--max-clicks", "3",
                 "--json", str(out), "--plot", str(plot), "--superpixels", "100"]) == 0
    res = json.loads(out.read_text())
    for key in ("noc@85", "noc@90", "nof@85", "nof@90", "miou_per_click", "latency_ms", "n_objects"):
        assert key in res
    assert res["n_objects"] == 2 and len(res["miou_per_click"]) == 3 and set(res["latency_ms"]) == {"median", "p90"}
    assert res["miou_per_click"][-1] > 0.8  # an easy disk: the baseline finds it
    assert out.with_suffix(".csv").read_text().count("\n") == 3
    assert plot.stat().st_size > 1000


def test_segment_grabcut_writes_overlay_and_mask(tiny_dataset, tmp_path):
    overlay, mask_png = tmp_path / "o.png", tmp_path / "m.png"
    # the disk is centred at x=100, y=80 with radius 40; negative just outside at its lower right
    assert main(["segment", str(tiny_dataset / "img" / "0.jpg"), "--method", "grabcut", "--click", "100,80",
                 "--click", "135,115,neg", "--out", str(overlay), "--mask-out", str(mask_png)]) == 0
    mask = np.asarray(Image.open(mask_png)) > 0
    assert overlay.is_file() and mask[80, 100] and not mask[5, 5]


def test_segment_refuses_out_of_protocol_click(tiny_dataset, capsys):
    assert main(["segment", str(tiny_dataset / "img" / "0.jpg"), "--method", "grabcut", "--click", "100,80,neg"]) == 2
    assert "first click must be positive" in capsys.readouterr().err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for cmd in ("segment", "evaluate", "train", "benchmark"):
        assert cmd in text


def test_demo_segments_the_coffee_cup_with_shipped_weights(tmp_path, capsys):
    from napari_spbox.demo import main as demo

    out = tmp_path / "demo.png"
    assert demo(["--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.stat().st_size > 10000 and "click 3" in text
    assert int(text.split("click 3")[1].split(":")[1].split("px")[0]) > 1000  # a real mask, not an empty one
