"""Fixtures for the benchmark tests: one real ``stellatune bench --json --quick`` run per session,
and the harness (bench/stbench) importable."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / "bench"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


def stellatune_command() -> list[str]:
    """The installed console script, as a user runs it."""
    script = Path(sys.executable).parent / "stellatune"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from stellatune.cli import main; sys.exit(main())"]


@pytest.fixture(scope="session")
def quick_run() -> Run:
    """``stellatune bench --json --quick`` in a child process (about 15 s with warm build caches,
    plus the real-time runs). Only tests marked ``bench`` use it: the default suite leaves it out."""
    proc = subprocess.run(
        [*stellatune_command(), "bench", "--json", "--quick"], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def results(quick_run: Run) -> dict:
    assert quick_run.code == 0, quick_run.stderr[-2000:]
    return json.loads(quick_run.stdout)


@pytest.fixture(scope="session")
def committed_results() -> dict:
    """The results of the last full run, as committed (bench/results.json): a document the report
    and schema tests can check without running a benchmark."""
    return json.loads((BENCH_DIR / "results.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def schema() -> dict:
    return json.loads((BENCH_DIR / "schema.json").read_text(encoding="utf-8"))
