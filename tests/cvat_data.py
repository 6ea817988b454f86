"""Shared inputs of the CVAT tests: a synthetic disk scene, good and malformed requests, the handler
module."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FUNC = ROOT / "cvat_function"


# -- helpers ----------------------------------------------------------------------------------
def disk_scene(cy=60, cx=80, radius=28, shape=(120, 160), seed=0):
    """A red disk on a blue, noisy background (uint8 RGB) and its mask."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    mask = (rr - cy) ** 2 + (cc - cx) ** 2 <= radius**2
    img = np.where(mask[..., None], [200, 60, 50], [30, 40, 90]).astype(np.float64)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def b64(img: np.ndarray, fmt: str = "JPEG") -> str:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return base64.b64encode(buf.getvalue()).decode("ascii")


def cvat_request(image_b64, pos, neg=(), bbox=None):
    """The payload CVAT's lambda manager posts to an interactor ([x, y] points)."""
    return {
        "image": image_b64,
        "pos_points": [list(p) for p in pos],
        "neg_points": [list(p) for p in neg],
        "obj_bbox": bbox,
    }


def iou(a, b) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def png_header(w, h) -> bytes:
    """A PNG whose header claims ``w`` x ``h`` (no usable pixel data)."""

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


IMG, GT = disk_scene()
IMG_B64 = b64(IMG)
# Paper protocol in CVAT's [x, y]: centre click, then a click just outside the disk (diagonal).
GOOD = cvat_request(IMG_B64, [(80, 60)], [(112, 92)])
GOOD_BOX = cvat_request(IMG_B64, [(80, 60)], [], bbox=[[48, 28], [112, 92]])
BIG = io.BytesIO()
Image.new("1", (8000, 7000)).save(BIG, "PNG")  # 56 MP, a few kB: over the 50 MP limit

BAD_BODIES = {
    "invalid JSON": b'{"image": "abc", "pos_points": [[1, 2]',
    "empty body": b"",
    "JSON list, not an object": b"[1, 2, 3]",
    "not UTF-8": b"\xff\xfe\x00garbage",
    "invalid base64": {**GOOD, "image": "!!!this is not base64!!!"},
    "image not a string": {**GOOD, "image": 12345},
    "empty image": {**GOOD, "image": ""},
    "non-image bytes": {**GOOD, "image": base64.b64encode(b"hello, I am not an image").decode()},
    "truncated JPEG": {**GOOD, "image": base64.b64encode(base64.b64decode(IMG_B64)[:300]).decode()},
    "0-pixel image": {**GOOD, "image": base64.b64encode(png_header(0, 40)).decode()},
    "oversized image": {**GOOD, "image": base64.b64encode(BIG.getvalue()).decode()},
    "missing image": {k: v for k, v in GOOD.items() if k != "image"},
    "missing pos_points": {k: v for k, v in GOOD.items() if k != "pos_points"},
    "empty points, no box": {**GOOD, "pos_points": [], "neg_points": []},
    "only negatives": {**GOOD, "pos_points": [], "neg_points": [[10, 10]]},
    "NaN point": {**GOOD, "pos_points": [[float("nan"), 60]]},
    "infinite point": {**GOOD, "neg_points": [[10, float("inf")]]},
    "point outside (x)": {**GOOD, "pos_points": [[500, 60]]},
    "point outside (negative y)": {**GOOD, "neg_points": [[20, -3]]},
    "point not a pair": {**GOOD, "pos_points": [[80]]},
    "point of strings": {**GOOD, "pos_points": [["80", "60"]]},
    "point of booleans": {**GOOD, "pos_points": [[True, False]]},
    "points not a list": {**GOOD, "pos_points": "80,60"},
    "too many points": {**GOOD, "neg_points": [[5, 5]] * 5000},
    "box with one corner": {**GOOD_BOX, "obj_bbox": [[48, 28]]},
    "box outside": {**GOOD_BOX, "obj_bbox": [[48, 28], [900, 92]]},
    "box not a list": {**GOOD_BOX, "obj_bbox": "48,28,112,92"},
    "threshold out of range": {**GOOD, "threshold": 1.5},
    "threshold not a number": {**GOOD, "threshold": "high"},
    "legacy box flag, one point": {
        **GOOD,
        "obj_bbox": None,
        "pos_points": [[48, 28]],
        "startswith_box": True,
    },
}


def encode(body):
    return body if isinstance(body, (bytes, str)) else json.dumps(body).encode()


def load_main():
    """cvat_function/main.py as a module (Platform looks the handler's module up in sys.modules)."""
    name = "spbox_cvat_function_main"
    spec = importlib.util.spec_from_file_location(name, FUNC / "main.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
