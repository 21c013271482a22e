"""``stellatune report``: the replacement-gate report (issue #13).

It runs the benchmark, measures memory per stage, runs the tests the gates cite (feature parity,
operational and migration rows) with the stress, compatibility and fuzz suites, and writes
``REPORT.md``, ``report.json`` and a plot to ``--out``. Like ``stellatune bench`` it needs a
source checkout (bench/, tests/, examples/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .bench import _stdout_is_stderr, _suite

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` command."""
    parser = subparsers.add_parser(
        "report",
        help="judge the replacement gates: benchmark, stress, compatibility and fuzz evidence",
        description="Run the benchmark and the evidence tests and write REPORT.md, report.json and a plot. "
        "The short form takes about 5 minutes; --full (the long stress forms, the 10-minute soak, longer "
        "fuzzing, the full benchmark) about 40. Exits 1 when a gate fails.",
    )
    parser.add_argument("--full", action="store_true", help="the long form (what bench/REPORT.md is made with)")
    parser.add_argument("--out", type=Path, default=Path("stellatune-report"), help="output directory")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    _suite()  # puts the checkout's bench/ on the path, or says it is missing
    from stbench import gates, report_run

    command = "stellatune report" + (" --full" if args.full else "") + f" --out {args.out}"
    with _stdout_is_stderr():
        verdicts = report_run.run(
            args.out,
            full=args.full,
            command=command,
            progress=lambda step: print(f"report: {step}", file=sys.stderr, flush=True),
        )
    print(gates.summary(verdicts))
    print(f"written: {args.out / 'REPORT.md'}")
    return 0 if all(g.passed for g in verdicts) else 1
