"""CVAT interactor: the Nuclio handler (through nuclio_sdk's test Platform) and function.yaml.

Every prediction uses the classical random-walker predictor (SPBOX_METHOD override): fast, no
weights, unless a test is about the network's own settings.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from cvat_data import (
    BAD_BODIES,
    FUNC,
    GOOD,
    GOOD_BOX,
    GT,
    IMG,
    b64,
    cvat_request,
    disk_scene,
    iou,
    load_main,
)
from nuclio_sdk import Event
from nuclio_sdk.test import Platform

from napari_spbox.core.predictor import THRESHOLD, Prediction
from napari_spbox.core.protocol import Box, box_from_pair
from napari_spbox.cvat import MAX_PIXELS, InteractorService, build_session, mask_json, parse_request


@pytest.fixture
def nuclio(monkeypatch):
    """``call(body) -> (status, decoded JSON)`` through the real handler + init_context."""
    monkeypatch.setenv("SPBOX_METHOD", "random-walker")
    monkeypatch.delenv("SPBOX_BOX_IN_POS_POINTS", raising=False)
    main = load_main()
    platform = Platform()

    def call(body, content_type="application/json"):
        response = platform.call_handler(
            main.handler, Event(body=body, content_type=content_type, method="POST")
        )
        assert response.content_type == "application/json"
        return response.status_code, json.loads(response.body)

    call.main = main
    call.platform = platform
    return call


# -- Nuclio handler ---------------------------------------------------------------------------
def test_init_context_loads_the_model_once(nuclio):
    nuclio(GOOD)
    context = nuclio.platform._get_handler_context(nuclio.main.handler)
    service = context.user_data.model
    assert isinstance(service, InteractorService) and service.predictor.name == "random-walker"
    nuclio(GOOD_BOX)
    assert nuclio.platform._get_handler_context(nuclio.main.handler).user_data.model is service


@pytest.mark.parametrize(
    "case", ["clicks", "obj_bbox", "legacy-box-in-pos_points", "bytes-body", "png"]
)
def test_cvat_request_gives_mask_of_the_object(nuclio, case):
    body = {
        "clicks": GOOD,
        "obj_bbox": GOOD_BOX,
        # old servers: the box corners first in pos_points, flagged by the request
        "legacy-box-in-pos_points": {
            **GOOD,
            "pos_points": [[48, 28], [112, 92], [80, 60]],
            "neg_points": [],
            "obj_bbox": None,
            "startswith_box": True,
        },
        "bytes-body": json.dumps(
            GOOD
        ).encode(),  # Nuclio hands bytes when the content type is not JSON
        "png": {**GOOD, "image": b64(IMG, "PNG")},
    }[case]
    status, answer = nuclio(body)
    assert status == 200, answer
    mask = np.asarray(answer["mask"])
    assert mask.shape == IMG.shape[:2] and set(np.unique(mask)) <= {0, 1}
    assert iou(mask.astype(bool), GT) > 0.8


def test_box_selects_the_object_inside_it(nuclio):
    # A box around the second of two alike disks gives that one only.
    img, _ = disk_scene(60, 80, 28, shape=(120, 220))
    _, gt2 = disk_scene(60, 180, 22, shape=(120, 220))
    img[gt2] = [200, 60, 50]
    body = cvat_request(b64(img), [(180, 60)], [], bbox=[[150, 30], [210, 90]])
    status, answer = nuclio(body)
    mask = np.asarray(answer["mask"], bool)
    assert status == 200 and iou(mask, gt2) > 0.7 and not mask[:, :120].any()


def test_session_from_request():
    # obj_bbox sets the box; [x, y] becomes (row, col).
    session = build_session(parse_request(GOOD_BOX))
    assert session.box == Box(28, 48, 92, 112) and session.start == "box"
    assert [(c.row, c.col, c.positive) for c in session.clicks] == [(60, 80, True)]
    # No box: first positive, first negative, then the other positives and negatives.
    body = {**GOOD, "pos_points": [[80, 60], [70, 50]], "neg_points": [[112, 92], [75, 55]]}
    session = build_session(parse_request(body))
    assert [(c.row, c.col, c.positive) for c in session.clicks] == [
        (60, 80, True),
        (92, 112, False),
        (50, 70, True),
        (55, 75, False),
    ]
    assert session.box == box_from_pair(session.clicks[0], session.clicks[1], IMG.shape)
    # The right / bottom edge of the last pixel (x == W) is still in the image.
    session = build_session(parse_request({**GOOD, "pos_points": [[160, 120]], "neg_points": []}))
    assert (session.clicks[0].row, session.clicks[0].col) == (119, 159)


def test_empty_obj_bbox_means_no_box(nuclio):
    for bbox in (None, []):
        status, answer = nuclio({**GOOD, "obj_bbox": bbox})
        assert status == 200 and iou(np.asarray(answer["mask"], bool), GT) > 0.8
    status, answer = nuclio({k: v for k, v in GOOD.items() if k not in ("obj_bbox", "neg_points")})
    assert status == 200 and np.asarray(answer["mask"]).shape == GT.shape


def test_legacy_box_from_environment(monkeypatch):
    monkeypatch.setenv("SPBOX_METHOD", "random-walker")
    monkeypatch.setenv("SPBOX_BOX_IN_POS_POINTS", "1")
    main = load_main()
    body = {
        **GOOD,
        "pos_points": [[48, 28], [112, 92], [80, 60]],
        "neg_points": [],
        "obj_bbox": None,
    }
    response = Platform().call_handler(
        main.handler, Event(body=body, content_type="application/json")
    )
    assert response.status_code == 200
    assert iou(np.asarray(json.loads(response.body)["mask"], bool), GT) > 0.8


def test_precise_edges_from_environment(monkeypatch):
    """``SPBOX_PRECISE_EDGES=1`` makes the deployed spbox function refine at full size, 3
    iterations."""
    from napari_spbox.model import inference

    seen = []
    real = inference.refine_edges
    monkeypatch.setattr(inference, "refine_edges", lambda *a, **k: seen.append(k) or real(*a, **k))
    monkeypatch.delenv("SPBOX_BOX_IN_POS_POINTS", raising=False)
    monkeypatch.setenv("SPBOX_METHOD", "spbox")
    for value, setting in (("0", {}), ("1", {"iterations": 3, "max_side": None})):
        monkeypatch.setenv("SPBOX_PRECISE_EDGES", value)
        main = load_main()
        seen.clear()
        response = Platform().call_handler(
            main.handler, Event(body=GOOD, content_type="application/json")
        )
        assert response.status_code == 200
        # and the natural weights' 3 px click spot either way
        assert seen and all(k == {**setting, "radius": 3} for k in seen)
    # an option of the network's pipeline only: said at start-up
    monkeypatch.setenv("SPBOX_METHOD", "grabcut")
    with pytest.raises(ValueError, match="precise edges"):
        InteractorService.from_env()


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_request_is_400_with_message(nuclio, name):
    status, answer = nuclio(BAD_BODIES[name])
    assert status == 400, (name, answer)
    assert (
        set(answer) == {"error"} and isinstance(answer["error"], str) and len(answer["error"]) > 5
    )


def test_error_messages_say_what_is_wrong(nuclio):
    expect = {
        "missing image": "image",
        "missing pos_points": "pos_points",
        "invalid base64": "base64",
        "oversized image": "50 MP",
        "point outside (x)": "outside",
        "NaN point": "finite",
        "invalid JSON": "JSON",
        "empty points, no box": "positive",
        "threshold out of range": "threshold",
    }
    for name, word in expect.items():
        assert word in nuclio(BAD_BODIES[name])[1]["error"], name
    assert MAX_PIXELS == 50_000_000


def test_fifty_mixed_requests_keep_serving(nuclio):
    other_img, other_gt = disk_scene(50, 60, 20, seed=3)
    other = cvat_request(b64(other_img), [(60, 50)], [(84, 74)])
    bad = list(BAD_BODIES.values())
    for i in range(50):
        if i % 3 == 0:
            body, gt = (GOOD, GT) if i % 2 == 0 else (other, other_gt)
            status, answer = nuclio(body)
            assert status == 200, (i, answer)
            assert iou(np.asarray(answer["mask"], bool), gt) > 0.7, i
        else:
            status, answer = nuclio(bad[i % len(bad)])
            assert status == 400 and "error" in answer, i


def test_failed_inference_is_500_then_recovers(nuclio):
    nuclio(GOOD)
    service = nuclio.platform._get_handler_context(nuclio.main.handler).user_data.model
    predictor = service.predictor
    real_predict, calls = predictor.predict, []

    def flaky(session):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_predict(session)

    predictor.predict = flaky
    status, answer = nuclio(GOOD)
    assert status == 500 and "out of memory" in answer["error"]
    status, answer = nuclio(GOOD)
    assert status == 200 and iou(np.asarray(answer["mask"], bool), GT) > 0.8


def test_same_frame_reuses_the_decoded_image():
    # CVAT resends the frame with every click; the predictor must get the same array back so its
    # per-image cache (superpixels for the network) survives between clicks.
    service = InteractorService.create("random-walker")
    seen = []
    real_set_image = service.predictor.set_image
    service.predictor.set_image = lambda image, *a, **kw: (
        seen.append(image),
        real_set_image(image, *a, **kw),
    )
    other = cvat_request(b64(disk_scene(seed=5)[0]), [(80, 60)], [(112, 92)])
    for body in (GOOD, GOOD_BOX, other, GOOD):
        assert service.handle(json.dumps(body))[0] == 200
    assert seen[0] is seen[1] and seen[2] is not seen[1] and seen[3] is not seen[0]


def test_threshold_is_applied():
    class Ramp:  # probability rises from 0 to 1 left to right
        name = "ramp"

        def set_image(self, image):
            self.shape = image.shape[:2]

        def predict(self, session):
            return Prediction(
                np.tile(np.linspace(0, 1, self.shape[1], dtype=np.float32), (self.shape[0], 1))
            )

    service = InteractorService(Ramp())
    for threshold, expect in ((None, THRESHOLD), (0.25, 0.25), (0.75, 0.75)):
        body = GOOD if threshold is None else {**GOOD, "threshold": threshold}
        status, text = service.handle(json.dumps(body))
        mask = np.asarray(json.loads(text)["mask"], bool)
        assert status == 200 and abs(mask.mean() - (1 - expect)) < 0.02, threshold


def test_mask_json_matches_json_dumps():
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (3, 7), (17, 2)]:
        m = rng.random(shape) > 0.5
        assert mask_json(m) == json.dumps({"mask": m.astype(int).tolist()}, separators=(",", ":"))


# -- function.yaml ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["function.yaml", "function-gpu.yaml"])
def test_function_yaml(name):
    doc = yaml.safe_load((FUNC / name).read_text())
    ann = doc["metadata"]["annotations"]
    assert ann["type"] == "interactor" and ann["version"] == 2 and ann["spec"] == ""
    assert (
        ann["min_pos_points"] == 1
        and ann["min_neg_points"] == 0
        and ann["startswith_box_optional"] is True
    )
    assert "negative" in ann["help_message"] and ann["name"]
    spec = doc["spec"]
    assert (
        spec["runtime"] == "python:3.11"
        and spec["handler"] == "main:handler"
        and spec["eventTimeout"]
    )
    assert spec["build"]["baseImage"] and any(
        "napari_spbox" in d["value"] for d in spec["build"]["directives"]["postCopy"]
    )
    trigger = spec["triggers"]["myHttpTrigger"]
    assert (
        trigger["kind"] == "http"
        and trigger["attributes"]["maxRequestBodySize"] >= 128 * 1024 * 1024
    )
    device = {e["name"]: e["value"] for e in spec["env"]}["SPBOX_DEVICE"]
    if name == "function-gpu.yaml":
        assert spec["resources"]["limits"]["nvidia.com/gpu"] == 1 and device == "cuda"
    else:
        assert "resources" not in spec and device == "cpu"
