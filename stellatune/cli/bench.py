"""``stellatune bench``: run the benchmark suite and print (or write) its results.

The suite lives in the repository's ``bench/`` folder (it builds the example kernels from
``examples/plugins``), so this command works from a source checkout. ``--json`` prints the
results document whose keys bench/README.md documents; ``--markdown PATH`` also writes the
report and its plot next to it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import StellatuneError
from .output import print_json, print_table

__all__ = ["register"]

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` command."""
    parser = subparsers.add_parser(
        "bench",
        help="measure the hot path against native code, the component path and baselines",
        description="Run the benchmark suite (about 3 minutes; --quick about 20 s). Progress goes "
        "to stderr. Needs a source checkout (bench/ and examples/).",
    )
    parser.add_argument("--json", action="store_true", help="print the results document as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter runs (noisier)")
    parser.add_argument("--no-realtime", action="store_true", help="skip the JACK dummy-device run")
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="also write the Markdown report to PATH and its plot beside it"
    )
    parser.set_defaults(func=_run)


def _suite():
    """Import the harness from the checkout's bench/ folder."""
    if not (BENCH_DIR / "stbench" / "suite.py").is_file():
        raise StellatuneError(f"stellatune bench needs a source checkout: {BENCH_DIR / 'stbench'} not found")
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    from stbench import render, suite

    return suite, render


@contextmanager
def _stdout_is_stderr() -> Iterator[None]:
    """Point file descriptor 1 at stderr for the duration: PortAudio and JACK write notices from
    C, and with --json stdout must hold nothing but the document."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _run(args: argparse.Namespace) -> int:
    suite, render = _suite()
    with _stdout_is_stderr():
        doc = suite.run(
            quick=args.quick,
            realtime=not args.no_realtime,
            progress=lambda step: print(f"bench: {step}", file=sys.stderr, flush=True),
        )
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(render.markdown(doc, command=_command_line(args)), encoding="utf-8")
        render.plot(doc, args.markdown.parent / "results.png")
    if args.json:
        print_json(doc)
        return 0
    _print_summary(doc)
    return 0


def _command_line(args: argparse.Namespace) -> str:
    flags = [f for f, on in (("--quick", args.quick), ("--no-realtime", args.no_realtime)) if on]
    return " ".join(["stellatune bench", *flags, "--markdown", str(args.markdown)])


def _print_summary(doc: dict) -> None:
    print_table(
        ["kernel", "frames", "wasm µs", "native µs", "wasm/native", "component µs"],
        [
            [
                r["name"],
                r["frames"],
                f"{r['wasm_ns_per_block'] / 1000:.3f}",
                f"{r['native_ns_per_block'] / 1000:.3f}",
                f"{r['wasm_vs_native']:.2f}",
                f"{r['component_ns_per_block'] / 1000:.0f}",
            ]
            for r in doc["kernels"]
        ],
    )
    print()
    print_table(
        ["target", "measured", "met"],
        [[t["target"], f"{t['measured']:.3g}{t['unit']}", "yes" if t["met"] else "no"] for t in doc["targets"]],
    )
    if doc["realtime_skipped"]:
        print(f"\nreal-time run skipped: {doc['realtime_skipped']}")
