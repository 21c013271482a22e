"""Run the tests the gates cite, and collect what they prove and measured.

One pytest subprocess over every test the gate rows name plus the stress, compatibility and fuzz
trees (``gates.EVIDENCE_TREES``), with the ``stbench.outcomes`` plugin recording each test's
outcome and ``STELLATUNE_EVIDENCE_DIR`` pointing the ``evidence`` fixture at a directory for the
figures. ``--full`` runs the long forms (1000-cycle churn, the 10-minute soak, longer fuzzing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .gates import EVIDENCE_TREES, all_row_tests
from .kernels import REPO


@dataclass
class TestRun:
    exitstatus: int
    seconds: float
    outcomes: dict[str, str]
    evidence: dict[str, Any]
    log: Path


def run_tests(out: Path, *, full: bool, progress: Callable[[str], None] = lambda _: None) -> TestRun:
    """Run the evidence tests; their log goes to ``out/pytest.log``."""
    out.mkdir(parents=True, exist_ok=True)
    evidence_dir = out / "evidence"
    evidence_dir.mkdir(exist_ok=True)
    for stale in evidence_dir.glob("*.json"):
        stale.unlink()
    outcomes_file = out / "outcomes.json"
    outcomes_file.unlink(missing_ok=True)
    env = dict(
        os.environ,
        STELLATUNE_EVIDENCE_DIR=str(evidence_dir),
        STBENCH_OUTCOMES=str(outcomes_file),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "bench"), os.environ.get("PYTHONPATH")])),
    )
    targets = [t for t in [*all_row_tests(), *EVIDENCE_TREES] if (REPO / t.split("::")[0]).exists()]
    command = [sys.executable, "-m", "pytest", "-p", "stbench.outcomes", "-p", "no:cacheprovider", "-q", "-rfE"]
    if full:
        command.append("--full")
    log = out / "pytest.log"
    progress(f"tests: {len(targets)} files and tests ({'long' if full else 'short'} form), log in {log}")
    began = time.monotonic()
    with open(log, "w", encoding="utf-8") as f:
        done = subprocess.run([*command, *targets], cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - began
    outcomes: dict[str, str] = {}
    if outcomes_file.is_file():
        outcomes = json.loads(outcomes_file.read_text(encoding="utf-8"))["outcomes"]
    evidence = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(evidence_dir.glob("*.json"))}
    return TestRun(done.returncode, seconds, outcomes, evidence, log)
