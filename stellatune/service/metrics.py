"""Metrics: a JSON snapshot (``metrics.get``) and the Prometheus text exposition (``--metrics``).

Everything is read on demand from the control plane: the engine's C counters through
``Player.status()`` / ``Player.counters()``, the runtime and executor, the sidecar manager, and
the service's own event counts. Nothing on the audio thread formats or allocates for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional

from ..diagnostics import live_counts

if TYPE_CHECKING:
    from .app import ServiceApp

__all__ = ["snapshot", "stage_histogram", "StellatuneCollector", "start_metrics_server"]

_SYNC_BUCKETS_MS = (1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0)

#: The engine's histogram buckets exposed as Prometheus ``le`` bounds: every engine bucket edge
#: (4 per octave of ns) from 2^10 ns (~1 µs) to 2^25 ns (~33.5 ms), so the cumulative counts are
#: exact sums of engine buckets, and p99s near a block deadline (2.7 ms at 128 frames) keep
#: quarter-octave resolution. Faster calls fall in the first bucket, slower ones in ``+Inf``.
_STAGE_HIST_FIRST_OCTAVE = 10
_STAGE_HIST_LAST_OCTAVE = 25


def _bucket_upper_ns(bucket: int) -> int:
    """The exclusive upper edge, in ns, of engine histogram bucket ``bucket``
    (engine/stats.py ``hist_bucket``: ``msb * 4 + the two bits after the msb``)."""
    if bucket < 4:
        return bucket + 1
    octave, quarter = divmod(bucket, 4)
    return (1 << octave) * (5 + quarter) // 4


def stage_histogram(hist: list[int], total_ns: int) -> tuple[list[tuple[str, float]], float]:
    """Cumulative Prometheus buckets ``[(le_seconds, count), ..., ("+Inf", calls)]`` and the sum
    in seconds from one stage's raw engine histogram. A bucket's edge is exclusive in the engine
    (integer ns), so ``le`` = edge - 1 ns holds exactly the calls below it."""
    from ..engine.stats import HIST_BUCKETS

    counts = list(hist)[:HIST_BUCKETS]
    buckets: list[tuple[str, float]] = []
    seen = 0
    b = 0
    # Bucket 4k-1 ends at 2^k ns: bounds 2^FIRST, 2^FIRST * 5/4, ..., 2^LAST ns.
    for last in range(4 * _STAGE_HIST_FIRST_OCTAVE - 1, 4 * _STAGE_HIST_LAST_OCTAVE):
        while b <= last and b < len(counts):
            seen += counts[b]
            b += 1
        buckets.append((repr((_bucket_upper_ns(last) - 1) / 1e9), float(seen)))
    buckets.append(("+Inf", float(sum(counts))))
    return buckets, total_ns / 1e9


def _plugin_rows(app: ServiceApp, memory: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per installed plugin: lifecycle state, instances by kind and linear memory. Only hot-path
    stores have a readable size, so ``linear_memory_bytes`` sums those; ``memory_limit_bytes``
    sums the caps of every instance (hot-path and component)."""
    rows = []
    for p in app.plugins():
        mine = [m for m in memory if m["plugin_id"] == p["id"]]
        hot = [m for m in mine if m["kind"] == "hot-path"]
        rows.append(
            {
                "id": p["id"],
                "lifecycle_state": p["lifecycle_state"],
                "instances": p["instances"],
                "hot_path_stages": len(hot),
                "linear_memory_bytes": sum(m["linear_memory_bytes"] for m in hot),
                "memory_limit_bytes": sum(m["memory_limit_bytes"] or 0 for m in mine),
            }
        )
    return rows


def snapshot(app: ServiceApp) -> dict[str, Any]:
    """Every metric as one JSON-able dict."""
    status = app.player.status()
    memory = app.memory()
    with app._lock:
        faults = dict(app.fault_counts)
        syncs = list(app.sync_durations_ms)
        events = dict(app.event_counts)
        transitions: dict[str, dict[str, Any]] = {}
        for (pid, trigger), hist in sorted(app.transition_times.items()):
            transitions.setdefault(pid, {})[trigger] = hist.to_json()
    return {
        "player": {"state": status["state"], **status["counters"]},
        "stages": [
            {
                "index": i,
                "spec": s.get("spec"),
                "route": s.get("route"),
                "bypassed": s.get("bypassed"),
                "p50_us": s.get("p50_us"),
                "p99_us": s.get("p99_us"),
                "timeouts": s.get("timeouts", 0),
                "linear_memory_bytes": s.get("linear_memory_bytes"),
                "fault": (s.get("fault") or {}).get("kind") if s.get("fault") else None,
            }
            for i, s in enumerate(status["chain"])
        ],
        "plugins": _plugin_rows(app, memory),
        "memory": memory,
        "sidecars": [
            {"plugin_id": s["plugin_id"], "restarts": s["restarts"], "crashes": s["crashes"], "starts": s["starts"]}
            for s in app.sidecars()
        ],
        "faults_by_kind": faults,
        "host_denials": app.host_denials(),
        "host_calls": app.host_calls(),
        "transitions": transitions,
        "sync": {"count": len(syncs), "sum_ms": sum(syncs), "last_ms": syncs[-1] if syncs else None},
        "events": events,
        "live": live_counts(),
    }


class StellatuneCollector:
    """A ``prometheus_client`` collector over :func:`snapshot` (read at each scrape)."""

    def __init__(self, app: ServiceApp):
        self.app = app

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        snap = snapshot(self.app)
        player = snap["player"]
        for name, key, doc in (
            ("stellatune_xruns", "xruns", "Device underflows (xruns) reported by the audio driver"),
            ("stellatune_ring_underruns", "ring_underruns", "Driver blocks that found the decode ring short"),
            ("stellatune_frames_played", "frames_played", "Frames the driver has played"),
            ("stellatune_driver_callbacks", "callbacks", "Driver blocks (callbacks or clock ticks)"),
            ("stellatune_chain_swaps", "chain_swaps", "Live chain swaps"),
        ):
            yield CounterMetricFamily(name, doc, value=float(player.get(key) or 0))
        stage_time = GaugeMetricFamily(
            "stellatune_stage_process_time_us",
            "Per-stage process time per block (engine stats), by quantile",
            labels=["index", "spec", "route", "quantile"],
        )
        for s in snap["stages"]:
            for q, key in (("0.5", "p50_us"), ("0.99", "p99_us")):
                if s[key] is not None:
                    stage_time.add_metric([str(s["index"]), str(s["spec"]), str(s["route"]), q], float(s[key]))
        yield stage_time
        process = HistogramMetricFamily(
            "stellatune_stage_process_seconds",
            "Per-stage process time per block (engine's log-bucket histogram, read on scrape)",
            labels=["index", "spec", "route"],
        )
        for t in self.app.player.stage_timings():
            buckets, total = stage_histogram(t["timing"]["hist"], t["timing"]["total_ns"])
            process.add_metric([str(t["index"]), str(t["spec"]), str(t["route"])], buckets, total)
        yield process
        faults = CounterMetricFamily("stellatune_stage_faults", "Hot-path stage faults, by kind", labels=["kind"])
        for kind, n in sorted(snap["faults_by_kind"].items()):
            faults.add_metric([kind], float(n))
        yield faults
        timeouts = CounterMetricFamily(
            "stellatune_stage_timeouts",
            "Blocks a stage skipped because its call overran the deadline (before any timeout fault)",
            labels=["index", "spec", "route"],
        )
        for s in snap["stages"]:
            timeouts.add_metric([str(s["index"]), str(s["spec"]), str(s["route"])], float(s["timeouts"] or 0))
        yield timeouts
        yield from _plugin_families(snap)
        calls = CounterMetricFamily(
            "stellatune_host_calls",
            "Host calls a plugin's guest made, by host function",
            labels=["plugin_id", "function"],
        )
        for pid, counts in sorted(snap["host_calls"].items()):
            for function, n in sorted(counts.items()):
                calls.add_metric([pid, function], float(n))
        yield calls
        denials = CounterMetricFamily(
            "stellatune_host_denials", "Host calls refused for a missing grant", labels=["plugin_id", "grant"]
        )
        for pid, counts in sorted(snap["host_denials"].items()):
            for grant, n in sorted(counts.items()):
                denials.add_metric([pid, grant], float(n))
        yield denials
        restarts = CounterMetricFamily("stellatune_sidecar_restarts", "Sidecar restarts", labels=["plugin_id"])
        crashes = CounterMetricFamily("stellatune_sidecar_crashes", "Sidecar crashes", labels=["plugin_id"])
        for s in snap["sidecars"]:
            restarts.add_metric([s["plugin_id"]], float(s["restarts"]))
            crashes.add_metric([s["plugin_id"]], float(s["crashes"]))
        yield restarts
        yield crashes
        with self.app._lock:
            syncs = list(self.app.sync_durations_ms)
        buckets = [(str(b), float(sum(1 for d in syncs if d <= b))) for b in _SYNC_BUCKETS_MS]
        buckets.append(("+Inf", float(len(syncs))))
        yield HistogramMetricFamily(
            "stellatune_sync_duration_ms", "Plugin sync durations (ms)", buckets=buckets, sum_value=sum(syncs)
        )
        steps = HistogramMetricFamily(
            "stellatune_plugin_transition_duration_ms",
            "How long a plugin's lifecycle steps took (ms), by trigger",
            labels=["plugin_id", "trigger"],
        )
        with self.app._lock:
            hists = [(key, h.cumulative(), h.sum_ms) for key, h in sorted(self.app.transition_times.items())]
        for (pid, trigger), cumulative, total in hists:
            steps.add_metric([pid, trigger], cumulative, total)
        yield steps
        live = GaugeMetricFamily("stellatune_live_objects", "Live native resources (diagnostics)", labels=["kind"])
        for kind, n in sorted(snap["live"].items()):
            live.add_metric([kind], float(n))
        yield live
        events = CounterMetricFamily("stellatune_events", "Events emitted, by kind", labels=["kind"])
        for kind, n in sorted(snap["events"].items()):
            events.add_metric([kind], float(n))
        yield events


def _plugin_families(snap: dict[str, Any]) -> Iterator[Any]:
    """Instances and linear memory per plugin, by kind of instance (``hot-path``: a stage's own
    store; ``component``: a component instance)."""
    from prometheus_client.core import GaugeMetricFamily

    instances = GaugeMetricFamily(
        "stellatune_plugin_instances", "Live instances (wasm stores), by kind", labels=["plugin_id", "kind"]
    )
    memory = GaugeMetricFamily(
        "stellatune_plugin_linear_memory_bytes",
        "Linear memory of the plugin's hot-path stores (exact: fixed after init)",
        labels=["plugin_id", "kind"],
    )
    limits = GaugeMetricFamily(
        "stellatune_plugin_linear_memory_limit_bytes",
        "Sum of the memory caps of the plugin's instances",
        labels=["plugin_id", "kind"],
    )
    for p in snap["plugins"]:
        instances.add_metric([p["id"], "component"], float(p["instances"]))
        instances.add_metric([p["id"], "hot-path"], float(p["hot_path_stages"]))
        if p["hot_path_stages"]:
            memory.add_metric([p["id"], "hot-path"], float(p["linear_memory_bytes"]))
        for kind in ("hot-path", "component"):
            caps = [
                m["memory_limit_bytes"] or 0 for m in snap["memory"] if m["plugin_id"] == p["id"] and m["kind"] == kind
            ]
            if caps:
                limits.add_metric([p["id"], kind], float(sum(caps)))
    yield instances
    yield memory
    yield limits


def start_metrics_server(app: ServiceApp, host: str, port: int) -> tuple[Any, Optional[Any]]:
    """Serve ``/metrics`` on ``host:port`` (a daemon thread); returns (server, thread)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StellatuneCollector(app))
    result = start_http_server(port, addr=host, registry=registry)
    if isinstance(result, tuple):
        return result[0], result[1]
    return result, None
