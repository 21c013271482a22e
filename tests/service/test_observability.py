"""What the service reports beyond the basics, against a real ``stellatune serve`` with real
plugins: timeout and non-finite faults as their own events, exact linear memory per hot-path
instance, host calls per function, and per-plugin lifecycle timings."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import wasmtime

from stellatune.sdk.build import build_plugin
from stellatune.service import EVENTS_SCHEMA_PATH, Client

from .conftest import GAIN, STELLATUNE, wait_for

SCHEMA = json.loads(EVENTS_SCHEMA_PATH.read_text())
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"
FAULT = "dev.stellatune.test.fault-dsp"
WAV = "dev.stellatune.example.wav-decoder"


def _port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def _scrape(port: int) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _samples(families: dict[str, Any], name: str, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in families[name].samples if s.name == f"{name}{suffix}"}


def _playing(served, track) -> None:
    served.call("player.enqueue", {"items": [track(60.0)]})
    served.call("player.play")
    start = served.call("player.status")["counters"]["frames_played"]
    wait_for(lambda: served.call("player.status")["counters"]["frames_played"] > start, timeout=60)


def _events_until(client: Client, done, timeout: float = 60.0) -> list[dict]:
    """Events pushed on ``client`` until ``done(events)`` holds (bounded)."""
    client.sock.settimeout(timeout)
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = client.next_notification()
        assert msg["method"] == "event"
        seen.append(msg["params"])
        if done(seen):
            return seen
    raise AssertionError(f"events never complete; got {[e['kind'] for e in seen]}")


def test_timeout_and_non_finite_faults_are_their_own_events(serve, track):
    served = serve()
    events = served.client()
    events.call("events.subscribe", {"kinds": ["stage-fault", "stage-timeout", "stage-non-finite"]})
    served.call("plugins.install", {"path": str(build_plugin(FIXTURES / "fault-dsp"))})
    _playing(served, track)
    # Real wasm through the SDK: stage 0 spins from its 10th block on (every call overruns its
    # deadline until the engine gives up on it), stage 1 writes a NaN from its 10th block on.
    served.call(
        "chain.set",
        {"stages": [f'{FAULT}:fault:{{"mode": 4, "after": 10}}', f'{FAULT}:fault:{{"mode": 1, "after": 10}}']},
    )
    got = _events_until(events, lambda seen: {"stage-timeout", "stage-non-finite"} <= {e["kind"] for e in seen})
    for e in got:
        jsonschema.validate(e, SCHEMA)
    by_kind = {e["kind"]: e for e in got}
    assert "stage-fault" not in by_kind, got
    timeout, nonfinite = by_kind["stage-timeout"], by_kind["stage-non-finite"]
    assert (timeout["data"]["index"], timeout["data"]["fault"]) == (0, "timeout")
    assert (nonfinite["data"]["index"], nonfinite["data"]["fault"]) == (1, "non-finite")
    assert timeout["plugin_id"] == nonfinite["plugin_id"] == FAULT
    assert timeout["severity"] == nonfinite["severity"] == "error"
    assert nonfinite["data"]["block"] >= 10 and timeout["data"]["block"] >= 10
    snap = served.call("metrics.get")
    assert snap["faults_by_kind"] == {"timeout": 1, "non-finite": 1}
    assert [s["fault"] for s in snap["stages"]] == ["timeout", "non-finite"]
    # Both stages are bypassed; the music goes on.
    before = served.call("player.status")["counters"]["frames_played"]
    wait_for(lambda: served.call("player.status")["counters"]["frames_played"] > before, timeout=30)
    events.close()


def _declared_memory(plugin_dir: Path) -> int:
    """The linear memory the plugin's hot-path module declares (what init starts from)."""
    (module,) = plugin_dir.glob("wasm/*.hotpath.wasm")
    m = wasmtime.Module.from_file(wasmtime.Engine(), str(module))
    (memory,) = [e.type for e in m.exports if isinstance(e.type, wasmtime.MemoryType)]
    return memory.limits.min * 65536


def test_linear_memory_per_instance_is_reported_exactly(serve, track, built, tmp_path):
    port = _port()
    plugins = tmp_path / "plugins"
    served = serve("--metrics", f"127.0.0.1:{port}", plugins_dir=plugins)
    served.call("plugins.install", {"path": str(built("gain"))})
    _playing(served, track)
    served.call("chain.insert", {"index": 0, "spec": f"{GAIN}:gain"})
    expected = _declared_memory(plugins / GAIN)  # the gain kernel's init does not grow it
    assert expected > 0

    snap = served.call("metrics.get")
    hot = [m for m in snap["memory"] if m["kind"] == "hot-path"]
    assert hot == [
        {
            "plugin_id": GAIN,
            "kind": "hot-path",
            "where": hot[0]["where"],
            "index": 0,
            "linear_memory_bytes": expected,
            "memory_limit_bytes": 64 << 20,
        }
    ]
    assert hot[0]["where"].startswith(f"{GAIN}:gain")
    components = [m for m in snap["memory"] if m["kind"] == "component" and m["plugin_id"] == GAIN]
    instances = next(p for p in served.call("plugins.list")["plugins"] if p["id"] == GAIN)["instances"]
    assert instances >= 1 and len(components) == instances
    assert all(m["linear_memory_bytes"] is None and m["memory_limit_bytes"] == 512 << 20 for m in components)
    row = next(p for p in snap["plugins"] if p["id"] == GAIN)
    assert (row["hot_path_stages"], row["linear_memory_bytes"]) == (1, expected)
    assert served.call("chain.get")[0]["linear_memory_bytes"] == expected

    families = _scrape(port)
    gain = (("kind", "hot-path"), ("plugin_id", GAIN))
    assert _samples(families, "stellatune_plugin_linear_memory_bytes")[gain] == expected
    counts = _samples(families, "stellatune_plugin_instances")
    assert counts[gain] == 1 and counts[(("kind", "component"), ("plugin_id", GAIN))] == instances

    human = subprocess.run(
        [*STELLATUNE, "status", "--socket", str(served.socket)], capture_output=True, timeout=60, check=True
    ).stdout.decode()
    section = human[human.index("linear memory (") :].splitlines()[1:]
    line = next(ln for ln in section if "hot-path" in ln and GAIN in ln)
    assert f"{expected} B" in line and f"{64 << 20} B" in line
    assert any("component" in ln and "not readable" in ln for ln in section)
    doc = json.loads(
        subprocess.run(
            [*STELLATUNE, "status", "--json", "--socket", str(served.socket)], capture_output=True, timeout=60
        ).stdout
    )
    assert [m["linear_memory_bytes"] for m in doc["memory"] if m["kind"] == "hot-path"] == [expected]


@pytest.mark.slow  # the Python component compiles once per cache (tens of seconds the first time)
def test_host_calls_are_counted_per_plugin_and_function(serve, track, built):
    port = _port()
    served = serve("--metrics", f"127.0.0.1:{port}")
    served.call("plugins.install", {"path": str(built("wav-decoder"))})
    # With a decoder plugin active for .wav, the player decodes the track through it: the plugin
    # reads the host stream it is handed (host-stream-handle.* imports).
    _playing(served, track)

    def counted() -> dict[str, int]:
        calls = served.call("metrics.get")["host_calls"].get(WAV, {})
        return calls if calls.get("host-stream-handle.read", 0) > 1 else {}

    calls = wait_for(counted, timeout=60)
    assert calls["host-stream-handle.seek"] >= 1 and calls["host-stream-handle.size"] >= 1
    assert set(calls) <= {f"host-stream-handle.{m}" for m in ("read", "seek", "tell", "size", "close")}
    first = calls["host-stream-handle.read"]
    # It keeps counting while the track plays (the feeder decodes ahead, block by block).
    wait_for(lambda: counted().get("host-stream-handle.read", 0) > first, timeout=60)
    scraped = _samples(_scrape(port), "stellatune_host_calls", "_total")
    assert scraped[(("function", "host-stream-handle.read"), ("plugin_id", WAV))] > first


def test_lifecycle_transitions_carry_their_own_durations(serve, built):
    port = _port()
    served = serve("--metrics", f"127.0.0.1:{port}")
    events = served.client()
    events.call("events.subscribe", {"kinds": ["plugin-transition"]})
    served.call("plugins.install", {"path": str(built("gain"))})
    served.call("plugins.disable", {"id": GAIN})
    served.call("plugins.enable", {"id": GAIN})
    got = _events_until(events, lambda seen: len(seen) >= 3)
    for e in got:
        jsonschema.validate(e, SCHEMA)
        assert e["plugin_id"] == GAIN and e["data"]["duration_ms"] >= 0
    load, disable, reload = got[:3]
    assert (load["data"]["trigger"], load["data"]["outcome"], load["data"]["to"]) == ("load_new", "applied", "active")
    # Inside a sync: the plugin's own step is part of the sync's total.
    assert 0 < load["data"]["duration_ms"] <= load["data"]["sync_ms"]
    # plugins.disable deactivates at once, outside a sync: its own event, no sync time.
    assert disable["data"]["trigger"] == "host-disable" and disable["data"]["detail"] == "deactivated"
    assert (disable["data"]["from"], disable["data"]["to"], disable["data"]["sync_ms"]) == ("active", "disabled", None)
    assert reload["data"]["trigger"] == "load_new" and reload["data"]["to"] == "active"
    events.close()

    steps = served.call("metrics.get")["transitions"][GAIN]
    assert steps["load_new"]["count"] == 2 and steps["host-disable"]["count"] == 1
    assert steps["host-disable"]["last_ms"] == pytest.approx(disable["data"]["duration_ms"])
    hist = _samples(_scrape(port), "stellatune_plugin_transition_duration_ms", "_count")
    assert hist[(("plugin_id", GAIN), ("trigger", "load_new"))] == 2
    assert hist[(("plugin_id", GAIN), ("trigger", "host-disable"))] == 1
