"""The dashboard's HTTP server: a read-only page and its live stream, on loopback only.

Contract
--------
* ``DashboardServer(apiserver, chaos_path, lab=..., address="127.0.0.1", port=0)``
  binds at once (``url`` is then known) and raises ``DashboardError`` naming the flag
  and the fix for an address other than 127.0.0.1 (the page shows the whole cluster
  and has no authentication, so it never listens beyond this machine), a port outside
  0..65535, or a port already in use. ``start()`` starts the HTTP threads
  (``ThreadingHTTPServer``) and the watch loop (``lab.dashboard.watcher``); ``stop()``
  ends every stream, the watch loop and the listening socket.
* Endpoints (GET and HEAD only; anything else is 405):
  ``/`` the page; ``/static/<file>`` its script, style sheet and icon (package data in
  ``lab/dashboard/static/``; no CDN, no external URL, and a Content-Security-Policy
  that allows only this origin); ``/api/state`` the state as JSON
  (``DashboardState.snapshot``); ``/api/stream`` Server-Sent Events: a "snapshot"
  event, then a "delta" event per change (``DashboardState.take_delta``), and a
  keep-alive comment every ``keepalive`` seconds of silence; ``/healthz`` "ok".
* A request whose Host header is not this server's loopback address (127.0.0.1 or
  localhost, with its port) is refused with 403: a web page elsewhere cannot read
  the lab through DNS rebinding.
"""
from __future__ import annotations

import errno
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from lab.dashboard.hub import Hub, encode
from lab.dashboard.state import DashboardState
from lab.dashboard.watcher import WatchLoop

LOOPBACK = "127.0.0.1"
STATIC = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8",
          "index.html": "text/html; charset=utf-8", "favicon.svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class DashboardError(Exception):
    """The dashboard cannot start; the message names the flag and the fix."""


def check_address(address: str) -> str:
    if address != LOOPBACK:
        raise DashboardError(
            f"--address {address}: the dashboard serves on loopback only (127.0.0.1): it shows the "
            "whole lab and has no authentication; to view it from another machine, forward the "
            "port, e.g. ssh -L 8001:127.0.0.1:8001 HOST, then run 'kemu dashboard --port 8001'")
    return address


def check_port(port: Any) -> int:
    try:
        p = int(port)
    except (TypeError, ValueError):
        raise DashboardError(f"--port {port}: not a number: use a port from 1 to 65535, "
                             "or 0 for any free one") from None
    if isinstance(port, bool) or not 0 <= p <= 65535:
        raise DashboardError(f"--port {port}: out of range: use a port from 1 to 65535, "
                             "or 0 for any free one")
    return p


def static_file(name: str) -> bytes:
    return resources.files("lab.dashboard").joinpath("static", name).read_bytes()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    dashboard: "DashboardServer"


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "kemu-dashboard"

    def log_message(self, format: str, *args: Any) -> None:   # noqa: A002 (the base class's name)
        pass   # requests are not worth a line each; errors reach the page or the CLI

    def _host_ok(self) -> bool:
        port = self.server.server_address[1]
        host = (self.headers.get("Host") or "").strip().lower()
        return host in (f"127.0.0.1:{port}", f"localhost:{port}")

    def _send(self, status: int, body: bytes, ctype: str, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str, head: bool = False) -> None:
        self._send(status, (message + "\n").encode(), "text/plain; charset=utf-8", head)

    def do_HEAD(self) -> None:
        self._get(head=True)

    def do_GET(self) -> None:
        self._get(head=False)

    def _get(self, head: bool) -> None:
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "the dashboard answers only to "
                               f"http://127.0.0.1:{self.server.server_address[1]}/", head)
        path = self.path.split("?", 1)[0]
        dash = self.server.dashboard
        if path in ("/", "/index.html"):
            return self._send(HTTPStatus.OK, static_file("index.html"), STATIC["index.html"], head)
        if path.startswith("/static/") and path[len("/static/"):] in STATIC:
            name = path[len("/static/"):]
            return self._send(HTTPStatus.OK, static_file(name), STATIC[name], head)
        if path == "/api/state":
            body = json.dumps(dash.snapshot(), default=str).encode()
            return self._send(HTTPStatus.OK, body, "application/json", head)
        if path == "/healthz":
            return self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8", head)
        if path == "/api/stream" and not head:
            return self._stream(dash)
        return self._error(HTTPStatus.NOT_FOUND, f"{path}: not found (try /)", head)

    def _not_allowed(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    def _stream(self, dash: "DashboardServer") -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        self.close_connection = True
        sub = dash.subscribe()
        try:
            self.wfile.write(b"retry: 1000\n\n")
            while True:
                msg = sub.get(dash.keepalive)
                if msg is None:
                    break
                self.wfile.write(msg or b": keep-alive\n\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass   # the browser went away
        finally:
            dash.hub.unsubscribe(sub)


class DashboardServer:
    def __init__(self, apiserver: str, chaos_path: Path | None, *, lab: str = "",
                 address: str = LOOPBACK, port: Any = 0, keepalive: float = 15.0,
                 tick: float = 0.25) -> None:
        check_address(address)
        port = check_port(port)
        self.keepalive = keepalive
        self.lock = threading.Lock()
        self.state = DashboardState(lab)
        self.hub = Hub()
        self.watch = WatchLoop(apiserver, chaos_path, self.state, self.lock, self.hub, lab=lab or None,
                               tick=tick)
        try:
            self.httpd = _HTTPServer((address, port), _Handler)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise DashboardError(f"--port {port}: 127.0.0.1:{port} is already in use: pick another "
                                     "port, or --port 0 for any free one") from None
            if e.errno == errno.EACCES:
                raise DashboardError(f"--port {port}: permission denied: use a port above 1023, "
                                     "or --port 0 for any free one") from None
            raise DashboardError(f"--port {port}: cannot listen on 127.0.0.1:{port}: {e}") from None
        self.httpd.dashboard = self
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="dashboard-http",
                                        kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return self.state.snapshot()

    def subscribe(self) -> Any:
        with self.lock:   # atomic with the watch loop's publish: no delta is lost or repeated
            return self.hub.subscribe(encode("snapshot", self.state.snapshot()))

    def start(self) -> "DashboardServer":
        self.watch.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self.hub.close()
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
        self.watch.stop()
        self._thread.join(5)

    def __enter__(self) -> "DashboardServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
