"""`stellatune library import` end to end on a generated library: serial and on a LocalCluster
of 2 worker processes give the same rows; a re-run imports nothing; failures are rows."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from stellatune.library import Catalog, import_library
from stellatune.library.analyse import WorkItem
from stellatune.library.catalog import MIGRATIONS, SCHEMA_VERSION
from stellatune.library.distribute import MAX_BATCH, plan_batches

from .conftest import rows


def test_serial_import_records_every_file(library, serial_db):
    db, report = serial_db
    assert report.files == len(library.files)
    assert report.failed == len(library.corrupt)
    assert report.imported == len(library.good) + len(library.duplicates)
    assert {f["path"] for f in report.failures} == {str(p) for p in library.corrupt}
    assert {f["code"] for f in report.failures} == {"corrupt"}
    assert report.audio_seconds == pytest.approx(
        library.audio_seconds + sum(sf.info(s).duration for s, _ in library.duplicates), rel=1e-3
    )
    got = rows(db)
    for source, copy in library.duplicates:
        a, b = got[str(source)], got[str(copy)]
        assert a["content_hash"] == b["content_hash"] and a["duplicate_count"] >= 1 and b["duplicate_count"] >= 1
    singles = [
        r
        for p, r in got.items()
        if r["status"] == "ok" and p not in {str(x) for pair in library.duplicates for x in pair}
    ]
    assert all(r["duplicate_count"] == 0 for r in singles)
    flac = next(r for r in got.values() if r["codec"] == "flac" and r["title"])
    assert flac["tags_source"] == "mutagen" and flac["title"].startswith("Track ")
    assert {r["codec"] for r in got.values() if r["status"] == "ok"} == {"pcm_s16", "flac", "vorbis"}
    ok = [r for r in got.values() if r["status"] == "ok"]
    assert all(r["album_gain_db"] is not None and r["track_gain_db"] is not None for r in ok)
    assert all(r["true_peak_dbtp"] >= 20 * np.log10(r["sample_peak"]) - 1e-6 for r in ok)


def test_loudness_agrees_with_pyloudnorm(serial_db):
    db, _ = serial_db
    checked = 0
    for path, r in sorted(rows(db).items())[::7]:
        if r["status"] != "ok":
            continue
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        expected = pyloudnorm.Meter(rate).integrated_loudness(data.astype(np.float64))
        assert abs(r["integrated_lufs"] - expected) <= 0.1, path
        assert r["track_gain_db"] == pytest.approx(-18.0 - r["integrated_lufs"])
        checked += 1
    assert checked >= 20


def test_album_gain_gates_over_the_whole_folder(tmp_path):
    import sys

    from stbench.librarygen import generate_library

    assert "stbench" in sys.modules
    lib = generate_library(tmp_path / "m", folders=1, per_folder=6, corrupt=0, duplicates=0)
    # Same rate throughout: the album is exactly the tracks back to back.
    db = tmp_path / "a.sqlite"
    import_library([lib.root], db, workers=0)
    got = rows(db)
    # Files of one folder at one rate, concatenated: pyloudnorm's own album loudness.
    by_rate: dict[int, list[np.ndarray]] = {}
    for p in lib.good:
        data, rate = sf.read(p, dtype="float32", always_2d=True)
        by_rate.setdefault(rate, []).append(data)
    album = got[str(lib.good[0])]["album_gain_db"]
    assert album is not None
    gains = [r["track_gain_db"] for r in got.values()]
    assert min(gains) - 0.01 <= album <= max(gains) + 0.01


def test_cluster_of_two_workers_gives_the_serial_rows_and_a_rerun_imports_nothing(library, serial_db, tmp_path):
    db = tmp_path / "dask.sqlite"
    report = import_library([library.root], db, workers=2, batch_size=8)
    assert report.mode == "dask" and report.workers == 2
    assert rows(db) == rows(serial_db[0])
    again = import_library([library.root], db, workers=0)
    assert (again.imported, again.failed, again.skipped) == (0, 0, len(library.files))


def test_default_batches_shrink_towards_the_end_and_hold_every_file_once():
    items = [WorkItem(f"/music/{i:04d}.flac", 1, 1) for i in range(1000)]
    batches = plan_batches(items, workers=2)
    assert [item for batch in batches for item in batch] == items
    sizes = [len(b) for b in batches]
    # Large while much is left (few tasks), single files at the end (no long last task).
    assert sizes[0] == MAX_BATCH and sizes == sorted(sizes, reverse=True) and sizes[-1] == 1
    assert len(batches) < 80
    assert [len(b) for b in plan_batches(items, 2, batch_size=300)] == [300, 300, 300, 100]
    assert plan_batches([], 2) == []


def test_a_touched_file_is_known_by_its_hash(library, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    for p in library.good[:5]:
        (small / p.name).write_bytes(p.read_bytes())
    db = tmp_path / "t.sqlite"
    assert import_library([small], db, workers=0).imported == 5
    victim = next(small.iterdir())
    os.utime(victim, ns=(1, 1))
    again = import_library([small], db, workers=0)
    assert (again.imported, again.skipped) == (0, 5)
    assert rows(db)[str(victim)]["mtime_ns"] == 1
    victim.write_bytes(victim.read_bytes()[:-2] + b"\0\0")  # same size, new content
    os.utime(victim, ns=(2, 2))
    changed = import_library([small], db, workers=0)
    assert (changed.analysed, changed.skipped) == (1, 4)  # analysed again (this edit may break a FLAC)


def test_migrations_are_ordered_and_versioned(tmp_path):
    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
    MIGRATIONS[0](con)
    con.execute("INSERT INTO schema_version VALUES (1, 0)")
    con.close()
    with Catalog(db) as catalog:
        assert catalog.version() == SCHEMA_VERSION == 2
        assert catalog.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        cols = {r[1] for r in catalog.db.execute("PRAGMA table_info(tracks)")}
        assert "duplicate_count" in cols


def test_interrupt_between_batches_leaves_whole_batches(library, tmp_path):
    db = tmp_path / "i.sqlite"
    seen = []

    def stop(results):
        seen.append(len(results))
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_library([library.root], db, workers=0, batch_size=10, on_batch=stop)
    assert len(rows(db)) == sum(seen) == 30
    resumed = import_library([library.root], db, workers=0)
    assert resumed.skipped == 30 and resumed.imported + resumed.failed == len(library.files) - 30


def test_plugin_only_without_plugins_fails_every_file_as_unsupported(library, tmp_path):
    small = tmp_path / "s"
    small.mkdir()
    (small / "a.wav").write_bytes(library.good[0].read_bytes())
    report = import_library([small], tmp_path / "p.sqlite", workers=0, decoder_mode="plugin")
    assert report.failed == 1 and report.failures[0]["code"] == "unsupported"


def test_no_audio_path_is_left_out(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("x")
    report = import_library([tmp_path], tmp_path / "e.sqlite", workers=0)
    assert report.files == 0


def test_a_file_that_kills_its_worker_is_retried_then_marked_failed(library, tmp_path, monkeypatch):
    from stellatune.library.analyse import CRASH_MARKER_ENV

    small = tmp_path / "crash"
    small.mkdir()
    for p in library.good[:6]:
        (small / p.name).write_bytes(p.read_bytes())
    (small / "boom-crash.wav").write_bytes(library.good[0].read_bytes())
    monkeypatch.setenv(CRASH_MARKER_ENV, "boom-crash")  # the worker processes inherit it
    report = import_library([small], tmp_path / "c.sqlite", workers=2, batch_size=4)
    assert report.imported == 6
    assert [(Path(f["path"]).name, f["code"]) for f in report.failures] == [("boom-crash.wav", "worker-died")]
    assert rows(tmp_path / "c.sqlite")[str(small / "boom-crash.wav")]["attempts"] == 2
