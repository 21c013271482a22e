"""Deadlines hold through host imports, and disabling a plugin interrupts them.

A real hostile plugin (tests/fixtures/plugins/blocker, a componentize-py component) blocks in
each blocking host import with the longest timeout it can ask for, against real things that
never answer: its own sidecar lock, a sidecar that never writes or exits, an HTTP server on
127.0.0.1 that sends headers and then nothing, a TCP listener that never answers. With a 1 s
call deadline each call must end (PluginTimeout) well within deadline + 1 s, and disabling the
plugin while a call is blocked must return within a few seconds and end the call.

Bounds are generous (the machine is small and shared); no test asserts an exact time.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stellatune import package
from stellatune.errors import PluginError, PluginErrorCode, PluginTimeout, RuntimeStateError
from stellatune.executor import ComponentExecutor, GrantedHostServices, InstanceLimits
from stellatune.paths import default_cache_dir
from stellatune.runtime import DesiredState, WasmPluginRuntime
from stellatune.sdk.build import build_plugin

BLOCKER = "dev.stellatune.test.blocker"
BLOCKER_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "plugins" / "blocker"
CALL_S = 1.0
#: A call may overrun its deadline by at most 1 s (the contract), plus scheduling slack.
CALL_BOUND_S = CALL_S + 1.0 + 0.5
#: disable/unload/shutdown while a call is blocked in a host import (docs/executor.md).
DISABLE_BOUND_S = 3.0

pytestmark = pytest.mark.slow  # a Python component (cached after the first build)


# --- things that never answer -----------------------------------------------------------------


class StallingHttpServer:
    """HTTP/1.1 on 127.0.0.1 that answers 200 with a Content-Length and never sends the body."""

    def __init__(self) -> None:
        self.release = threading.Event()
        release = self.release

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.flush()
                release.wait(60)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str = "/") -> str:
        return f"http://{self.endpoint}{path}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server() -> Iterator[StallingHttpServer]:
    server = StallingHttpServer()
    yield server
    server.close()


@pytest.fixture
def silent_tcp() -> Iterator[str]:
    """A listener whose connections the kernel completes and nobody ever answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as listener:
        yield f"127.0.0.1:{listener.getsockname()[1]}"


# --- the plugin under a 1 s deadline ----------------------------------------------------------


@pytest.fixture(scope="session")
def blocker_zip() -> Path:
    return build_plugin(BLOCKER_DIR)


@pytest.fixture
def services() -> GrantedHostServices:
    return GrantedHostServices()


@pytest.fixture
def call_timeout() -> float:
    """The call deadline; a test parametrizes it up when only a cancel may end the wait."""
    return CALL_S


@pytest.fixture
def executor(tmp_path: Path, services: GrantedHostServices, call_timeout: float) -> Iterator[ComponentExecutor]:
    limits = InstanceLimits(call_timeout_s=call_timeout, hook_timeout_s=CALL_S, disable_wait_s=1.0)
    ex = ComponentExecutor(
        cache_dir=default_cache_dir(), host_services=services, log_dir=tmp_path / "logs", limits=limits
    )
    yield ex
    ex.shutdown()


@pytest.fixture
def runtime(
    tmp_path: Path, executor: ComponentExecutor, blocker_zip: Path, http_server: StallingHttpServer, silent_tcp: str
) -> Iterator[WasmPluginRuntime]:
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    rt = WasmPluginRuntime(plugins_dir, executor)
    package.install_from_artifact(plugins_dir, blocker_zip)
    assert not rt.sync_plugins().errors
    grants = executor.host_imports(BLOCKER).grants
    grants.add_http_host(http_server.endpoint)
    grants.add_tcp_endpoint(silent_tcp)
    yield rt
    rt.shutdown()


@pytest.fixture
def block(
    executor: ComponentExecutor, runtime: WasmPluginRuntime, http_server: StallingHttpServer, silent_tcp: str
) -> Callable[[str], None]:
    """``block(action)``: make the plugin block in the host import ``action`` names."""
    targets = {"http-read": http_server.url("/track.wav"), "tcp-read": silent_tcp}

    def go(action: str) -> None:
        if action == "fetch-json":
            executor.lyrics(BLOCKER, "block").search(http_server.url("/api.json"))
        else:
            executor.source(BLOCKER, "block").list_items({"do": action, "target": targets.get(action, "")})

    return go


ACTIONS = ["lock-twice", "channel-read", "wait-exit", "http-read", "tcp-read", "fetch-json"]


def _timed(fn: Callable[[], None]) -> tuple[float, BaseException | None]:
    start = time.monotonic()
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - the caller asserts on it
        return time.monotonic() - start, e
    return time.monotonic() - start, None


@pytest.mark.parametrize("action", ACTIONS)
def test_a_call_blocked_in_a_host_import_ends_at_its_deadline(block, executor, action):
    elapsed, error = _timed(lambda: block(action))
    assert isinstance(error, PluginTimeout), error
    assert error.code is PluginErrorCode.TIMEOUT and error.plugin_id == BLOCKER
    assert CALL_S * 0.9 <= elapsed < CALL_BOUND_S, elapsed
    # The runtime is not wedged: the plugin still answers, and disabling it is quick.
    elapsed, error = _timed(lambda: block("open-file"))
    assert isinstance(error, PluginError) and error.code is PluginErrorCode.INVALID_ARG  # blank target
    elapsed, _ = _timed(lambda: executor.deactivate(BLOCKER, "host-disable"))
    assert elapsed < DISABLE_BOUND_S and executor.live_instances(BLOCKER) == 0


def _block_in_background(block: Callable[[str], None], action: str) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run() -> None:
        start = time.monotonic()
        try:
            block(action)
            outcome.append((time.monotonic() - start, None))
        except BaseException as e:  # noqa: BLE001 - asserted by the test
            outcome.append((time.monotonic() - start, e))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    return worker, outcome


# A deadline long enough that only the cancel can end the wait within the bounds below.
@pytest.mark.parametrize("call_timeout", [30.0])
@pytest.mark.parametrize("how", ["disable", "unload"])
@pytest.mark.parametrize("action", ACTIONS)
def test_disabling_the_plugin_interrupts_a_blocked_host_import(block, executor, runtime, action, how, children):
    before = children()
    worker, outcome = _block_in_background(block, action)
    time.sleep(1.0)  # let the call reach its host wait (a first call also runs on-enable)
    assert worker.is_alive(), outcome
    deactivate = (
        (lambda: runtime.set_desired_state(BLOCKER, DesiredState.DISABLED))
        if how == "disable"
        else (lambda: runtime.unload(BLOCKER))
    )
    elapsed, error = _timed(deactivate)
    assert error is None, error
    assert elapsed < DISABLE_BOUND_S, elapsed
    assert executor.live_instances(BLOCKER) == 0 and not executor.is_active(BLOCKER)
    worker.join(DISABLE_BOUND_S)
    assert not worker.is_alive(), "the blocked call did not end"
    ((_, call_error),) = outcome
    assert isinstance(call_error, (RuntimeStateError, PluginTimeout)), call_error
    assert children() <= before  # the plugin's sidecars are gone


@pytest.mark.parametrize("call_timeout", [30.0])
def test_shutdown_interrupts_every_blocked_call_at_once(block, executor, runtime):
    workers = [_block_in_background(block, action) for action in ("lock-twice", "fetch-json")]
    time.sleep(1.0)
    elapsed, error = _timed(executor.shutdown)
    assert error is None and elapsed < DISABLE_BOUND_S, (elapsed, error)
    for worker, outcome in workers:
        worker.join(DISABLE_BOUND_S)
        assert not worker.is_alive()
        assert isinstance(outcome[0][1], (RuntimeStateError, PluginTimeout)), outcome


def test_a_plugin_chosen_timeout_shorter_than_the_deadline_still_applies(executor, runtime, http_server):
    # fetch-json has its own 15 s limit; the 1 s call deadline is shorter and wins, and the
    # error the caller sees says it was the deadline.
    start = time.monotonic()
    with pytest.raises(PluginTimeout, match="deadline"):
        executor.lyrics(BLOCKER, "block").search(http_server.url("/x.json"))
    assert time.monotonic() - start < CALL_BOUND_S
