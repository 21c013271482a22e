"""``stellatune bench``: run the benchmark suite and print (or write) its results.

The suite lives in the repository's ``bench/`` folder (it builds the example kernels from
``examples/plugins``), so this command works from a source checkout. ``--json`` prints the
results document whose keys bench/README.md documents; ``--markdown PATH`` also writes the
report and its plot next to it. ``--soak`` plays the 16-plugin, 32-frame real-time chain for 10
minutes instead of 30 s (a run for a quiet machine, outside CI).
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
        description="Run the benchmark suite (about 3-4 minutes; --quick about 20 s; --soak 10 minutes more)."
        " Progress goes to stderr. Needs a source checkout (bench/ and examples/).",
    )
    parser.add_argument("--json", action="store_true", help="print the results document as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter runs (noisier)")
    realtime = parser.add_mutually_exclusive_group()
    realtime.add_argument("--no-realtime", action="store_true", help="skip the JACK dummy-device run")
    realtime.add_argument(
        "--soak",
        action="store_true",
        help="play the 16-plugin chain at 32 frames for 10 minutes instead of 30 s (outside CI)",
    )
    parser.add_argument(
        "--soak-seconds",
        type=_positive_seconds,
        metavar="N",
        help="with --soak: play it N seconds instead of 600 (for testing the soak itself)",
    )
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="also write the Markdown report to PATH and its plot beside it"
    )
    parser.set_defaults(func=_run)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


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
    if args.soak_seconds is not None and not args.soak:
        raise StellatuneError("--soak-seconds needs --soak")
    suite, render = _suite()
    with _stdout_is_stderr():
        doc = suite.run(
            quick=args.quick,
            realtime=not args.no_realtime,
            soak_seconds=(args.soak_seconds or suite.SOAK_SECONDS) if args.soak else None,
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
    flags = [f for f, on in (("--quick", args.quick), ("--no-realtime", args.no_realtime), ("--soak", args.soak)) if on]
    if args.soak and args.soak_seconds is not None:
        flags += ["--soak-seconds", f"{args.soak_seconds:g}"]
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
        [
            [
                t["target"],
                f"{t['measured']:.3g}{t['unit']}" + (f" ({t['detail']})" if t.get("detail") else ""),
                "yes" if t["met"] else "no",
            ]
            for t in doc["targets"]
        ],
    )
    if doc["realtime_skipped"]:
        print(f"\nreal-time run skipped: {doc['realtime_skipped']}")
