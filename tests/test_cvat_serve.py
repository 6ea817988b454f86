"""CVAT protocol without Nuclio: the dev HTTP server (`spbox serve-cvat`) and the native cvat-sdk
function."""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import threading
import time

import numpy as np
import pytest
from cvat_data import BAD_BODIES, FUNC, GOOD, GT, IMG, b64, cvat_request, disk_scene, encode, iou
from PIL import Image

from napari_spbox.cvat import MAX_PIXELS, InteractorService
from napari_spbox.serve import add_serve_parser, cmd_serve_cvat, make_server


# -- dev HTTP server --------------------------------------------------------------------------
@pytest.fixture
def server():
    """Dev server on an ephemeral port. set_image is slowed down so that, were predictions not
    serialised, concurrent clients would interleave and get another frame's mask."""
    service = InteractorService.create("random-walker")
    real_set_image = service.predictor.set_image
    service.predictor.set_image = lambda image, *a, **kw: (
        real_set_image(image, *a, **kw),
        time.sleep(0.02),
    )
    srv = make_server(service, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def post(port, body, path="/", conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=encode(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        assert r.getheader("Content-Type") == "application/json"
        return r.status, json.loads(data)
    finally:
        if own:
            conn.close()


def test_http_round_trip(server):
    for path in ("/", "/predict"):
        status, answer = post(server, GOOD, path)
        assert status == 200 and iou(np.asarray(answer["mask"], bool), GT) > 0.8
    assert post(server, BAD_BODIES["invalid JSON"])[0] == 400
    status, answer = post(server, BAD_BODIES["point outside (x)"])
    assert status == 400 and "outside" in answer["error"]
    assert post(server, GOOD, "/nope")[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    conn.request("GET", "/health")
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["method"] == "random-walker"
    conn.close()


def test_http_eight_concurrent_clients(server):
    # Four different frames of one size: a mixed-up prediction shows as a wrong mask.
    scenes = [disk_scene(40 + 10 * k, 50 + 20 * k, 18 + 2 * k, seed=k) for k in range(4)]
    bodies = [
        cvat_request(
            b64(img), [(50 + 20 * k, 40 + 10 * k)], [(50 + 20 * k + 30 + 2 * k, 40 + 10 * k + 30)]
        )
        for k, (img, _) in enumerate(scenes)
    ]
    failures, done = [], []

    def client(c):
        # keep-alive: one connection
        conn = http.client.HTTPConnection("127.0.0.1", server, timeout=120)
        try:
            for i in range(4):
                k = (c + i) % 4
                if (c + i) % 3 == 0:  # bad requests interleaved with good ones
                    status, answer = post(server, BAD_BODIES["NaN point"], conn=conn)
                    if status != 400:
                        failures.append((c, i, status, answer))
                    continue
                status, answer = post(server, bodies[k], conn=conn)
                mask = np.asarray(answer.get("mask", []), bool)
                if (
                    status != 200
                    or mask.shape != scenes[k][1].shape
                    or iou(mask, scenes[k][1]) < 0.7
                ):
                    failures.append((c, i, status, answer.get("error")))
                done.append(1)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append((c, repr(exc)))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures
    assert len(done) == sum(1 for c in range(8) for i in range(4) if (c + i) % 3 != 0)


def test_http_body_limits(server):
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    conn.putrequest("POST", "/")
    conn.putheader("Content-Length", str(10**12))
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413 and "limit" in json.loads(r.read())["error"]
    conn.close()
    assert post(server, GOOD)[0] == 200  # still serving


def test_http_refusals_are_json_and_the_server_keeps_serving(server):
    """A negative Content-Length, an unknown method and a garbled request line: each a JSON
    error, then the next request is served."""
    import socket

    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    conn.putrequest("POST", "/")
    conn.putheader("Content-Length", "-1")
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 400 and "Content-Length" in json.loads(r.read())["error"]
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    conn.request("PUT", "/", body=b"{}")
    r = conn.getresponse()
    assert r.status == 501 and r.getheader("Content-Type") == "application/json"
    assert "error" in json.loads(r.read())
    conn.close()
    with socket.create_connection(("127.0.0.1", server), timeout=10) as sock:
        sock.sendall(b"GARBLED\r\n\r\n")
        raw = b""
        while chunk := sock.recv(4096):  # the server closes the connection after answering
            raw += chunk
        answer = raw.split(b"\r\n\r\n", 1)
    assert answer[0].startswith(b"HTTP/1.1 400") and "error" in json.loads(answer[1])
    assert post(server, GOOD)[0] == 200  # still serving


def test_serve_parser():
    p = argparse.ArgumentParser()
    add_serve_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(
        ["serve-cvat", "--port", "0", "--method", "random-walker", "--device", "cpu"]
    )
    assert args.func is cmd_serve_cvat and args.host == "127.0.0.1" and args.port == 0
    assert args.method == "random-walker" and args.weights is None and args.max_pixels == MAX_PIXELS
    assert not args.precise_edges and p.parse_args(["serve-cvat", "--precise-edges"]).precise_edges
    with pytest.raises(SystemExit):
        p.parse_args(["serve-cvat", "--method", "nope"])
    with pytest.raises(SystemExit):  # a port out of range is a usage error, not an OverflowError
        p.parse_args(["serve-cvat", "--port", "99999"])


# -- native cvat-sdk function -----------------------------------------------------------------
def test_native_interaction_function():
    import cvat_sdk.auto_annotation as cvataa
    from cvat_sdk.masks import decode_mask

    spec = importlib.util.spec_from_file_location("spbox_cvat_native", FUNC / "native.py")
    native = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native)
    fn = native.create(method="random-walker")
    assert isinstance(fn.spec, cvataa.InteractionFunctionSpec) and fn.spec.min_bounding_boxes == 0

    class Prompts:
        pos_points, neg_points, bounding_box = ((80.0, 60.0),), ((112.0, 92.0),), None

    pp = fn.preprocess_image(None, Image.fromarray(IMG))
    for prompts in (
        Prompts,
        type("P", (Prompts,), {"neg_points": (), "bounding_box": ((48, 28), (112, 92))}),
    ):
        shapes = fn.detect(None, pp, prompts)
        assert len(shapes) == 1 and shapes[0].type == "mask"
        mask = decode_mask(shapes[0].points, image_width=IMG.shape[1], image_height=IMG.shape[0])
        assert iou(mask, GT) > 0.8
    with pytest.raises(ValueError, match="outside"):
        fn.detect(None, pp, type("P", (Prompts,), {"pos_points": ((999.0, 5.0),)}))
