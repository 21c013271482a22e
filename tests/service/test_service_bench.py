"""bench/service_bench.py's core functions, briefly, against a playing service (no timing
assertions: the structure of the report, and every request answered)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "service_bench.py"


def _bench():
    spec = importlib.util.spec_from_file_location("service_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_service_bench_core_functions(serve, track):
    bench = _bench()
    served = serve()
    status = bench.start_playing(served.socket, Path(track(30.0)))
    assert status["state"] == "playing"
    doc = bench.measure(served.socket, round_trip_count=200, rate=200.0, seconds=1.0, clients=2)
    rt, ld, idle = doc["round_trip"], doc["load"], doc["idle"]
    assert rt["requests"] == rt["answered"] == 200 and rt["errors"] == 0
    assert ld["requests"] == ld["answered"] == 200 and ld["errors"] == 0
    for part in (rt, ld):
        for key in ("p50_ms", "p99_ms", "max_ms", "mean_ms"):
            assert isinstance(part[key], float) and part[key] >= 0
    for key in ("xruns", "ring_underruns", "driver_callbacks", "frames_played", "achieved_rate_per_s"):
        assert ld[key] is not None and ld[key] >= 0
    assert ld["driver_callbacks"] > 0
    assert set(idle) >= {"xruns", "ring_underruns", "driver_callbacks"}
    targets = bench.targets(doc)
    assert [t["key"] for t in targets] == ["round_trip.p99_ms", "load.xruns"]
    assert all(isinstance(t["met"], bool) for t in targets)
    assert served.call("player.status")["state"] == "playing"
