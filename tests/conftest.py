"""Fixtures every plane's tests share."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import pytest

from stellatune import diagnostics
from stellatune.sdk.build import build_plugin

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "plugins"


@pytest.fixture(scope="session")
def built() -> Callable[[str], Path]:
    """``built(name)`` → the installable zip of ``examples/plugins/<name>``.

    The builder caches by source hash across runs; this adds a per-session memo so a test
    does not even re-hash the sources.
    """
    zips: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in zips:
            zips[name] = build_plugin(EXAMPLES / name)
        return zips[name]

    return get


def _child_pids() -> set[int]:
    """Live or zombie children of this test process, read from /proc (no psutil)."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == me:  # ppid, after "pid (comm) state"
            found.add(int(entry))
    return found


@pytest.fixture(scope="session")
def children() -> Callable[[], set[int]]:
    """``children()``: the pids of this process's children (live or zombie), now."""
    return _child_pids


# --- leak check -------------------------------------------------------------------------------

#: Counters (stellatune.diagnostics) that must be back where they were when a test started.
_LEAK_COUNTERS = ("hotpath_stages", "hotpath_stores", "component_instances", "component_stores", "sidecar_processes")


def _leaks(before: dict[str, int]) -> dict[str, tuple[int, int]]:
    now = diagnostics.live_counts()
    grown = {k: (before.get(k, 0), now.get(k, 0)) for k in _LEAK_COUNTERS if now.get(k, 0) > before.get(k, 0)}
    # Compiled hot-path modules: the engine's LRU may keep a few on purpose (pinned); the rest
    # must have gone with the stages that used them.
    unpinned = [c.get("hotpath_modules", 0) - c.get("hotpath_modules_pinned", 0) for c in (before, now)]
    if unpinned[1] > unpinned[0]:
        grown["hotpath_modules (not pinned)"] = (unpinned[0], unpinned[1])
    return grown


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    if call.when == "call":
        item._leak_check_failed_call = outcome.get_result().failed  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _no_leaked_resources(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every stage, store, component instance and sidecar a test made is gone when it ends.

    Compared with the counts at the test's start, not with zero: module- and session-scoped
    fixtures are set up before this function-scoped fixture (and torn down after the module),
    so what they hold is in both snapshots. This fixture is autouse, so it is set up before
    (and torn down after) the test's other function-scoped fixtures: their executors and
    runtimes have shut down when it checks. A test whose module-scoped objects create more
    objects lazily, on purpose, opts out with ``@pytest.mark.keeps_resources``.
    Skipped when the test itself failed (its traceback keeps its objects alive).
    Cheap: the counters are compared first, and ``gc.collect()`` (then a short wait, for a
    supervisor thread reaping a sidecar) runs only when they differ.
    """
    if request.node.get_closest_marker("keeps_resources") is not None:
        yield
        return
    before = diagnostics.live_counts()
    yield
    if getattr(request.node, "_leak_check_failed_call", False):
        return  # the failure's traceback holds the test's objects: its own error says enough
    grown = _leaks(before)
    deadline = time.monotonic() + 2.0
    while grown and time.monotonic() < deadline:
        gc.collect()
        grown = _leaks(before)
        if grown:
            time.sleep(0.05)
    assert not grown, f"test left live resources behind (counter: (at start, at end)): {grown}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--strict-realtime",
        action="store_true",
        default=False,
        help="play the live tests with the production decode ring (8192 frames) and hold them to 0 ring "
        "underruns: a claim about this machine's scheduling, which a loaded machine can fail",
    )
    parser.addoption(
        "--full",
        action="store_true",
        default=False,
        help="run the long form of the stress, soak and fuzz tests (what `stellatune report --full` runs); "
        "the default is the short form CI runs",
    )


#: A decode ring large enough to hold every live test's source whole once prefilled.
WHOLE_SOURCE_RING = 1 << 18


@pytest.fixture
def ring_frames(request: pytest.FixtureRequest) -> int:
    """The decode ring for live tests that assert 0 ring underruns.

    By default the ring holds the test's whole source before the driver starts (playback prefills
    half the ring, and every such source is shorter than that), so the feeder cannot fall behind
    however loaded the machine is, and the test checks what it is about: every frame played, in
    order, bit-exact. ``--strict-realtime`` uses the production ring instead and so also asserts
    that the feeder keeps up in real time.
    """
    return 8192 if request.config.getoption("--strict-realtime") else WHOLE_SOURCE_RING


# --- what a test opened and left open ----------------------------------------------------------


class OpenedByTests:
    """Stages, runtimes and executors a test constructed *itself* (the constructor's caller is
    in tests/), so they can be closed when it ends. Objects the library makes (a stage built
    by ``compose``, the runtime a ``Pipeline`` opens) are not tracked: leaving those open is
    the library's bug, and their ``ResourceWarning`` must stay visible
    (``-W error::ResourceWarning``)."""

    def __init__(self) -> None:
        self.objects: dict[int, object] = {}  # id -> object, in the order they were made

    def forget(self, obj: object) -> None:
        """Stop tracking ``obj`` (closed, or let go unclosed on purpose)."""
        self.objects.pop(id(obj), None)

    def note(self, obj: object, depth: int) -> None:
        import sys

        frame = sys._getframe(depth)
        while frame is not None and frame.f_code.co_name in ("from_wasm", "from_native"):
            frame = frame.f_back
        if frame is not None and "/tests/" in frame.f_code.co_filename.replace(os.sep, "/"):
            self.objects[id(obj)] = obj

    def close_all(self) -> None:
        from stellatune.errors import StellatuneError

        for obj in reversed(list(self.objects.values())):  # stages before the runtime and executor they use
            try:
                if hasattr(obj, "shutdown"):
                    obj.shutdown()
                else:
                    obj.close()
            except StellatuneError:  # still playing, a failing test host, ...
                pass
        self.objects.clear()


@pytest.fixture(autouse=True)
def opened_by_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, _no_leaked_resources: None
) -> Iterator[OpenedByTests]:
    """Close, when the test ends, what the test itself opened and left open (after it, before
    the leak check). Unclosed objects are held until then, so none is collected unclosed
    mid-test; a stage closed by the test is let go at once (tests that watch it being freed);
    ``opened_by_tests.forget(obj)`` lets one go unclosed."""
    from stellatune.engine.stage import StageLifecycle
    from stellatune.executor import ComponentExecutor
    from stellatune.runtime import WasmPluginRuntime

    opened = OpenedByTests()
    if request.node.get_closest_marker("keeps_resources") is None:
        init_lifecycle = StageLifecycle._init_lifecycle

        def _init_lifecycle(self: StageLifecycle) -> None:
            init_lifecycle(self)
            opened.note(self, 3)  # _init_lifecycle <- __init__ <- its caller

        begin_close = StageLifecycle._begin_close

        def _begin_close(self: StageLifecycle) -> bool:
            closing = begin_close(self)
            opened.forget(self)
            return closing

        monkeypatch.setattr(StageLifecycle, "_init_lifecycle", _init_lifecycle)
        monkeypatch.setattr(StageLifecycle, "_begin_close", _begin_close)
        for cls in (WasmPluginRuntime, ComponentExecutor):

            def patched(init: Callable[..., None]) -> Callable[..., None]:
                def __init__(self: object, *args: object, **kwargs: object) -> None:
                    init(self, *args, **kwargs)
                    opened.note(self, 2)  # __init__ <- its caller

                return __init__

            monkeypatch.setattr(cls, "__init__", patched(cls.__init__))
    yield opened
    opened.close_all()


VIRTUAL_AUDIO = Path(__file__).resolve().parents[1] / "scripts" / "virtual-audio"


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One JACK dummy server for the session (48 kHz / 128 frames, scripts/virtual-audio); yields
    its name, which PortAudio and child processes find in ``JACK_DEFAULT_SERVER``."""
    if shutil.which("jackd") is None:
        pytest.fail("jackd (Debian jackd2) is required for the audio tests")
    name = f"st-test-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path_factory.mktemp("xdg")))
    subprocess.run(
        [str(VIRTUAL_AUDIO), "start", "--name", name, "--frames", "128"], env=env, check=True, stdout=subprocess.DEVNULL
    )
    saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    os.environ.update(JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
    try:
        yield name
    finally:
        subprocess.run([str(VIRTUAL_AUDIO), "stop", "--name", name], env=env, check=False)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Evidence:
    """Figures a test measured, for `stellatune report`.

    When ``STELLATUNE_EVIDENCE_DIR`` is set (the report sets it), ``record(name, **figures)`` writes
    ``<dir>/<name>.json``; otherwise it does nothing, so the tests run the same either way. The
    test still asserts its own bounds: the report reads the figures, it does not judge the test.
    """

    def __init__(self, directory: Optional[Path], full: bool):
        self.directory = directory
        #: True under ``--full``: run the long form (more cycles, longer soak, longer fuzzing).
        self.full = full

    def scale(self, short: int, full: int) -> int:
        """``full`` under ``--full``, else ``short``: cycle counts, durations."""
        return full if self.full else short

    def record(self, name: str, **figures: object) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True, default=str))


@pytest.fixture(scope="session")
def evidence(request: pytest.FixtureRequest) -> Evidence:
    directory = os.environ.get("STELLATUNE_EVIDENCE_DIR")
    return Evidence(Path(directory) if directory else None, bool(request.config.getoption("--full")))


# --- process probes: what a leak test counts ------------------------------------------------


def rss_kb() -> int:
    """This process's resident set size, in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def memfds() -> int:
    """Open memfd descriptors (a compiled wasm module's memory image holds one)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += "memfd:" in os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed while we looked
            pass
    return n


def wait_for(predicate: Callable[[], object], what: str, limit_s: float = 30.0) -> None:
    """Poll ``predicate`` every 5 ms until it holds; fail naming ``what`` after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"never reached within {limit_s:g} s: {what}")
        time.sleep(0.005)


@contextmanager
def loopback_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving ``handler`` for the duration; yields ``host:port``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def send_json(handler: BaseHTTPRequestHandler, body: object) -> None:
    """Answer an ``http.server`` request with 200 and ``body`` as JSON (the loopback test servers)."""
    data = json.dumps(body).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
