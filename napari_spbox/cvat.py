"""CVAT interactor protocol: validate one request, run the shared predictor, answer a mask.

Used by the Nuclio function (``cvat_function/main.py``), the dev HTTP server
(:mod:`napari_spbox.serve`) and the native cvat-sdk function (``cvat_function/native.py``),
so all three accept and refuse exactly the same requests.

Request (JSON object, what CVAT's lambda manager posts)
--------------------------------------------------------
``image``
    base64 of the encoded frame (JPEG, PNG, ... anything Pillow reads).
``pos_points`` / ``neg_points``
    lists of ``[x, y]`` in CVAT canvas coordinates (pixel ``i`` covers ``[i, i + 1)``).
``obj_bbox``
    ``[[x1, y1], [x2, y2]]``, or ``null`` / ``[]`` / missing when the user drew no box.
``threshold``
    optional probability threshold in (0, 1); the predictor's own otherwise.
``startswith_box``
    optional legacy flag, see below.

Where the box comes from (one rule, in this order)
--------------------------------------------------
1. a non-empty ``obj_bbox`` (CVAT >= 2.4 sends the user's box there);
2. otherwise, when the request says ``"startswith_box": true`` or the deployment sets
   ``SPBOX_BOX_IN_POS_POINTS=1``, the first two ``pos_points`` are the box corners (servers older
   than ``obj_bbox`` prepended them there for ``startswith_box`` functions). Nothing in such a
   request tells corners from clicks, so this is never guessed;
3. otherwise the paper's start: the first positive is the centre click and the first negative the
   click just outside; together they set the box (:func:`napari_spbox.core.protocol.box_from_pair`).

CVAT sends the two point lists without their interleaving, so the session gets the first positive,
the first negative, then the remaining positives and negatives. CVAT cannot enforce the paper's
click rules, so sessions are non-strict.

Answer: ``200 {"mask": [[0/1, ...], ...]}`` (H x W, the decoded image's size);
``400 {"error": ...}`` for anything wrong with the request; ``500 {"error": ...}`` when inference
itself fails.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import threading
import traceback
from dataclasses import dataclass, field

import numpy as np

from .core.protocol import ProtocolError, Session
from .io import size_text

#: Largest image accepted, in pixels (50 megapixels: a 8K frame is 33 MP). Bigger frames would
#: take minutes for superpixels and gigabytes for the float copies, so they are refused up front.
MAX_PIXELS = 50_000_000
#: Most points accepted per list; a real session has a few dozen.
MAX_POINTS = 1000

ENV_METHOD = "SPBOX_METHOD"
ENV_WEIGHTS = "SPBOX_WEIGHTS"
ENV_DEVICE = "SPBOX_DEVICE"
ENV_BOX_IN_POS_POINTS = "SPBOX_BOX_IN_POS_POINTS"
ENV_MAX_PIXELS = "SPBOX_MAX_PIXELS"
ENV_PRECISE_EDGES = "SPBOX_PRECISE_EDGES"


class RequestError(ValueError):
    """The request is malformed; the message says what is wrong (answered with status 400)."""


@dataclass
class InteractorRequest:
    """A validated request: the image and the clicks in pixel ``(row, col)`` coordinates."""

    image: np.ndarray
    positives: list = field(default_factory=list)
    negatives: list = field(default_factory=list)
    box: tuple | None = None  # ((r0, c0), (r1, c1))
    threshold: float | None = None
    image_key: bytes = b""

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[:2]


# -- parsing ----------------------------------------------------------------------------------
def decode_body(body) -> dict:
    """The request body as a dict: Nuclio hands over a dict (JSON content type), bytes or str."""
    if isinstance(body, dict):
        return body
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("the body is not UTF-8 JSON") from None
    if not isinstance(body, str):
        raise RequestError(f"the body must be a JSON object, got {type(body).__name__}")
    if not body.strip():
        raise RequestError("the body is empty; expected a JSON object with image and pos_points")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(
            f"the body must be a JSON object with 'image' and 'pos_points', got {_json_type(data)}"
        )
    return data


def decode_image(text, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode CVAT's base64 frame to an ``(H, W, 3)`` uint8 array (or ``(H, W)`` for 16-bit /
    float).

    The size is checked from the header before any pixel is decoded, so an oversized or
    decompression-bomb image costs nothing.
    """
    from .io import ImageReadError, read_image

    if not isinstance(text, str):
        raise RequestError(f"'image' must be a base64 string, got {_json_type(text)}")
    if text.startswith("data:") and "," in text:  # tolerate a data URL from hand-made requests
        text = text.split(",", 1)[1]
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(f"'image' is not valid base64: {exc}") from None
    if not raw:
        raise RequestError("'image' is empty")
    try:
        # the frame's own depth is kept (16-bit, float TIFF): to_rgb_float stretches it like napari
        # would
        return read_image(raw, name="'image'", max_pixels=max_pixels)
    except ImageReadError as exc:
        raise RequestError(str(exc)) from None
    except MemoryError:
        raise RequestError("'image' is too large to decode") from None


def _json_type(v) -> str:
    """How JSON names the type of a parsed value (null, array, ...), for messages a client can act
    on."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        int: "a number",
        float: "a number",
    }.get(type(v), type(v).__name__)


def _short(v, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters: error messages must stay small whatever was sent."""
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _number(v, what: str) -> float:
    # bool is an int in Python, but true/false as a coordinate is a client bug, not a pixel.
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise RequestError(f"{what} must be a number, got {_short(v)}")
    f = float(v)
    if not math.isfinite(f):
        raise RequestError(f"{what} is not finite ({_short(v)})")
    return f


def _pixel(pt, shape, what: str) -> tuple[int, int]:
    """CVAT ``[x, y]`` -> pixel ``(row, col)``; x may equal W (the right edge of the last pixel)."""
    if not isinstance(pt, (list, tuple)) or len(pt) != 2:
        raise RequestError(f"{what} must be a pair [x, y], got {_short(pt)}")
    x, y = _number(pt[0], f"{what} x"), _number(pt[1], f"{what} y")
    h, w = shape
    if not (0.0 <= x <= w and 0.0 <= y <= h):
        raise RequestError(f"{what} [{x:g}, {y:g}] is outside the {size_text(shape)} image")
    return min(int(y), h - 1), min(int(x), w - 1)


def parse_points(value, name: str, shape) -> list[tuple[int, int]]:
    """Validate a list of ``[x, y]`` points; ``None`` counts as no points."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise RequestError(f"'{name}' must be a list of [x, y] points, got {type(value).__name__}")
    if len(value) > MAX_POINTS:
        raise RequestError(f"'{name}' has {len(value)} points; at most {MAX_POINTS} are accepted")
    return [_pixel(p, shape, f"{name}[{i}]") for i, p in enumerate(value)]


def parse_box(value, shape):
    """``obj_bbox`` -> ``((r0, c0), (r1, c1))`` or ``None``; also takes a flat
    ``[x1, y1, x2, y2]``."""
    if value is None or (isinstance(value, list) and not value):
        return None
    if (
        isinstance(value, list)
        and len(value) == 4
        and not any(isinstance(v, (list, tuple)) for v in value)
    ):
        value = [value[:2], value[2:]]
    if not isinstance(value, list) or len(value) != 2:
        raise RequestError(f"'obj_bbox' must be [[x1, y1], [x2, y2]], got {_short(value)}")
    return _pixel(value[0], shape, "obj_bbox[0]"), _pixel(value[1], shape, "obj_bbox[1]")


def _truthy(v) -> bool:
    return str(v).strip().lower() in ("1", "true", "yes", "on")


def parse_request(
    body, *, box_in_pos_points: bool = False, max_pixels: int = MAX_PIXELS
) -> InteractorRequest:
    """Validate a CVAT interactor request (see the module docstring); raises
    :class:`RequestError`."""
    data = decode_body(body)
    if "image" not in data:
        raise RequestError("missing key 'image' (base64 of the encoded frame)")
    if "pos_points" not in data:
        raise RequestError("missing key 'pos_points' (list of [x, y])")
    raw_image = data["image"]
    image = decode_image(raw_image, max_pixels)
    shape = image.shape[:2]
    pos = parse_points(data["pos_points"], "pos_points", shape)
    neg = parse_points(data.get("neg_points"), "neg_points", shape)
    box = parse_box(data.get("obj_bbox"), shape)
    if box is None and (box_in_pos_points or _truthy(data.get("startswith_box", False))):
        if len(pos) < 2:
            raise RequestError("startswith_box: the first two pos_points must be the box corners")
        box, pos = (pos[0], pos[1]), pos[2:]
    if box is None and not pos:
        raise RequestError("at least one positive point (or an obj_bbox) is needed")
    threshold = data.get("threshold")
    if threshold is not None:
        threshold = _number(threshold, "'threshold'")
        if not 0.0 < threshold < 1.0:
            raise RequestError(f"'threshold' must lie in (0, 1), got {threshold:g}")
    key = hashlib.blake2b(raw_image.encode("ascii", "replace"), digest_size=16).digest()
    return InteractorRequest(image, pos, neg, box, threshold, key)


def request_from_prompts(
    image, pos_points, neg_points=(), bbox=None, threshold=None
) -> InteractorRequest:
    """A validated request from an already decoded image and ``(x, y)`` prompts (cvat-sdk
    agents)."""
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise RequestError(f"the image has an unusable shape {arr.shape}")
    shape = arr.shape[:2]
    pos = parse_points([list(p) for p in pos_points], "pos_points", shape)
    neg = parse_points([list(p) for p in neg_points], "neg_points", shape)
    box = parse_box([list(p) for p in bbox] if bbox else None, shape)
    if box is None and not pos:
        raise RequestError("at least one positive point (or a bounding box) is needed")
    return InteractorRequest(arr, pos, neg, box, threshold)


def build_session(req: InteractorRequest) -> Session:
    """The non-strict :class:`Session` for a request (order of clicks: see the module docstring)."""
    if req.box is not None:
        session = Session.from_box(req.shape, req.box[0], req.box[1], strict=False)
        clicks = [(p, True) for p in req.positives] + [(n, False) for n in req.negatives]
    else:
        session = Session(req.shape, strict=False)
        pos, neg = req.positives, req.negatives
        clicks = [(pos[0], True)] + [(n, False) for n in neg[:1]]
        clicks += [(p, True) for p in pos[1:]] + [(n, False) for n in neg[1:]]
    for (r, c), positive in clicks:
        session.add_click(r, c, positive)
    return session


def mask_json(mask: np.ndarray) -> str:
    """``{"mask": [[0, 1, ...], ...]}`` for a boolean H x W mask, built with numpy.

    Same text as ``json.dumps({"mask": mask.astype(int).tolist()}, separators=(",", ":"))`` but
    without a Python int object per pixel (a 12 MP frame would take seconds and gigabytes that way).
    """
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    rows = np.empty((h, 2 * w + 2), dtype=np.uint8)
    rows[:, 0] = ord("[")
    rows[:, 1 : 2 * w : 2] = m.astype(np.uint8) + ord("0")
    rows[:, 2 : 2 * w : 2] = ord(",")
    rows[:, 2 * w] = ord("]")
    rows[:, 2 * w + 1] = ord(",")
    body = rows.tobytes()[:-1].decode("ascii")
    return '{"mask":[' + body + "]}"


def error_json(message: str) -> str:
    return json.dumps({"error": message})


# -- the service ------------------------------------------------------------------------------
class InteractorService:
    """One predictor shared by every request; ``handle`` never raises.

    Parameters
    ----------
    predictor : napari_spbox.core.predictor.Predictor
        Loaded once (model weights, device) and reused.
    box_in_pos_points : bool
        Treat the first two positive points as box corners when ``obj_bbox`` is absent (legacy
        CVAT servers, see the module docstring).
    max_pixels : int
        Largest image accepted.
    log : callable, optional
        ``log(message)`` for failed inferences (tracebacks); Nuclio passes its logger.
    """

    def __init__(
        self, predictor, *, box_in_pos_points: bool = False, max_pixels: int = MAX_PIXELS, log=None
    ):
        self.predictor = predictor
        self.box_in_pos_points = box_in_pos_points
        self.max_pixels = max_pixels
        self.log = log
        # Predictors keep per-image state (image, superpixels), so predictions are serialised: the
        # threaded dev server shares one service between its threads. (Nuclio's Python workers are
        # separate processes, each with its own service.)
        self._lock = threading.Lock()
        self._image_key: bytes | None = None
        self._image: np.ndarray | None = None

    @classmethod
    def from_env(cls, env=None, log=None) -> InteractorService:
        """Build from ``SPBOX_METHOD`` (default ``spbox``), ``SPBOX_WEIGHTS`` (default: shipped),
        ``SPBOX_DEVICE`` (default ``cpu``), ``SPBOX_PRECISE_EDGES`` (default off),
        ``SPBOX_BOX_IN_POS_POINTS`` and ``SPBOX_MAX_PIXELS``."""
        env = os.environ if env is None else env
        return cls.create(
            env.get(ENV_METHOD) or "spbox",
            weights=env.get(ENV_WEIGHTS) or None,
            device=env.get(ENV_DEVICE) or "cpu",
            precise_edges=_truthy(env.get(ENV_PRECISE_EDGES, "0")),
            box_in_pos_points=_truthy(env.get(ENV_BOX_IN_POS_POINTS, "0")),
            max_pixels=int(env.get(ENV_MAX_PIXELS) or MAX_PIXELS),
            log=log,
        )

    @classmethod
    def create(
        cls,
        method: str = "spbox",
        weights=None,
        device: str = "cpu",
        precise_edges: bool = False,
        **kw,
    ) -> InteractorService:
        """Load the predictor named ``method`` (``spbox``, ``grabcut`` or ``random-walker``).

        ``precise_edges`` (spbox only) refines each outline at full size with three GrabCut
        iterations: slower clicks, for annotators who want the edge placed exactly.
        """
        from .predictors import PredictorSettings, make_predictor

        edges = "precise" if precise_edges else None
        settings = PredictorSettings(method, weights=weights, device=device, edges=edges)
        return cls(make_predictor(settings), **kw)

    def predict(self, req: InteractorRequest) -> np.ndarray:
        """Boolean mask for a validated request; raises what the predictor raises."""
        session = build_session(req)
        with self._lock:
            # CVAT resends the same frame with every click: reusing the array keeps the predictor's
            # cached superpixels, so only the first click on a frame pays for them.
            if not req.image_key:  # caller keeps the array alive; the predictor's own cache applies
                self._image_key = self._image = None
                self._set_image(req.image)
            elif req.image_key != self._image_key or self._image is None:
                self._image_key = None  # a failed set_image must not leave a stale cache behind
                self._set_image(req.image)
                self._image, self._image_key = req.image, req.image_key
            else:
                self.predictor.set_image(self._image)
            pred = self.predictor.predict(session)
        mask = pred.prob > req.threshold if req.threshold is not None else pred.mask
        if mask.shape != req.shape:
            raise RuntimeError(
                f"the predictor returned a {mask.shape} mask for a {req.shape} image"
            )
        return mask

    def _set_image(self, image) -> None:
        try:
            self.predictor.set_image(image)
        except ValueError as exc:  # e.g. a float image with no finite value: the client's image
            raise RequestError(f"'image' cannot be used: {exc}") from None

    def handle(self, body) -> tuple[int, str]:
        """``(status, JSON text)`` for one request body: 200 mask, 400 bad request, 500 failure."""
        try:
            req = parse_request(
                body, box_in_pos_points=self.box_in_pos_points, max_pixels=self.max_pixels
            )
            mask = self.predict(req)
        except (RequestError, ProtocolError) as exc:
            # ProtocolError comes from the request's clicks
            return 400, error_json(str(exc))
        except Exception as exc:  # noqa: BLE001 - a server must answer, whatever the model raised
            if self.log is not None:
                self.log(f"spbox inference failed: {traceback.format_exc()}")
            return 500, error_json(f"inference failed: {type(exc).__name__}: {exc}")
        return 200, mask_json(mask)
