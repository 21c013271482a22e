"""Per-stage process-time histograms, host-call and host-denial counters, linear memory and
lifecycle timings in the metrics."""

from __future__ import annotations

import itertools
import socket
import threading
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from stellatune.engine.stats import HIST_BUCKETS, hist_bucket
from stellatune.errors import PluginError
from stellatune.host import Grants, HostCalls
from stellatune.service.durations import DurationHistogram
from stellatune.service.metrics import StellatuneCollector, snapshot, stage_histogram

from .conftest import GAIN, wait_for


def test_stage_histogram_is_cumulative_and_exact_at_its_bounds():
    samples = [300, 1023, 1024, 1500, 3000, 3000, 50_000, 2_600_000, 10**9]
    hist = [0] * HIST_BUCKETS
    for ns in samples:
        hist[hist_bucket(ns)] += 1
    buckets, total = stage_histogram(hist, sum(samples))
    assert buckets[-1] == ("+Inf", float(len(samples)))
    assert total == pytest.approx(sum(samples) / 1e9)
    counts = [c for _, c in buckets]
    assert counts == sorted(counts)
    for le, count in buckets[:-1]:
        # Each bound sits on an engine bucket edge: its count is exactly the samples ≤ it.
        assert count == sum(1 for ns in samples if ns <= float(le) * 1e9 + 1e-6), le
    assert float(buckets[0][0]) == pytest.approx(1023e-9)
    assert float(buckets[-2][0]) == pytest.approx((2**25 - 1) / 1e9)


def _fake_app(timings, denials, *, calls=None, memory=(), plugins=(), transitions=None):
    status = {"state": "playing", "counters": {"xruns": 0, "ring_underruns": 0}, "chain": []}
    return SimpleNamespace(
        player=SimpleNamespace(status=lambda: status, stage_timings=lambda: timings),
        _lock=threading.Lock(),
        fault_counts={},
        sync_durations_ms=[],
        event_counts={},
        transition_times=transitions or {},
        plugins=lambda: list(plugins),
        sidecars=lambda: [],
        host_denials=lambda: denials,
        host_calls=lambda: calls or {},
        memory=lambda: list(memory),
    )


def _families(app):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StellatuneCollector(app))
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


def test_collector_exposes_stage_histograms_and_denials():
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    hist = [0] * HIST_BUCKETS
    hist[hist_bucket(2000)] = 7
    timings = [{"index": 0, "spec": "a:b:{}", "route": "hot-path", "timing": {"hist": hist, "total_ns": 14000}}]
    app = _fake_app(timings, {"p.one": {"http": 2, "files": 1}})
    assert snapshot(app)["host_denials"] == {"p.one": {"http": 2, "files": 1}}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StellatuneCollector(app))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    proc = families["stellatune_stage_process_seconds"]
    assert proc.type == "histogram"
    count = [s for s in proc.samples if s.name.endswith("_count")]
    assert count[0].value == 7 and count[0].labels == {"index": "0", "spec": "a:b:{}", "route": "hot-path"}
    inf = [s for s in proc.samples if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"]
    assert inf[0].value == 7
    denials = {(s.labels["plugin_id"], s.labels["grant"]): s.value for s in families["stellatune_host_denials"].samples}
    assert denials[("p.one", "http")] == 2 and denials[("p.one", "files")] == 1


def test_collector_exposes_host_calls_memory_and_transition_times():
    plugin = {"id": "p.one", "lifecycle_state": "active", "instances": 2}
    memory = [
        {
            "plugin_id": "p.one",
            "kind": "hot-path",
            "where": "p.one:x:{}",
            "index": 0,
            "linear_memory_bytes": 131072,
            "memory_limit_bytes": 1 << 26,
        },
        {
            "plugin_id": "p.one",
            "kind": "component",
            "where": "x",
            "index": None,
            "linear_memory_bytes": None,
            "memory_limit_bytes": 1 << 29,
        },
        {
            "plugin_id": "p.one",
            "kind": "component",
            "where": "x",
            "index": None,
            "linear_memory_bytes": None,
            "memory_limit_bytes": 1 << 29,
        },
    ]
    hist = DurationHistogram()
    for ms in (0.2, 3.0, 3.0, 70.0, 99999.0):
        hist.observe(ms)
    app = _fake_app(
        [],
        {},
        calls={"p.one": {"host-stream-handle.read": 40, "http-client.fetch-json": 1}},
        memory=memory,
        plugins=[plugin],
        transitions={("p.one", "load_new"): hist},
    )
    snap = snapshot(app)
    assert snap["host_calls"] == {"p.one": {"host-stream-handle.read": 40, "http-client.fetch-json": 1}}
    assert snap["plugins"] == [
        {
            "id": "p.one",
            "lifecycle_state": "active",
            "instances": 2,
            "hot_path_stages": 1,
            "linear_memory_bytes": 131072,
            "memory_limit_bytes": (1 << 26) + 2 * (1 << 29),
        }
    ]
    assert snap["transitions"] == {
        "p.one": {"load_new": {"count": 5, "sum_ms": pytest.approx(100075.2), "last_ms": 99999.0}}
    }
    families = _families(app)
    calls = {(s.labels["plugin_id"], s.labels["function"]): s.value for s in families["stellatune_host_calls"].samples}
    assert calls == {("p.one", "host-stream-handle.read"): 40, ("p.one", "http-client.fetch-json"): 1}
    instances = {s.labels["kind"]: s.value for s in families["stellatune_plugin_instances"].samples}
    assert instances == {"hot-path": 1, "component": 2}
    memory_bytes = {s.labels["kind"]: s.value for s in families["stellatune_plugin_linear_memory_bytes"].samples}
    assert memory_bytes == {"hot-path": 131072}  # a component instance's size is not readable: no sample
    limits = {s.labels["kind"]: s.value for s in families["stellatune_plugin_linear_memory_limit_bytes"].samples}
    assert limits == {"hot-path": 1 << 26, "component": 2 * (1 << 29)}
    steps = families["stellatune_plugin_transition_duration_ms"]
    assert steps.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in steps.samples if s.name.endswith("_bucket")}
    assert buckets["0.5"] == 1 and buckets["5.0"] == 3 and buckets["100.0"] == 4 and buckets["+Inf"] == 5
    assert [s.labels["trigger"] for s in steps.samples if s.name.endswith("_count")] == ["load_new"]


def test_duration_histogram_never_counts_down():
    hist = DurationHistogram(bounds=(1.0, 10.0))
    seen = []
    for ms in (1.0, 0.5, 10.0, 11.0, 1.0):  # a bound is inclusive (le)
        hist.observe(ms)
        seen.append([c for _, c in hist.cumulative()])
    assert seen[-1] == [3.0, 4.0, 5.0]
    for earlier, later in itertools.pairwise(seen):
        assert all(a <= b for a, b in zip(earlier, later, strict=True))


def test_host_calls_count_exactly_across_threads():
    calls = HostCalls()
    names = ["host-stream-handle.read", "channel.write"]

    def hammer() -> None:
        for i in range(2000):
            calls.add(names[i % 2])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert calls.counts() == {"host-stream-handle.read": 4000, "channel.write": 4000}
    assert calls.total() == 8000
    counts = calls.counts()
    counts["channel.write"] = 0  # a copy
    assert calls.counts()["channel.write"] == 4000


def test_grants_count_denials_by_kind(tmp_path: Path):
    grants = Grants(tmp_path, http=["example.com"], tcp=["example.com:7000"])
    assert grants.denials() == {}
    with pytest.raises(PluginError) as info:
        grants.check_http("https://other.example.org/x")
    assert info.value.code == "denied"
    with pytest.raises(PluginError):
        grants.check_tcp("other.example.org:7000")
    with pytest.raises(PluginError):
        grants.check_file("/etc/passwd")
    with pytest.raises(PluginError):
        grants.check_sidecar("/bin/sh")
    grants.check_http("https://example.com/ok")  # allowed: not counted
    with pytest.raises(PluginError):
        grants.check_http("")  # invalid-arg: not a denial
    assert grants.denials() == {"http": 1, "tcp": 1, "files": 1, "sidecars": 1}


def test_playing_stage_histogram_is_scraped(serve, track, built):
    from prometheus_client.parser import text_string_to_metric_families

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    served = serve("--metrics", f"127.0.0.1:{port}")
    served.call("plugins.install", {"path": str(built("gain"))})
    served.call("chain.insert", {"index": 0, "spec": f"{GAIN}:gain"})
    served.call("player.enqueue", {"items": [track(30.0)]})
    served.call("player.play")

    def scraped_calls():
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
        fam = {f.name: f for f in text_string_to_metric_families(text)}["stellatune_stage_process_seconds"]
        counts = [s for s in fam.samples if s.name.endswith("_count")]
        return counts if counts and counts[0].value > 10 else None

    counts = wait_for(scraped_calls, timeout=30)
    assert counts[0].labels["spec"].startswith(GAIN) and counts[0].labels["index"] == "0"
    assert "host_denials" in served.call("metrics.get")


def test_denials_become_grant_denied_events(tmp_path: Path):
    import json

    import jsonschema

    from stellatune.events import EventHub
    from stellatune.service import EVENTS_SCHEMA_PATH
    from stellatune.service.app import ServiceApp, _EventedHostServices

    hub = EventHub()
    seen: list = []
    hub.subscribe(seen.append, kinds=["grant-denied"])
    app = SimpleNamespace(events=hub)
    app._on_grant_denied = lambda *a: ServiceApp._on_grant_denied(app, *a)  # type: ignore[arg-type]
    imports = _EventedHostServices(app).for_plugin("p.two", tmp_path, None)  # type: ignore[arg-type]
    with pytest.raises(PluginError):
        imports.grants.check_http("https://example.com/")
    assert imports.grants.denials() == {"http": 1}
    assert len(seen) == 1
    doc = seen[0].to_json() if hasattr(seen[0], "to_json") else dict(seen[0])
    assert doc["kind"] == "grant-denied" and doc["plugin_id"] == "p.two" and doc["severity"] == "warning"
    assert doc["data"]["grant"] == "http" and "permissions.http" in doc["data"]["message"]
    jsonschema.validate(json.loads(json.dumps(doc)), json.loads(EVENTS_SCHEMA_PATH.read_text()))
