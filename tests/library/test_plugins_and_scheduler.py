"""Decoder plugins in a library import: a trapping decoder (tests/fixtures/plugins/trap-decoder)
fails only its own files; plugins reach the workers of an external `dask scheduler` /
`dask worker` (subprocesses on 127.0.0.1) as the installed zips; the CLI readers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stellatune import package
from stellatune.cli import main
from stellatune.library import import_library
from stellatune.sdk.build import build_plugin

from .conftest import FIXTURES, rows

pytestmark = pytest.mark.slow  # builds the fixture decoder with componentize-py (cached after)

TRAP = "dev.stellatune.test.trap-decoder"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def trap_library(tmp_path_factory):
    from stbench.librarygen import generate_library

    return generate_library(
        tmp_path_factory.mktemp("traplib"), folders=2, per_folder=6, corrupt=2, duplicates=1, trap=3
    )


@pytest.fixture(scope="module")
def trap_plugins(tmp_path_factory) -> Path:
    plugins = tmp_path_factory.mktemp("plugins")
    package.install_from_artifact(plugins, build_plugin(FIXTURES / "trap-decoder"))
    return plugins


def _check_trap_import(report, lib, db):
    assert {f["path"] for f in report.failures if f["code"] == "decoder-trap"} == {str(p) for p in lib.trap}
    assert {f["path"] for f in report.failures} == {str(p) for p in lib.trap + lib.corrupt}
    got = rows(db)
    wavs = [r for p, r in got.items() if p.endswith(".wav") and r["status"] == "ok"]
    assert wavs and all(r["decoder"] == f"{TRAP}/wav-or-trap" for r in wavs)
    assert all(r["decoder"] == "soundfile" for p, r in got.items() if not p.endswith(".wav") and r["status"] == "ok")


def test_a_trapping_decoder_fails_only_its_own_files(trap_library, trap_plugins, tmp_path):
    db = tmp_path / "trap.sqlite"
    report = import_library([trap_library.root], db, workers=0, plugins_dir=trap_plugins)
    _check_trap_import(report, trap_library, db)
    # --decoder builtin never asks the plugin: the marked files decode.
    builtin = import_library(
        [trap_library.root], tmp_path / "b.sqlite", workers=0, plugins_dir=trap_plugins, decoder_mode="builtin"
    )
    assert builtin.failed == len(trap_library.corrupt)


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"},
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def test_external_scheduler_and_worker_on_loopback(trap_library, trap_plugins, tmp_path, capsys):
    sched_file = tmp_path / "scheduler.json"
    scheduler = _spawn(
        [
            str(BIN / "dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(sched_file),
        ],
        tmp_path / "scheduler.log",
    )
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            assert scheduler.poll() is None, (tmp_path / "scheduler.log").read_text()
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        worker = _spawn(
            [
                str(BIN / "dask"),
                "worker",
                address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--no-dashboard",
                "--local-directory",
                str(tmp_path / "worker"),
            ],
            tmp_path / "worker.log",
        )
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
        db = tmp_path / "ext.sqlite"
        code = main(
            [
                "library",
                "import",
                str(trap_library.root),
                "--db",
                str(db),
                "--scheduler",
                address,
                "--plugins-dir",
                str(trap_plugins),
                "--json",
            ]
        )
        assert code == 0
        report = json.loads(capsys.readouterr().out)
        assert report["mode"] == "dask"
        # The plugin was installed from its zip into the worker's own plugins dir.
        assert list((tmp_path / "worker").rglob(f"stellatune/plugins-*/{TRAP}/plugin.json"))

        class R:
            failures = report["failures"]

        _check_trap_import(R, trap_library, db)
    finally:
        if worker is not None:
            _stop(worker)
        _stop(scheduler)


def test_cli_readers(library, serial_db, capsys):
    db = str(serial_db[0])
    assert main(["library", "stats", "--db", db, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (
        stats["tracks"] == len(library.files)
        and stats["failed"] == len(library.corrupt)
        and stats["schema_version"] == 2
    )
    assert main(["library", "query", "--db", db, "--where", "codec=flac", "--where", "duration_s>0.5", "--json"]) == 0
    tracks = json.loads(capsys.readouterr().out)["tracks"]
    assert tracks and all(t["codec"] == "flac" and t["duration_s"] > 0.5 for t in tracks)
    # Values are bound, never spliced: an injection attempt is just a title that matches nothing.
    assert main(["library", "query", "--db", db, "--where", "title=x' OR '1'='1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tracks"] == []
    assert main(["library", "query", "--db", db, "--where", "status=failed"]) == 0
    assert capsys.readouterr().out.count("[corrupt]") == 10
    assert main(["library", "query", "--db", db, "--where", "1=1; DROP TABLE tracks"]) == 1
    assert "expected FIELD=VALUE" in capsys.readouterr().err
    assert main(["library", "query", "--db", db, "--where", "sqlite_master=x"]) == 1
