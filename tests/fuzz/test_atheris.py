"""The atheris harnesses (tests/fuzz/atheris_manifest.py, tests/fuzz/atheris_zip.py), each run
time-boxed in its own process: 10 s in the default suite, 120 s under ``--full``. Both run at
once (one per core). A finding makes libFuzzer exit non-zero and leave a ``crash-*`` input,
whose path the failure shows; rerun it with ``python tests/fuzz/atheris_<name>.py <crash file>``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fuzz

HERE = Path(__file__).resolve().parent
HARNESSES = ("manifest", "zip")


def test_atheris_harnesses_run_clean(evidence, tmp_path):
    import atheris  # noqa: F401 (a dev dependency, pyproject.toml: installed by scripts/setup)

    seconds = evidence.scale(10, 120)
    procs = {}
    for name in HARNESSES:
        out = tmp_path / name
        out.mkdir()
        procs[name] = subprocess.Popen(
            [
                sys.executable,
                str(HERE / f"atheris_{name}.py"),
                f"-max_total_time={seconds}",
                f"-artifact_prefix={out}/",
                "-print_final_stats=1",
            ],
            cwd=out,
            env={**os.environ, "STELLATUNE_ATHERIS_WORK": str(out / "work")},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    results = {}
    try:
        for name, proc in procs.items():
            results[name] = proc.communicate(timeout=seconds + 180)[0]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for name, output in results.items():
        done = re.search(r"Done (\d+) runs in (\d+) second", output)
        cov = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", output)
        crashes = sorted(p.name for p in (tmp_path / name).glob("crash-*"))
        evidence.record(
            f"fuzz_atheris_{name}",
            seconds=seconds,
            runs=int(done.group(1)) if done else None,
            edges=int(cov[-1][0]) if cov else None,
            features=int(cov[-1][1]) if cov else None,
            corpus=int(cov[-1][2]) if cov else None,
            failures=0 if procs[name].returncode == 0 else 1,
            crashes=crashes,
        )
        assert procs[name].returncode == 0, (
            f"atheris_{name}: exit {procs[name].returncode}, {crashes}\n{output[-4000:]}"
        )
        assert done and int(done.group(1)) > 0, output[-2000:]
