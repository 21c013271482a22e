"""``stellatune doctor``: check the machine and the plugins directory, and say what to do."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..paths import default_cache_dir
from . import EXIT_FAILURE, EXIT_OK, one_line
from .context import add_plugins_dir_option, plugins_dir
from .output import print_json

__all__ = ["register", "run_checks"]

Check = dict[str, Any]  # {"name", "status": ok|warn|fail, "detail", "hint"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help="check audio, engine, caches, plugins and the toolchain")
    p.add_argument("--json", action="store_true", help="print the checks as one JSON document")
    add_plugins_dir_option(p)
    p.set_defaults(func=cmd_doctor)


def _check(name: str, status: str, detail: str, hint: str = "") -> Check:
    return {"name": name, "status": status, "detail": detail, "hint": hint}


def _audio() -> list[Check]:
    from ..engine import list_devices

    out = []
    try:
        devices = [d for d in list_devices() if d["max_output_channels"] > 0]
    except Exception as e:  # noqa: BLE001 (a diagnostic reports every failure)
        return [
            _check(
                "audio devices", "fail", f"PortAudio failed: {e}", "install libportaudio2; check `stellatune devices`"
            )
        ]
    if devices:
        names = ", ".join(f"{d['name']} [{d['host_api']}]" for d in devices[:5])
        out.append(_check("audio devices", "ok", f"{len(devices)} output device(s): {names}"))
    else:
        out.append(
            _check("audio devices", "warn", "no output device", "start a sound server or JACK (scripts/virtual-audio)")
        )
    jack_api = any("jack" in str(d.get("host_api", "")).lower() for d in devices)
    if jack_api:
        out.append(_check("JACK", "ok", "a JACK server is reachable"))
    elif shutil.which("jackd"):
        out.append(
            _check("JACK", "warn", "jackd is installed but no server runs", "start one: scripts/virtual-audio start")
        )
    else:
        out.append(_check("JACK", "warn", "jackd is not installed", "apt-get install jackd2 (optional)"))
    return out


def _wasmtime() -> list[Check]:
    have = importlib.metadata.version("wasmtime")
    want = None
    for req in importlib.metadata.requires("stellatune") or []:
        m = re.match(r"wasmtime\s*==\s*([\w.]+)", req)
        if m:
            want = m.group(1)
    if want is not None and have != want:
        return [
            _check(
                "libwasmtime",
                "fail",
                f"wasmtime {have} installed, the engine is built for {want}",
                f"pip install wasmtime=={want}",
            )
        ]
    try:
        from ..engine import _core  # resolves the wasmtime C API the engine calls

        _core.stage_clock()
    except Exception as e:  # noqa: BLE001
        return [
            _check("libwasmtime", "fail", f"the engine cannot load: {e}", "reinstall stellatune (pip install -e .)")
        ]
    return [_check("libwasmtime", "ok", f"wasmtime {have} (engine pinned to {want or 'any'})")]


def _ftz() -> list[Check]:
    import numpy as np

    from ..engine import _core

    block = np.full((4, 2), 1e-40, dtype=np.float32)
    out, _ = getattr(_core, "copy_check")(block, True)  # noqa: B009 (not in _core.pyi)
    if float(np.abs(out).max()) == 0.0:
        return [_check("FTZ/DAZ", "ok", "subnormals are flushed on the chain's thread")]
    return [_check("FTZ/DAZ", "warn", "subnormals survive the chain's copy", "denormal-heavy plugins will be slow")]


def _cache() -> list[Check]:
    base = default_cache_dir()
    if not base.exists():
        return [_check("compile cache", "ok", f"{base} (empty; made on first use)")]
    if not os.access(base, os.W_OK):
        return [
            _check("compile cache", "fail", f"{base} is not writable", "fix its permissions or set $STELLATUNE_CACHE")
        ]
    size = sum(f.stat().st_size for f in base.rglob("*") if f.is_file())
    return [_check("compile cache", "ok", f"{base} ({size / 1e6:.1f} MB)")]


def _plugins(root: Path) -> list[Check]:
    from .. import package
    from ..executor import ComponentExecutor
    from ..runtime import WasmPluginRuntime

    out = []
    if not root.exists():
        return [_check("plugins dir", "ok", f"{root} (none installed)")]
    # doctor only looks: pending deletes are reported, not retried (tidy=False throughout).
    discovery = package.discover_plugins(root, tidy=False)
    pending = sorted(p.to_installed().id for p in discovery.pending)
    if pending:
        out.append(
            _check(
                "pending uninstalls", "warn", ", ".join(pending), "run `stellatune plugins sync` to retry the removal"
            )
        )
    if discovery.warnings:
        out.append(
            _check(
                "broken manifests",
                "fail",
                "; ".join(one_line(str(w)) for w in discovery.warnings),
                "reinstall or uninstall those plugins",
            )
        )
    with WasmPluginRuntime(root, ComponentExecutor()) as runtime:
        report = runtime.sync_plugins(tidy=False)
        failed = [s for s in report.plugin_statuses if s.lifecycle_state.value == "failed"]
        for s in failed:
            out.append(
                _check(
                    f"plugin {s.plugin_id}",
                    "fail",
                    f"activation failed: {one_line(s.last_error or '')}",
                    f"see `stellatune plugins info {s.plugin_id}` and its log",
                )
            )
        for pid, grants in runtime.all_host_grants().items():
            missing = [rel for rel in grants.sidecars if not (root / pid / rel).is_file()]
            if missing:
                out.append(
                    _check(
                        f"grants of {pid}",
                        "warn",
                        f"granted sidecar(s) missing: {', '.join(missing)}",
                        f"`stellatune plugins revoke {pid} --sidecar ...`",
                    )
                )
        out.append(
            _check(
                "plugins dir",
                "ok",
                f"{root}: {len(discovery.plugins) + len(discovery.pending)} installed, {len(report.active_plugins)} active",
            )
        )
    return out


def _toolchain() -> list[Check]:
    from ..errors import PluginBuildError
    from ..sdk.build import COMPONENTIZE_PY
    from ..sdk.cbuild import CLANG, WASM_TOOLS

    out = []
    for label, tool in (("clang", CLANG), ("wasm-tools", WASM_TOOLS), ("componentize-py", COMPONENTIZE_PY)):
        try:
            out.append(_check(f"toolchain: {label}", "ok", tool.find()))
        except PluginBuildError as e:
            out.append(_check(f"toolchain: {label}", "warn", one_line(str(e)), "needed only to build plugins"))
    return out


def run_checks(root: Path) -> list[Check]:
    """Every check, each guarded: a probe that raises is reported as failed, never fatal."""
    probes: list[tuple[str, Callable[[], list[Check]]]] = [
        ("audio devices", _audio),
        ("libwasmtime", _wasmtime),
        ("FTZ/DAZ", _ftz),
        ("compile cache", _cache),
        ("plugins dir", lambda: _plugins(root)),
        ("toolchain", _toolchain),
    ]
    checks: list[Check] = []
    for name, probe in probes:
        try:
            checks.extend(probe())
        except Exception as e:  # noqa: BLE001 (a diagnostic reports every failure)
            checks.append(_check(name, "fail", f"{type(e).__name__}: {one_line(str(e))}", "report this"))
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = run_checks(plugins_dir(args))
    ok = all(c["status"] != "fail" for c in checks)
    if args.json:
        print_json({"ok": ok, "checks": checks})
    else:
        for c in checks:
            mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}[c["status"]]
            print(f"[{mark}] {c['name']}: {c['detail']}")
            if c["hint"] and c["status"] != "ok":
                print(f"       hint: {c['hint']}")
    return EXIT_OK if ok else EXIT_FAILURE
