"""Fixtures of the host-import tests: a real HTTP server on 127.0.0.1 and plugin roots."""

from __future__ import annotations

import json
import random
import re
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stellatune.host import Grants, PluginHostContext
from stellatune.host.sidecar import RestartPolicy, SidecarManager

SIDECARS_DIR = Path(__file__).resolve().parents[2] / "examples" / "sidecars"

#: The body every /blob* route serves: varied bytes, so an off-by-one shows up.
BLOB = bytes(random.Random(7).getrandbits(8) for _ in range(300_000))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stall = threading.Event()  # replaced per server

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path
        if path == "/blob":
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if match:
                start = int(match.group(1))
                if start >= len(BLOB):
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(BLOB)}"})
                return self._send(206, BLOB[start:], {"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"})
            return self._send(200, BLOB, {"Accept-Ranges": "bytes"})
        if path == "/big-blob":  # 8 MiB, sent as fast as the client takes it
            self.send_response(200)
            self.send_header("Content-Length", str(32 * len(BLOB)))
            self.end_headers()
            try:
                for _ in range(32):
                    self.wfile.write(BLOB)
            except OSError:  # the client went away early: that is the test
                pass
            return
        if path == "/norange":
            return self._send(200, BLOB)
        if path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            self.stall.wait(30)
            return
        if path == "/json":
            return self._send(
                200, json.dumps({"ok": True, "items": [1, 2, 3]}).encode(), {"Content-Type": "application/json"}
            )
        if path == "/notjson":
            return self._send(200, b"<html>not json</html>")
        if path == "/big.json":
            return self._send(200, json.dumps(["x" * 1000] * 5000).encode())
        if path == "/missing":
            return self._send(404, b"{}")
        slow = re.fullmatch(r"/slow-redirect/(\d+)", path)
        if slow:  # each hop answers quickly enough on its own; together they take a while
            hops = int(slow.group(1))
            time.sleep(0.25)
            return self._send(302, b"", {"Location": f"/slow-redirect/{hops - 1}" if hops > 1 else "/json"})
        if path == "/redirect-in":
            return self._send(302, b"", {"Location": "/json"})
        if path == "/redirect-out":
            return self._send(302, b"", {"Location": "http://example.invalid/json"})
        self._send(404, b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self._send(200, self.headers.get("X-Tag", "").encode() + b":" + body)


class HttpServer:
    def __init__(self) -> None:
        handler = type("Handler", (_Handler,), {"stall": threading.Event()})
        self.stall = handler.stall
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://{self.endpoint}{path}"


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    srv = HttpServer()
    srv.thread.start()
    yield srv
    srv.stall.set()
    srv.server.shutdown()
    srv.server.server_close()


@pytest.fixture
def plugin_root(tmp_path: Path) -> Path:
    root = tmp_path / "plugin"
    (root / "data").mkdir(parents=True)
    (root / "bin").mkdir()
    return root


@pytest.fixture
def blob() -> bytes:
    return BLOB


@pytest.fixture
def make_ctx(plugin_root: Path):
    """``make_ctx(files=(...), http=(...), ...)``: a context for ``plugin_root`` with these grants."""

    def make(plugin_id: str = "dev.test.host", **permissions: tuple[str, ...]) -> PluginHostContext:
        return PluginHostContext(plugin_id, plugin_root, Grants(plugin_root, **permissions))

    return make


@pytest.fixture
def install_sidecar(plugin_root: Path):
    """``install_sidecar(name)``: copy an example sidecar into ``plugin_root/bin`` (a copy, not a
    link: links out of the root are refused) and return its path relative to the root."""

    def install(name: str) -> str:
        dest = plugin_root / "bin" / name
        shutil.copy2(SIDECARS_DIR / name, dest)
        dest.chmod(0o755)
        return f"bin/{name}"

    return install


@pytest.fixture
def manager(tmp_path: Path, children) -> Iterator[SidecarManager]:
    """A manager with a quick restart policy; after the test, shut down and prove it left no
    child process and no endpoint file behind."""
    before = children()
    policy = RestartPolicy(backoff_initial_s=0.05, backoff_max_s=0.4, max_crashes=3, window_s=30)
    mgr = SidecarManager(policy=policy, connect_timeout_ms=5000, shutdown_grace_ms=1000)
    yield mgr
    runtime_dir = mgr.runtime_dir
    mgr.shutdown()
    assert children() - before == set()
    assert runtime_dir is None or not runtime_dir.exists()
