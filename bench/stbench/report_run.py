"""``stellatune report``: the benchmark, the memory measurement and the evidence tests, judged
by the replacement gates (gates.py) and written out (report_render.py)."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import gates, report_render, suite
from .kernels import Workspace
from .memory import measure_memory
from .testrun import run_tests


def run(out: Path, *, full: bool, command: str, progress: Callable[[str], None] = lambda _: None) -> list:
    """Measure, test, judge and write ``out``/REPORT.md, report.json and the plot; return the gates.

    The benchmark runs first, while nothing else loads the machine; the long form is the full
    benchmark, the short form ``--quick``.
    """
    started = datetime.datetime.now(datetime.UTC)
    began = time.monotonic()
    progress("benchmark" + ("" if full else " (quick)"))
    bench = suite.run(quick=not full, progress=progress)
    progress("memory per hot-path stage")
    with Workspace() as ws:
        memory = measure_memory(ws)
    tests = run_tests(out, full=full, progress=progress)
    totals: dict[str, int] = {}
    for outcome in tests.outcomes.values():
        totals[outcome] = totals.get(outcome, 0) + 1
    report: dict[str, Any] = {
        "command": command,
        "full": full,
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": time.monotonic() - began,
        "bench": bench,
        "memory": memory,
        "evidence": tests.evidence,
        "tests": {"exitstatus": tests.exitstatus, "seconds": tests.seconds, "totals": totals, "log": str(tests.log)},
        "outcomes": tests.outcomes,
    }
    verdicts = gates.evaluate(report)
    report_render.write(out, report, verdicts)
    return verdicts
