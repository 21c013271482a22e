"""Service fixtures: a real ``stellatune serve`` subprocess on a short private socket path, a
test track, and a JACK dummy server for the ``audio`` test."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from stellatune.service import Client

RATE = 48000
#: The ``stellatune`` command, run by this interpreter.
STELLATUNE = [sys.executable, "-c", "import sys; from stellatune.cli import main; sys.exit(main())"]
GAIN = "dev.stellatune.example.gain"


class Served:
    """A running ``stellatune serve``."""

    def __init__(self, proc: subprocess.Popen, socket: Path, root: Path, args: list[str]):
        self.proc, self.socket, self.root, self.args = proc, socket, root, args

    def client(self, **kw: Any) -> Client:
        return Client(self.socket, timeout=kw.pop("timeout", 60.0), **kw)

    def call(self, method: str, params: Any = None) -> Any:
        with self.client() as c:
            return c.call(method, params)

    def children(self) -> set[int]:
        found = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == self.proc.pid:
                    found.add(int(entry))
        return found

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise


def _wait_ready(proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.5)
        if r:
            line = proc.stdout.readline()
            if line.strip() == b"ready":
                return
            if not line and proc.poll() is not None:
                break
        if proc.poll() is not None:
            break
    err = proc.stderr.read().decode(errors="replace") if proc.stderr and proc.poll() is not None else ""
    proc.kill()
    raise AssertionError(f"stellatune serve did not become ready: rc={proc.poll()} {err[-2000:]}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """``serve(*extra_args, output="null")`` starts a service; every one is stopped after the test."""
    started: list[Served] = []
    roots: list[Path] = []

    def start(*extra: str, output: str | None = "null", plugins_dir: Path | None = None) -> Served:
        root = Path(tempfile.mkdtemp(prefix="sts-", dir="/tmp"))
        roots.append(root)
        sock = root / "s.sock"
        pdir = plugins_dir or (tmp_path / "plugins")
        args = [
            *STELLATUNE,
            "serve",
            "--socket",
            str(sock),
            *(["--output", output] if output is not None else []),
            "--plugins-dir",
            str(pdir),
            "--cache-dir",
            str(tmp_path.parent / "st-service-cache"),
            *extra,
        ]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(root))
        _wait_ready(proc, 120.0)
        s = Served(proc, sock, root, args)
        started.append(s)
        return s

    yield start
    for s in started:
        try:
            s.stop()
        finally:
            if s.proc.stderr:
                s.proc.stderr.close()
            if s.proc.stdout:
                s.proc.stdout.close()
    for r in roots:
        shutil.rmtree(r, ignore_errors=True)


@pytest.fixture
def track(tmp_path: Path) -> Callable[..., str]:
    """``track(seconds)`` → a path to a 48 kHz stereo sine WAV."""

    def make(seconds: float = 30.0, name: str = "t.wav") -> str:
        t = np.arange(int(RATE * seconds)) / RATE
        mono = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        path = tmp_path / name
        sf.write(path, np.stack([mono, mono], axis=1), RATE)
        return str(path)

    return make


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(interval)
