"""``stellatune ctl`` and ``stellatune status``: clients of a running ``stellatune serve``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..service import CallError, Client, default_socket_path
from . import EXIT_FAILURE, EXIT_INVALID, EXIT_OK, one_line
from .output import print_json

__all__ = ["register", "status_document"]

_INVALID_PARAMS = -32602


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ctl", help="call one method of a running service; print the result as JSON")
    p.add_argument("method", metavar="METHOD")
    p.add_argument("params", nargs="?", default=None, metavar="PARAMS_JSON")
    p.add_argument("--socket", type=Path, metavar="PATH", help="the service's socket (default as for serve)")
    p.set_defaults(func=cmd_ctl)

    p = subparsers.add_parser("status", help="show a running service: player, chain, plugins, sidecars")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--watch", action="store_true", help="redraw every second until Ctrl-C")
    p.add_argument("--socket", type=Path, metavar="PATH", help="the service's socket (default as for serve)")
    p.set_defaults(func=cmd_status)


def _error(err: CallError) -> int:
    data = err.data
    code = data.get("code", "error")
    print(f"error: [{code}] {one_line(str(err))}", file=sys.stderr)
    if data.get("hint"):
        print(f"hint: {one_line(str(data['hint']))}", file=sys.stderr)
    return EXIT_INVALID if err.code == _INVALID_PARAMS else EXIT_FAILURE


def _connect(args: argparse.Namespace) -> Client:
    path = args.socket or default_socket_path()
    try:
        return Client(path)
    except OSError as e:
        raise ConnectionError(f"cannot reach the service at {path}: {e}") from e


def cmd_ctl(args: argparse.Namespace) -> int:
    params: Any = {}
    if args.params is not None:
        try:
            params = json.loads(args.params)
        except ValueError as e:
            print(f"error: PARAMS_JSON is not JSON: {e}", file=sys.stderr)
            return EXIT_INVALID
        if not isinstance(params, dict):
            print("error: PARAMS_JSON must be a JSON object", file=sys.stderr)
            return EXIT_INVALID
    try:
        with _connect(args) as client:
            result = client.call(args.method, params)
    except CallError as err:
        return _error(err)
    except (ConnectionError, OSError) as e:
        print(f"error: {one_line(str(e))}", file=sys.stderr)
        return EXIT_FAILURE
    print_json(result)
    return EXIT_OK


def status_document(client: Client) -> dict[str, Any]:
    """What ``status --json`` prints: the player, the chain with stage stats, plugins, sidecars,
    linear memory per instance, counters (one call each, on one connection)."""
    player = client.call("player.status")
    runtime = client.call("runtime.status")
    metrics = client.call("metrics.get")
    return {
        "player": player,
        "chain": player.get("chain", []),
        "plugins": runtime["plugins"],
        "sidecars": runtime["sidecars"],
        "counters": player.get("counters", {}),
        "memory": metrics.get("memory", []),
        "faults_by_kind": metrics.get("faults_by_kind", {}),
        "live": metrics.get("live", {}),
    }


def _fmt(v: Any, spec: str = "") -> str:
    return "-" if v is None else format(v, spec)


def _size(n: Any) -> str:
    """Bytes, exact, with MiB for the eye; ``-`` when unknown."""
    return "-" if n is None else f"{n} B ({n / (1 << 20):.2f} MiB)"


def _memory_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"linear memory ({len(rows)} instance(s)):"]
    for m in rows:
        at = f"#{m['index']} " if m.get("index") is not None else ""
        # A component instance's memory is not readable from the host (no exported core memory):
        # say so rather than print a number that is not its size.
        size = _size(m["linear_memory_bytes"]) if m.get("linear_memory_bytes") is not None else "not readable"
        lines.append(
            f"  {m['plugin_id']}  {m['kind']}  {at}{m.get('where', '')}  {size}"
            f"  cap {_size(m.get('memory_limit_bytes'))}"
        )
    return lines


def _render(doc: dict[str, Any]) -> str:
    p = doc["player"]
    pos = _fmt(p.get("position"), ".1f")
    lines = [
        f"player: {p['state']}  {p.get('current') or '-'}  @ {pos}s  queue {p.get('queue_length')}"
        f"  volume {p.get('volume_db')} dB  output {p.get('output')}",
    ]
    c = doc["counters"]
    lines.append(
        f"xruns {c.get('xruns', 0)}  underruns {c.get('ring_underruns', 0)}  frames {c.get('frames_played', 0)}"
    )
    lines.append(f"chain ({len(doc['chain'])} stage(s)):")
    for i, s in enumerate(doc["chain"]):
        fault = (s.get("fault") or {}).get("kind") if s.get("fault") else None
        lines.append(
            f"  {i}  {s.get('spec')}  route={s.get('route', '-')}  bypass={s.get('bypassed')}"
            f"  p50={_fmt(s.get('p50_us'), '.1f')}us p99={_fmt(s.get('p99_us'), '.1f')}us"
            f"  max={_fmt(s.get('max_us'), '.1f')}us  fault={fault or '-'}"
        )
    lines.append(f"plugins ({len(doc['plugins'])}):")
    for pl in doc["plugins"]:
        err = f"  last error: {one_line(pl['last_error'])}" if pl.get("last_error") else ""
        lines.append(f"  {pl['id']} {pl['version']}  {pl['lifecycle_state']}  instances {pl['instances']}{err}")
    lines.append(f"sidecars ({len(doc['sidecars'])}):")
    for sc in doc["sidecars"]:
        breakers = ",".join(s["breaker"] for s in sc.get("slots", [])) or "-"
        lines.append(f"  {sc['plugin_id']}  restarts {sc['restarts']}  crashes {sc['crashes']}  breaker {breakers}")
    lines.extend(_memory_lines(doc.get("memory", [])))
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    try:
        with _connect(args) as client:
            while True:
                doc = status_document(client)
                if args.json:
                    print_json(doc)
                else:
                    if args.watch:
                        sys.stdout.write("\x1b[H\x1b[2J")
                    print(_render(doc), flush=True)
                if not args.watch:
                    return EXIT_OK
                time.sleep(1.0)
    except CallError as err:
        return _error(err)
    except (ConnectionError, OSError) as e:
        print(f"error: {one_line(str(e))}", file=sys.stderr)
        return EXIT_FAILURE
