"""Library import against inputs a real music folder has sooner or later: names that are not
UTF-8, links, float files holding inf, catalog paths with URI characters, broken catalogs, a
fixed file, a second Ctrl-C. Each one is a row, a clean error or a retry; never a lost run."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import stellatune.library
from stellatune.cli import main
from stellatune.library import Catalog, import_library
from stellatune.library.scan import scan

from .conftest import rows

RATE = 44100


def tone(path: Path, seconds: float = 0.5, *, subtype: str = "PCM_16", peak: float = 0.3) -> Path:
    t = np.arange(int(RATE * seconds)) / RATE
    x = (peak * np.sin(2 * np.pi * 440 * t)).astype(np.float64)
    sf.write(path, np.stack([x, x], axis=1), RATE, subtype=subtype)
    return path


def strict_json(text: str) -> object:
    """JSON as a strict parser reads it: no Infinity or NaN tokens."""

    def refuse(token: str) -> object:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_a_name_that_is_not_utf8_is_a_track_not_an_aborted_run(tmp_path, capsys):
    music = tmp_path / "music"
    music.mkdir()
    good = tone(music / "good.wav")
    odd = os.fsencode(music) + b"/caf\xe9 \xff.wav"  # Latin-1 bytes, as an old disk has them
    with open(odd, "wb") as f:
        f.write(good.read_bytes())
    with open(os.fsencode(music) + b"/broken \xfe.wav", "wb") as f:
        f.write(b"RIFF not really")
    db = tmp_path / "lib.sqlite"
    assert main(["library", "import", str(music), "--db", str(db), "--workers", "0", "--json"]) == 0
    report = strict_json(capsys.readouterr().out)
    assert (report["imported"], report["failed"]) == (2, 1)
    assert report["failures"][0]["path"].endswith("/broken \\xfe.wav")
    got = rows(db)
    assert got[f"{music}/caf\\xe9 \\xff.wav"]["status"] == "ok"
    assert got[f"{music}/caf\\xe9 \\xff.wav"]["duplicate_count"] == 1  # the same bytes as good.wav
    # The escaped form is the key: a second run finds both files unchanged.
    again = import_library([music], db, workers=0)
    assert (again.imported, again.failed, again.skipped) == (0, 0, 3)


@pytest.mark.parametrize("name", ["a#b.sqlite", "what?.sqlite", "p%41.sqlite"])
def test_stats_and_query_open_the_catalog_named_even_with_uri_characters(tmp_path, capsys, name):
    music = tmp_path / "music"
    music.mkdir()
    tone(music / "one.wav")
    (tmp_path / "pA.sqlite").write_bytes(b"")  # what p%41 would mean if it were decoded
    db = tmp_path / name
    import_library([music], db, workers=0)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["library", "stats", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tracks"] == 1
    assert main(["library", "query", "--db", str(db), "--json"]) == 0
    assert [Path(t["path"]).name for t in json.loads(capsys.readouterr().out)["tracks"]] == ["one.wav"]
    # No stray file made by a cut URI (a WAL reader's own -wal and -shm beside the catalog aside).
    made = {p.name for p in tmp_path.iterdir()} - set(before)
    assert made <= {f"{name}-wal", f"{name}-shm"}, made


def test_a_failed_file_is_analysed_again_once_touched(tmp_path):
    music = tmp_path / "music"
    music.mkdir()
    wav = tone(music / "one.wav")
    db = tmp_path / "lib.sqlite"
    # No decoder plugin installed: plugin-only decoding fails the file (unsupported).
    first = import_library([music], db, workers=0, decoder_mode="plugin")
    assert (first.failed, first.failures[0]["code"]) == (1, "unsupported")
    untouched = import_library([music], db, workers=0, decoder_mode="builtin")
    assert (untouched.skipped, untouched.imported) == (1, 0)  # unchanged file, unchanged row
    os.utime(wav, ns=(wav.stat().st_atime_ns, wav.stat().st_mtime_ns + 1_000_000_000))
    retried = import_library([music], db, workers=0, decoder_mode="builtin")
    assert (retried.imported, retried.skipped) == (1, 0)  # same bytes, but a failed row is no proof
    assert rows(db)[str(wav)]["status"] == "ok"


def test_non_finite_samples_store_null_and_query_json_stays_json(tmp_path, capsys):
    music = tmp_path / "music"
    music.mkdir()
    path = music / "inf.wav"
    x = np.full((RATE, 2), 0.3)
    x[100, 0] = np.inf
    sf.write(path, x, RATE, subtype="FLOAT")
    db = tmp_path / "lib.sqlite"
    import_library([music], db, workers=0)
    row = rows(db)[str(path)]
    assert row["sample_peak"] is None and row["true_peak_dbtp"] is None
    assert main(["library", "query", "--db", str(db), "--json"]) == 0
    strict_json(capsys.readouterr().out)


def test_query_json_cleans_an_old_catalogs_inf(tmp_path, capsys):
    music = tmp_path / "music"
    music.mkdir()
    tone(music / "one.wav")
    db = tmp_path / "lib.sqlite"
    import_library([music], db, workers=0)
    con = sqlite3.connect(db)
    con.execute("UPDATE tracks SET sample_peak = 9e999")  # inf, as an older version stored it
    con.commit()
    con.close()
    assert main(["library", "query", "--db", str(db), "--json"]) == 0
    assert strict_json(capsys.readouterr().out)["tracks"][0]["sample_peak"] is None  # type: ignore[index]


def test_text_fields_compare_as_text(tmp_path, capsys):
    music = tmp_path / "music"
    music.mkdir()
    path = tone(music / "bond.flac", subtype="PCM_16")
    import mutagen.flac

    tags = mutagen.flac.FLAC(path)
    tags["title"] = "007"
    tags.save()
    db = tmp_path / "lib.sqlite"
    import_library([music], db, workers=0)
    assert main(["library", "query", "--db", str(db), "--where", "title=007", "--json"]) == 0
    assert [t["title"] for t in json.loads(capsys.readouterr().out)["tracks"]] == ["007"]
    assert main(["library", "query", "--db", str(db), "--where", "title=7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tracks"] == []
    assert main(["library", "query", "--db", str(db), "--where", "channels=2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["tracks"]) == 1  # numeric fields still numbers


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "not a stellatune catalog"),
        (b"just some text, not a database\n" * 100, "cannot"),
        (None, "older than"),  # a schema-1 catalog
    ],
)
def test_stats_and_query_refuse_a_broken_catalog_cleanly(tmp_path, capsys, content, says):
    db = tmp_path / "lib.sqlite"
    if content is None:
        from stellatune.library.catalog import MIGRATIONS

        con = sqlite3.connect(db, isolation_level=None)
        con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
        MIGRATIONS[0](con)
        con.execute("INSERT INTO schema_version VALUES (1, 0)")
        con.close()
    else:
        db.write_bytes(content)
    for command in ("stats", "query"):
        assert main(["library", command, "--db", str(db)]) == 1
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, err


def test_a_folder_left_without_its_album_gain_gets_it_on_the_next_run(tmp_path):
    music = tmp_path / "music"
    (music / "album").mkdir(parents=True)
    for i in range(3):
        tone(music / "album" / f"{i}.wav", peak=0.1 * (i + 1))
    db = tmp_path / "lib.sqlite"
    import_library([music], db, workers=0)
    with Catalog(db) as catalog:
        expected = catalog.db.execute("SELECT * FROM albums").fetchall()
        # What a second Ctrl-C during the old shutdown order left: tracks in, album not.
        catalog.db.execute("DELETE FROM albums")
        catalog.db.execute("UPDATE tracks SET album_gain_db = NULL")
    again = import_library([music], db, workers=0)
    assert again.skipped == 3
    with Catalog(db) as catalog:
        assert catalog.db.execute("SELECT * FROM albums").fetchall() == expected
        assert catalog.db.execute("SELECT COUNT(*) FROM tracks WHERE album_gain_db IS NULL").fetchone()[0] == 0


def test_json_report_still_printed_when_interrupted(tmp_path, capsys, monkeypatch):
    music = tmp_path / "music"
    music.mkdir()
    for i in range(6):
        tone(music / f"{i}.wav", seconds=0.2)
    real = stellatune.library.import_library

    def interrupted_after_one_batch(*args, **kwargs):
        def stop(results):
            raise KeyboardInterrupt

        return real(*args, **{**kwargs, "on_batch": stop, "batch_size": 2})

    monkeypatch.setattr(stellatune.library, "import_library", interrupted_after_one_batch)
    db = tmp_path / "lib.sqlite"
    assert main(["library", "import", str(music), "--db", str(db), "--workers", "0", "--json"]) == 130
    report = json.loads(capsys.readouterr().out)
    assert report["interrupted"] is True and report["imported"] == 2
    assert len(rows(db)) == 2


def test_a_symlinked_file_is_one_track_however_it_is_reached(tmp_path):
    music = tmp_path / "music"
    (music / "a").mkdir(parents=True)
    (music / "b").mkdir()
    target = tone(music / "a" / "song.wav")
    (music / "b" / "link.wav").symlink_to(target)
    db = tmp_path / "lib.sqlite"
    report = import_library([music, music / "b" / "link.wav"], db, workers=0)
    assert (report.files, report.imported) == (1, 1)
    assert list(rows(db)) == [str(target)]
    assert rows(db)[str(target)]["duplicate_count"] == 0


@pytest.mark.parametrize("value", ["0", "-1"])
def test_batch_size_below_one_is_a_usage_error(tmp_path, capsys, value):
    music = tmp_path / "music"
    music.mkdir()
    tone(music / "one.wav")
    db = tmp_path / "lib.sqlite"
    assert main(["library", "import", str(music), "--db", str(db), "--workers", "0", "--batch-size", value]) != 0
    assert "--batch-size must be 1 or more" in capsys.readouterr().err
    assert not db.exists()


def test_an_unusable_scheduler_address_is_a_clean_error(tmp_path, capsys):
    music = tmp_path / "music"
    music.mkdir()
    tone(music / "one.wav")
    code = main(["library", "import", str(music), "--db", str(tmp_path / "l.sqlite"), "--scheduler", "notanaddress"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach the Dask scheduler" in err and "Traceback" not in err


def test_a_catalog_path_under_a_file_is_a_clean_error(tmp_path, capsys):
    music = tmp_path / "music"
    music.mkdir()
    tone(music / "one.wav")
    (tmp_path / "file").write_text("x")
    assert main(["library", "import", str(music), "--db", str(tmp_path / "file" / "l.sqlite"), "--workers", "0"]) == 1
    assert "cannot open the catalog" in capsys.readouterr().err


def test_the_walk_reports_a_folder_it_cannot_list(tmp_path):
    errors: list[str] = []
    assert list(scan([tmp_path / "gone"], on_error=lambda path, exc: errors.append(path))) == []
    assert errors == [str(tmp_path / "gone")]
