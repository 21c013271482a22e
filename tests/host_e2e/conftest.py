"""Fixtures of the host-import end-to-end tests: real example plugins built from source, run by
a real ``WasmPluginRuntime`` + ``ComponentExecutor``, talking to real sidecar processes and a
real HTTP server on 127.0.0.1.

The executor gets its own ``GrantedHostServices`` so a test can look at the sidecar manager
behind it (its runtime directory holds every ring, FIFO and socket the plugins were given).
Builds and compiled components are cached as in tests/executor, so only the first run pays.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from stellatune import package
from stellatune.executor import ComponentExecutor, GrantedHostServices, InstanceLimits
from stellatune.paths import default_cache_dir
from stellatune.runtime import WasmPluginRuntime


@pytest.fixture
def services() -> GrantedHostServices:
    return GrantedHostServices()


@pytest.fixture
def executor(tmp_path: Path, services: GrantedHostServices) -> Iterator[ComponentExecutor]:
    ex = ComponentExecutor(
        cache_dir=default_cache_dir(),
        host_services=services,
        log_dir=tmp_path / "logs",
        limits=InstanceLimits(call_timeout_s=10.0, hook_timeout_s=10.0),
    )
    yield ex
    ex.shutdown()


@pytest.fixture
def runtime(tmp_path: Path, executor: ComponentExecutor) -> Iterator[WasmPluginRuntime]:
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    rt = WasmPluginRuntime(plugins_dir, executor)
    yield rt
    rt.shutdown()


@pytest.fixture
def install(runtime: WasmPluginRuntime, built: Callable[[str], Path]) -> Callable[[str], str]:
    """``install(name)`` installs the built example, syncs, and returns the plugin id."""

    def go(name: str) -> str:
        installed = package.install_from_artifact(runtime.plugins_dir, built(name))
        report = runtime.sync_plugins()
        assert not report.errors, report.errors
        assert runtime.is_active(installed.id)
        return installed.id

    return go


@pytest.fixture
def tone() -> Callable[..., np.ndarray]:
    """``tone(frames, channels)`` → float32 audio, one sine per channel."""

    def make(frames: int, channels: int = 2) -> np.ndarray:
        t = np.arange(frames) / 48000.0
        return np.stack([0.5 * np.sin(2 * np.pi * (330 + 110 * c) * t) for c in range(channels)], axis=1).astype(
            np.float32
        )

    return make


# --- a small media server ---------------------------------------------------------------------


class MediaServer:
    """Serves a folder over HTTP/1.1 on 127.0.0.1, with or without ``Range`` support, and keeps
    a log of ``(path, Range header, status)`` for every request."""

    def __init__(self, root: Path, *, ranges: bool):
        self.root = root
        self.ranges = ranges
        self.requests: list[tuple[str, str | None, int]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                status, body, headers = server.answer(self.path, self.headers.get("Range"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:  # the client moved on (a seek cancels the old body)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://{self.endpoint}{path}"

    def answer(self, path: str, range_header: str | None) -> tuple[int, bytes, dict[str, str]]:
        file = (self.root / path.lstrip("/")).resolve()
        if not file.is_relative_to(self.root.resolve()) or not file.is_file():
            self.requests.append((path, range_header, 404))
            return 404, b"", {}
        data = file.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if self.ranges and match and int(match.group(1)) < len(data):
            start = int(match.group(1))
            self.requests.append((path, range_header, 206))
            return (
                206,
                data[start:],
                {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}", "Accept-Ranges": "bytes"},
            )
        self.requests.append((path, range_header, 200))  # a server without ranges ignores the header
        return 200, data, {"Accept-Ranges": "bytes"} if self.ranges else {}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def media_server(tmp_path: Path) -> Iterator[Callable[..., MediaServer]]:
    """``media_server(root, ranges=True)`` starts a server on loopback; all stop after the test."""
    servers: list[MediaServer] = []

    def start(root: Path, *, ranges: bool = True) -> MediaServer:
        servers.append(MediaServer(root, ranges=ranges))
        return servers[-1]

    yield start
    for s in servers:
        s.close()
