"""Control-API benchmarks against a playing ``stellatune serve``.

    .venv/bin/python bench/service_bench.py [--round-trips 2000] [--rate 1000] [--seconds 5]
                                            [--clients 4] [--method player.status] [--output null]

It starts a real ``stellatune serve`` subprocess (on a private JACK dummy server when ``jackd``
exists, else ``--output null``), enqueues a generated WAV and plays it, then measures:

- ``round_trip``: sequential requests on one unix-socket connection; p50/p99/max ms;
- ``load``: ``--rate`` requests a second for ``--seconds`` s, spread over ``--clients``
  connections (one thread each, paced on an absolute schedule), and the service's xruns and ring
  underruns over that window (``player.status`` counters before and after).

The document goes to stdout as JSON; progress to stderr. The client runs in this process, on the
same machine as the service, so the figures include the client's own Python cost and the two
compete for the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import numpy as np

from stellatune.service import CallError, Client

REPO = Path(__file__).resolve().parent.parent
VIRTUAL_AUDIO = REPO / "scripts" / "virtual-audio"
RATE = 48000
STELLATUNE = [sys.executable, "-c", "import sys; from stellatune.cli import main; sys.exit(main())"]

#: Targets the report checks (``targets[]``).
TARGET_P99_MS = 2.0
TARGET_XRUNS = 0


def _log(msg: str) -> None:
    print(f"service_bench: {msg}", file=sys.stderr, flush=True)


def write_wav(path: Path, seconds: float) -> Path:
    """A 48 kHz stereo 440 Hz sine at -14 dBFS."""
    import soundfile as sf

    t = np.arange(int(RATE * seconds)) / RATE
    mono = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    sf.write(path, np.stack([mono, mono], axis=1), RATE)
    return path


@contextmanager
def jack_dummy(frames: int = 128) -> Iterator[Optional[str]]:
    """A private JACK dummy server (scripts/virtual-audio), its name in the env of children; None
    (and nothing started) when ``jackd`` is missing or does not come up."""
    if shutil.which("jackd") is None:
        yield None
        return
    name = f"stsvc-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="stsvc-jack-") as xdg:
        env = dict(os.environ, XDG_RUNTIME_DIR=xdg)
        started = subprocess.run(
            [str(VIRTUAL_AUDIO), "start", "--name", name, "--frames", str(frames), "--rate", str(RATE)],
            env=env,
            capture_output=True,
            text=True,
        )
        if started.returncode != 0:
            _log(f"virtual-audio start failed: {started.stderr.strip()[-300:]}")
            yield None
            return
        try:
            yield name
        finally:
            subprocess.run([str(VIRTUAL_AUDIO), "stop", "--name", name], env=env, capture_output=True)


@contextmanager
def serve(output: Optional[str], jack: Optional[str] = None, timeout: float = 120.0) -> Iterator[Path]:
    """A ``stellatune serve`` subprocess on a private socket (``output`` None = the default
    device, i.e. the JACK server ``jack`` when given); yields the socket path; SIGTERM at exit."""
    root = Path(tempfile.mkdtemp(prefix="stsvc-", dir="/tmp"))
    sock = root / "s.sock"
    env = dict(os.environ)
    if jack is not None:
        env.update(JACK_DEFAULT_SERVER=jack, JACK_NO_START_SERVER="1")
    args = [
        *STELLATUNE,
        "serve",
        "--socket",
        str(sock),
        *(["--output", output] if output is not None else []),
        "--plugins-dir",
        str(root / "plugins"),
        "--cache-dir",
        str(root / "cache"),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(root), env=env)
    try:
        _wait_ready(proc, timeout)
        yield sock
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        for f in (proc.stdout, proc.stderr):
            if f:
                f.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(proc: subprocess.Popen, timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        r, _, _ = select.select([proc.stdout], [], [], 0.5)
        if r:
            line = proc.stdout.readline()
            if line.strip() == b"ready":
                return
            if not line:
                break
    err = proc.stderr.read().decode(errors="replace") if proc.stderr and proc.poll() is not None else ""
    raise RuntimeError(f"stellatune serve did not become ready: rc={proc.poll()} {err[-2000:]}")


def start_playing(sock: Path, wav: Path, timeout: float = 30.0) -> dict[str, Any]:
    """Enqueue ``wav``, play, and wait until the driver has played a first block."""
    with Client(sock, timeout=60.0) as c:
        c.call("player.enqueue", {"items": [str(wav)]})
        c.call("player.play")
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = c.call("player.status")
            if status["state"] == "playing" and (status["counters"].get("frames_played") or 0) > 0:
                return status
            if time.monotonic() > deadline:
                raise RuntimeError(f"playback did not start: {status['state']}")
            time.sleep(0.05)


def _ms_summary(latencies_s: Sequence[float]) -> dict[str, Any]:
    if not latencies_s:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    a = np.asarray(latencies_s) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
        "max_ms": round(float(a.max()), 4),
        "mean_ms": round(float(a.mean()), 4),
    }


def round_trips(sock: Path, count: int = 2000, method: str = "player.status", warmup: int = 20) -> dict[str, Any]:
    """``count`` sequential ``method`` calls on one connection (after ``warmup`` untimed ones)."""
    lat: list[float] = []
    errors = 0
    with Client(sock, timeout=30.0) as c:
        for _ in range(warmup):
            c.call(method)
        for _ in range(count):
            t0 = time.perf_counter()
            try:
                c.call(method)
            except (CallError, OSError, ValueError):
                errors += 1
                continue
            lat.append(time.perf_counter() - t0)
    return {"method": method, "requests": count, "answered": len(lat), "errors": errors, **_ms_summary(lat)}


def _counters(c: Client) -> dict[str, int]:
    counters = c.call("player.status")["counters"]
    return {k: int(counters.get(k) or 0) for k in ("xruns", "ring_underruns", "callbacks", "frames_played")}


def load(
    sock: Path, rate: float = 1000.0, seconds: float = 5.0, clients: int = 4, method: str = "player.status"
) -> dict[str, Any]:
    """``rate`` requests/s for ``seconds`` s over ``clients`` connections, each paced on an
    absolute schedule (a late request is sent at once, never skipped: the achieved rate falls
    short when the service, or this client, cannot keep up). Counter deltas over the window."""
    per_client = max(1, round(rate * seconds / clients))
    interval = clients / rate
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    conns = [Client(sock, timeout=30.0) for _ in range(clients)]
    watcher = Client(sock, timeout=30.0)
    barrier = threading.Barrier(clients + 1)
    start_at: list[float] = [0.0]

    def worker(i: int) -> None:
        c = conns[i]
        barrier.wait()
        t_start = start_at[0] + i * interval / clients  # stagger the clients
        for n in range(per_client):
            due = t_start + n * interval
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            t0 = time.perf_counter()
            try:
                c.call(method)
            except (CallError, OSError, ValueError):
                errors[i] += 1
                continue
            lat[i].append(time.perf_counter() - t0)

    try:
        before = _counters(watcher)
        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        start_at[0] = time.perf_counter() + 0.05
        barrier.wait()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start_at[0]
        after = _counters(watcher)
    finally:
        for c in (*conns, watcher):
            c.close()
    all_lat = [x for part in lat for x in part]
    requests = per_client * clients
    return {
        "method": method,
        "clients": clients,
        "target_rate_per_s": rate,
        "seconds": round(elapsed, 3),
        "requests": requests,
        "answered": len(all_lat),
        "errors": sum(errors),
        "achieved_rate_per_s": round(len(all_lat) / elapsed, 1) if elapsed > 0 else None,
        **_ms_summary(all_lat),
        "xruns": after["xruns"] - before["xruns"],
        "ring_underruns": after["ring_underruns"] - before["ring_underruns"],
        "driver_callbacks": after["callbacks"] - before["callbacks"],
        "frames_played": after["frames_played"] - before["frames_played"],
    }


def idle(sock: Path, seconds: float = 5.0) -> dict[str, Any]:
    """The same counter deltas over ``seconds`` s with no requests: the baseline the load
    window's xruns compare against (a loaded machine has xruns of its own)."""
    with Client(sock, timeout=30.0) as c:
        before = _counters(c)
        time.sleep(seconds)
        after = _counters(c)
    return {
        "seconds": seconds,
        "xruns": after["xruns"] - before["xruns"],
        "ring_underruns": after["ring_underruns"] - before["ring_underruns"],
        "driver_callbacks": after["callbacks"] - before["callbacks"],
    }


def measure(
    sock: Path,
    *,
    round_trip_count: int = 2000,
    rate: float = 1000.0,
    seconds: float = 5.0,
    clients: int = 4,
    method: str = "player.status",
) -> dict[str, Any]:
    """Both measurements against a service that is already playing."""
    _log(f"round trip: {round_trip_count} x {method}")
    rt = round_trips(sock, round_trip_count, method)
    _log(f"load: {rate:g}/s for {seconds:g} s over {clients} clients")
    ld = load(sock, rate, seconds, clients, method)
    _log(f"idle baseline: {seconds:g} s")
    return {"round_trip": rt, "load": ld, "idle": idle(sock, seconds)}


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rt, ld = doc["round_trip"], doc["load"]
    return [
        {
            "key": "round_trip.p99_ms",
            "target": TARGET_P99_MS,
            "measured": rt["p99_ms"],
            "unit": "ms",
            "met": rt["p99_ms"] is not None and rt["p99_ms"] <= TARGET_P99_MS,
        },
        {
            "key": "load.xruns",
            "target": TARGET_XRUNS,
            "measured": ld["xruns"],
            "unit": "count",
            "met": ld["xruns"] <= TARGET_XRUNS,
        },
    ]


def run(
    *,
    output: Optional[str] = None,
    round_trip_count: int = 2000,
    rate: float = 1000.0,
    seconds: float = 5.0,
    clients: int = 4,
    method: str = "player.status",
    track_seconds: Optional[float] = None,
) -> dict[str, Any]:
    """The whole run: device, service, track, measurements; the JSON document.

    ``output`` None picks the JACK dummy device when ``jackd`` exists, else ``null``."""
    # Long enough to still be playing at the end of both parts.
    track_s = track_seconds or (round_trip_count * 0.01 + 2 * seconds + 20.0)
    with tempfile.TemporaryDirectory(prefix="stsvc-track-") as tmp:
        wav = write_wav(Path(tmp) / "t.wav", track_s)
        with jack_dummy() if output is None else _no_jack() as jack:
            out = output if output is not None else (None if jack else "null")
            device = "jack-dummy" if out is None else out
            _log(f"output: {device}")
            with serve(out, jack) as sock:
                status = start_playing(sock, wav)
                doc = measure(
                    sock, round_trip_count=round_trip_count, rate=rate, seconds=seconds, clients=clients, method=method
                )
                final = Client(sock, timeout=30.0)
                with final:
                    end = final.call("player.status")
    doc = {
        "output": device,
        "chain_thread": status.get("chain_thread"),
        "still_playing": end["state"] == "playing",
        **doc,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": list(os.getloadavg())},
    }
    doc["targets"] = targets(doc)
    return doc


@contextmanager
def _no_jack() -> Iterator[Optional[str]]:
    yield None


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--round-trips", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=1000.0, help="requests/s in the load part")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of the load part")
    ap.add_argument("--clients", type=int, default=4, help="connections (threads) in the load part")
    ap.add_argument("--method", default="player.status")
    ap.add_argument("--output", default=None, help="serve --output (default: JACK dummy if jackd, else null)")
    a = ap.parse_args(argv)
    doc = run(
        output=a.output,
        round_trip_count=a.round_trips,
        rate=a.rate,
        seconds=a.seconds,
        clients=a.clients,
        method=a.method,
    )
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
