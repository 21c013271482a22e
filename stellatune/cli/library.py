"""``stellatune library import|stats|query``: the music-library catalog (docs/library.md)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from . import EXIT_INTERRUPTED, EXIT_OK
from .context import add_plugins_dir_option, plugins_dir

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``library`` command group."""
    group = subparsers.add_parser("library", help="import a music library into an SQLite catalog, and read it")
    sub = group.add_subparsers(dest="library_command", metavar="COMMAND", required=True)

    p = sub.add_parser("import", help="analyse the audio files under DIR... into the catalog (incremental)")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    _db_option(p)
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="Dask LocalCluster worker processes (default: one per core; 0: serial, in this process)",
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing Dask cluster (tcp://HOST:PORT)")
    p.add_argument(
        "--decoder",
        choices=("auto", "builtin", "plugin"),
        default="auto",
        help="auto: decoder plugins, else soundfile; builtin: soundfile only; plugin: plugins only",
    )
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="files per Dask task (default: auto)")
    p.add_argument(
        "--lyrics-config",
        action="append",
        default=[],
        metavar="ID=JSON",
        help="config for a granted lyrics plugin's providers, over its defaults (repeatable), "
        'e.g. ID=\'{"base_url": "http://127.0.0.1:8080"}\'',
    )
    p.add_argument("--json", action="store_true", help="print one JSON report instead of progress and a summary")
    add_plugins_dir_option(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("stats", help="counts of the catalog: tracks, failures, codecs, hours")
    _db_option(p)
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("query", help="list catalogued tracks matching FIELD=VALUE filters")
    _db_option(p)
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="EXPR",
        help="FIELD=VALUE (also != < <= > >=, ~ for a substring); repeat to AND them",
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N rows")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=cmd_query)


def _db_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, required=True, metavar="library.sqlite", help="the catalog file")


def cmd_import(args: argparse.Namespace) -> int:
    from ..errors import StellatuneError
    from ..library import ImportReport, import_library

    for d in args.dirs:
        if not d.exists():
            raise StellatuneError(f"{d}: no such file or directory")
    if args.workers is not None and args.workers < 0:
        raise StellatuneError("--workers must be 0 or more")
    if args.workers is not None and args.scheduler:
        raise StellatuneError("--workers and --scheduler exclude each other")
    if args.batch_size is not None and args.batch_size < 1:
        raise StellatuneError("--batch-size must be 1 or more")
    lyrics_config = _lyrics_configs(args.lyrics_config)
    bar: Any = None
    started = time.perf_counter()
    seconds = [0.0]

    def on_start(n: int) -> None:
        nonlocal bar
        if args.json:
            return
        from tqdm import tqdm

        bar = tqdm(total=n, unit="file", dynamic_ncols=True, file=sys.stderr)

    def on_batch(results: list) -> None:
        if bar is None:
            return
        seconds[0] += sum(r.duration_s or 0.0 for r in results if r.status == "ok")
        elapsed = max(time.perf_counter() - started, 1e-9)
        bar.set_postfix_str(f"{seconds[0] / 3600.0 / elapsed:.4f} audio-h/s", refresh=False)
        bar.update(len(results))

    report = ImportReport()
    try:
        import_library(
            args.dirs,
            args.db,
            workers=args.workers,
            scheduler=args.scheduler,
            decoder_mode=args.decoder,
            plugins_dir=plugins_dir(args),
            batch_size=args.batch_size,
            lyrics_config=lyrics_config,
            on_start=on_start,
            on_batch=on_batch,
            report=report,
        )
    except KeyboardInterrupt:
        if not args.json:
            raise
        # --json promises one report: the counts of what was written, marked interrupted.
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        rate = report.analysed / report.elapsed_s if report.elapsed_s > 0 else 0.0
        print(
            f"{report.files} file(s): {report.imported} imported, {report.skipped} unchanged, {report.failed} failed "
            f"in {report.elapsed_s:.1f} s ({rate:.1f} files/s, {report.audio_seconds / 3600.0:.3f} audio hours)"
        )
        for f in report.failures[:20]:
            print(f"  failed: {f['path']}: [{f['code']}] {f['message']}")
        if len(report.failures) > 20:
            print(f"  ... and {len(report.failures) - 20} more (stellatune library query --where status=failed)")
    return EXIT_OK if not report.interrupted else EXIT_INTERRUPTED


def _lyrics_configs(values: list[str]) -> dict[str, dict[str, Any]]:
    """``["ID={...}", ...]`` → ``{ID: {...}}``; a malformed entry is a usage error."""
    from ..errors import StellatuneError

    out: dict[str, dict[str, Any]] = {}
    for value in values:
        plugin_id, sep, text = value.partition("=")
        try:
            config = json.loads(text) if sep else None
        except ValueError as exc:
            raise StellatuneError(f"--lyrics-config {value!r}: not JSON after '=': {exc}") from None
        if not plugin_id.strip() or not isinstance(config, dict):
            raise StellatuneError(f"--lyrics-config {value!r}: expected PLUGIN_ID={{...}} (a JSON object)")
        out[plugin_id.strip()] = config
    return out


def cmd_stats(args: argparse.Namespace) -> int:
    from ..library import Catalog

    with Catalog(args.db, readonly=True) as catalog:
        stats = catalog.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return EXIT_OK
    for key, value in stats.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        print(f"{key:>15}  {value}")
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    from ..library import Catalog

    with Catalog(args.db, readonly=True) as catalog:
        rows = catalog.query(args.where, limit=args.limit)
    if args.json:
        # Finite numbers only (a catalog written before they were enforced may hold inf).
        clean = [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()} for r in rows]
        print(json.dumps({"tracks": clean}, indent=2, allow_nan=False))
        return EXIT_OK
    for r in rows:
        if r["status"] == "ok":
            lufs = "-" if r["integrated_lufs"] is None else f"{r['integrated_lufs']:.1f} LUFS"
            print(f"{r['path']}\t{r['codec']}\t{r['duration_s']:.2f} s\t{lufs}\t{r['title'] or ''}")
        else:
            print(f"{r['path']}\tfailed [{r['error_code']}] {r['error_message']}")
    return EXIT_OK
