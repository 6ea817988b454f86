"""Reading real inputs: every depth through one loader, and every bad input refused on one line."""

import base64
import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_spbox.cli import main
from napari_spbox.core.image import to_rgb_float
from napari_spbox.io import ImageReadError, read_image, size_text


@pytest.fixture
def depths(tmp_path, disk_image):
    """The disk scene as an 8-bit PNG, a 16-bit TIFF, a 16-bit PNG and a float32 TIFF (same
    picture)."""
    img, _ = disk_image
    grey = img.mean(-1).astype(np.uint8)
    paths = {
        "png8": tmp_path / "d8.png",
        "tif16": tmp_path / "d16.tif",
        "png16": tmp_path / "d16.png",
        "tif32": tmp_path / "d32.tif",
    }
    Image.fromarray(grey).save(paths["png8"])
    tifffile.imwrite(paths["tif16"], grey.astype(np.uint16) * 257)
    Image.fromarray(grey.astype(np.uint16) * 257).save(paths["png16"])
    tifffile.imwrite(paths["tif32"], grey.astype(np.float32) / 255.0 * 3.7 - 1.0)
    return paths


def test_depth_is_kept_and_scaled_like_napari(depths):
    assert read_image(depths["png8"]).dtype == np.uint8
    assert (
        read_image(depths["tif16"]).dtype == np.uint16
        and read_image(depths["png16"]).dtype == np.uint16
    )
    assert read_image(depths["tif32"]).dtype == np.float32
    rgbs = {k: to_rgb_float(read_image(p)) for k, p in depths.items()}
    # not constant white or black: the disk stands out as in the PNG
    for k in (
        "tif16",
        "png16",
        "tif32",
    ):
        rgb = rgbs[k][..., 0]
        assert rgb[80, 100] > 0.6 and 0.4 > rgb[5, 5], k
    np.testing.assert_allclose(rgbs["tif16"], rgbs["tif32"], atol=1e-3)


def test_segment_gives_the_same_object_for_every_depth(depths, tmp_path):
    masks = {}
    for kind in ("png8", "tif16", "tif32"):
        out = tmp_path / f"m_{kind}.png"
        assert (
            main(
                [
                    "segment",
                    str(depths[kind]),
                    "--method",
                    "grabcut",
                    "--click",
                    "100,80",
                    "--click",
                    "135,115,neg",
                    "--out",
                    str(tmp_path / "o.png"),
                    "--mask-out",
                    str(out),
                ]
            )
            == 0
        )
        masks[kind] = np.asarray(Image.open(out)) > 0
    rr, cc = np.mgrid[:160, :200]
    disk = (rr - 80) ** 2 + (cc - 100) ** 2 <= 40**2
    for kind, mask in masks.items():
        assert (mask & disk).sum() / (mask | disk).sum() > 0.85, kind
        ref = masks["png8"]
        assert (mask & ref).sum() / (mask | ref).sum() > 0.97, kind


def test_stacks_and_channels_need_a_choice(tmp_path):
    stack = np.random.default_rng(0).integers(0, 4000, (16, 40, 50), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    with pytest.raises(ImageReadError, match="stack of 16 planes of 50x40"):
        read_image(tmp_path / "stack.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "stack.tif", plane=3), stack[3])
    with pytest.raises(ImageReadError, match="planes 0..15, not 16"):
        read_image(tmp_path / "stack.tif", plane=16)
    chans = np.random.default_rng(1).random((40, 50, 6), dtype=np.float32)
    tifffile.imwrite(tmp_path / "six.tif", chans, photometric="minisblack", planarconfig="contig")
    with pytest.raises(ImageReadError, match="6 channels"):
        read_image(tmp_path / "six.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "six.tif", channel=5), chans[..., 5])
    rgb_first = np.random.default_rng(2).integers(0, 255, (3, 40, 50), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "chw.tif", rgb_first, photometric="minisblack")
    assert read_image(tmp_path / "chw.tif").shape == (40, 50, 3)


def test_size_reads_width_by_height_everywhere():
    assert size_text((480, 854)) == "854x480 (width x height)"


@pytest.mark.parametrize(
    "case, word",
    [
        ("empty", "empty"),
        ("text", "not an image"),
        ("folder", "folder"),
        ("missing", "no such file"),
    ],
)
def test_segment_refuses_bad_files_on_one_line(tmp_path, capsys, case, word):
    path = {
        "empty": tmp_path / "e.png",
        "text": tmp_path / "t.png",
        "folder": tmp_path,
        "missing": tmp_path / "none.png",
    }[case]
    (tmp_path / "e.png").write_bytes(b"")
    (tmp_path / "t.png").write_text("hello")
    assert main(["segment", str(path), "--click", "10,10", "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert word in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    "args, word",
    [
        (["--click", "10,10,foo"], "pos or neg"),  # a typo must not become a positive click
        (["--click", "1,2,3,4"], "x,y"),
        (["--click", "1"], "x,y"),
        ([], "--click"),  # nothing to segment
        (["--click", "10,10", "--out", "no/such/folder/o.png"], "does not exist"),
        (["--click", "900,10"], "outside the 200x160 image (width x height)"),
        (["--click", "10,10", "--plane", "2"], "single plane"),
    ],
)
def test_segment_refuses_bad_arguments_on_one_line(
    depths, capsys, args, word, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    try:
        rc = main(["segment", str(depths["png8"]), "--method", "grabcut", *args])
    except SystemExit as exc:  # argparse refuses a malformed --click before the command runs
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and word in err and err.count("\n") == 1, err
    assert not (tmp_path / "no").exists() and not (tmp_path / "segment.png").exists()


def test_cvat_reads_16_bit_tiff_frames_and_names_bad_bodies(disk_image):
    from napari_spbox.cvat import RequestError, decode_body, decode_image

    img, _ = disk_image
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, img[..., 0].astype(np.uint16) * 200)
    arr = decode_image(base64.b64encode(buf.getvalue()).decode())
    assert arr.dtype == np.uint16 and arr.shape == (160, 200)
    for body, word in ((b"null", "got null"), (b"[1]", "got an array"), (b'"x"', "got a string")):
        with pytest.raises(RequestError, match=word):
            decode_body(body)
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((5, 30, 40), np.uint16))
    with pytest.raises(RequestError, match="stack of 5 planes"):
        decode_image(base64.b64encode(buf.getvalue()).decode())
    assert json.loads(json.dumps({"ok": 1}))  # the module's JSON helpers are untouched
