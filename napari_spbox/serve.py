"""Dev HTTP server speaking the CVAT interactor protocol, so the function can be tried without
Nuclio.

``spbox serve-cvat --port 8080`` then::

    curl -s -X POST localhost:8080/ -H 'Content-Type: application/json' \\
         -d "{\\"image\\": \\"$(base64 -w0 frame.jpg)\\", \\
              \\"pos_points\\": [[320, 240]], \\"neg_points\\": [[400, 300]]}"

``POST /`` and ``POST /predict`` take exactly the body the Nuclio handler takes and answer the same
JSON (see :mod:`napari_spbox.cvat`); ``GET /`` (or ``/health``) tells whether it is up. Requests
are served on threads, predictions run one at a time (the predictor holds one image).
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .cvat import MAX_PIXELS, InteractorService, error_json
from .predictors import METHODS, add_weights_options

#: Largest request body read: a 50 MP PNG in base64 fits; anything bigger is refused unread.
MAX_BODY_BYTES = 256 * 1024 * 1024

POST_PATHS = ("/", "/predict")


class InteractorHandler(BaseHTTPRequestHandler):
    """Request handler; the :class:`InteractorService` is ``self.server.service``."""

    server_version = "spbox-serve/1"
    protocol_version = "HTTP/1.1"  # keep-alive, so a client's clicks reuse one connection
    # a request line without a version is garbled, not HTTP/0.9: answer it with a status line
    default_request_version = "HTTP/1.0"

    def _send(self, status: int, body: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def do_GET(self) -> None:  # http.server's naming
        if self._path() in ("/", "/health"):
            self._send(
                200, json.dumps({"status": "ok", "method": self.server.service.predictor.name})
            )
        else:
            self._send(404, error_json(f"no such path {self.path!r}; POST to / or /predict"))

    def do_POST(self) -> None:
        if self._path() not in POST_PATHS:
            self._drain()
            self._send(404, error_json(f"no such path {self.path!r}; POST to / or /predict"))
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            # Without a length the body's end is unknown: answer and close rather than guess.
            self.close_connection = True
            self._send(411, error_json("Content-Length is required"))
            return
        if length < 0:
            self.close_connection = True
            self._send(400, error_json(f"Content-Length must be 0 or more, not {length}"))
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(
                413, error_json(f"the body is {length} bytes; the limit is {MAX_BODY_BYTES}")
            )
            return
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            self._send(400, error_json("the body ended before Content-Length bytes"))
            return
        status, text = self.server.service.handle(body)
        self._send(status, text)

    def send_error(self, code: int, message=None, explain=None) -> None:
        """http.server's own refusals (an unknown method, a garbled request line) in JSON too,
        as every other answer of this server."""
        self.close_connection = True
        self._send(code, error_json(message or f"HTTP {code}"))

    def _drain(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if 0 < length <= MAX_BODY_BYTES:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def log_message(self, format, *args) -> None:  # signature from http.server
        if not self.server.quiet:
            super().log_message(format, *args)


def make_server(
    service: InteractorService, host: str = "127.0.0.1", port: int = 8080, quiet: bool = False
):
    """A :class:`ThreadingHTTPServer` bound to ``host:port`` (``port=0``: any free port).

    Call ``serve_forever()`` on it (``server.server_address`` gives the bound port) and
    ``shutdown()`` + ``server_close()`` to stop.
    """
    server = ThreadingHTTPServer((host, port), InteractorHandler)
    server.daemon_threads = True
    server.service = service
    server.quiet = quiet
    return server


def _port(text: str) -> int:
    """A TCP port number for argparse: 0 (any free port) to 65535."""
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {port}")
    return port


def cmd_serve_cvat(args) -> int:
    """``spbox serve-cvat``: load the model once, serve until Ctrl-C."""
    service = InteractorService.create(
        args.method,
        weights=args.weights,
        device=args.device,
        precise_edges=args.precise_edges,
        box_in_pos_points=args.box_in_pos_points,
        max_pixels=args.max_pixels,
        log=lambda m: print(m, file=sys.stderr),
    )
    server = make_server(service, args.host, args.port)
    host, port = server.server_address[:2]
    print(
        f"spbox serve-cvat: {service.predictor.name} on http://{host}:{port}/ (POST / or /predict)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def add_serve_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``serve-cvat`` to ``spbox``'s subparsers (``build_parser`` in
    :mod:`napari_spbox.cli`)."""
    s = subparsers.add_parser(
        "serve-cvat", help="serve the CVAT interactor protocol over HTTP (dev server, no Nuclio)"
    )
    s.add_argument(
        "--host", default="127.0.0.1", help="address to bind (0.0.0.0 for every interface)"
    )
    s.add_argument("--port", type=_port, default=8080, help="port (0: any free port)")
    s.add_argument("--method", default="spbox", choices=METHODS)
    add_weights_options(s)
    s.add_argument(
        "--precise-edges",
        action="store_true",
        help="spbox: refine at full size, 3 GrabCut iterations (slower clicks)",
    )
    s.add_argument(
        "--box-in-pos-points",
        action="store_true",
        help="legacy CVAT: the first two pos_points are the box corners when obj_bbox is absent",
    )
    s.add_argument(
        "--max-pixels", type=int, default=MAX_PIXELS, help="largest image accepted, in pixels"
    )
    s.set_defaults(func=cmd_serve_cvat)
    return s
