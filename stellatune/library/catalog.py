"""The SQLite catalog: schema (versioned by ordered migrations), batched writes, album gains,
duplicate flags, and the small readers behind ``library stats`` / ``library query``.

Only the client process writes (one connection, WAL mode); each batch of results is one
transaction, so an interrupted import leaves every batch either fully in or not at all.
docs/library.md documents the schema.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Optional

from ..errors import CatalogError
from .analyse import TrackResult, album_loudness, replaygain

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "QUERY_FIELDS",
    "Catalog",
    "KnownTrack",
    "CatalogError",
    "parse_where",
    "catalog_text",
]


def catalog_text(text: str) -> str:
    """``text`` as SQLite (and JSON) can hold it: a path's bytes that are not UTF-8 (Python's
    surrogate escapes, ``os.fsdecode``) become ``\\xNN`` escapes. The catalog keys tracks by
    this form; valid UTF-8 comes back unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def _run(db: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script`` inside the caller's transaction (``executescript`` would
    commit first)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _m1_tracks(db: sqlite3.Connection) -> None:
    _run(
        db,
        """
        CREATE TABLE tracks (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            folder TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            content_hash TEXT,
            status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
            error_code TEXT,
            error_message TEXT,
            attempts INTEGER NOT NULL DEFAULT 1,
            decoder TEXT,
            codec TEXT,
            container TEXT,
            sample_rate INTEGER,
            channels INTEGER,
            frames INTEGER,
            duration_s REAL,
            title TEXT, artist TEXT, album TEXT, album_artist TEXT, genre TEXT,
            track_number INTEGER, disc_number INTEGER, year INTEGER,
            tags_source TEXT,
            integrated_lufs REAL,
            true_peak_dbtp REAL,
            sample_peak REAL,
            track_gain_db REAL,
            album_gain_db REAL,
            lyrics TEXT,
            lyrics_source TEXT,
            imported_at REAL NOT NULL
        );
        CREATE INDEX tracks_folder ON tracks(folder);
        CREATE INDEX tracks_hash ON tracks(content_hash);
        CREATE INDEX tracks_status ON tracks(status);
        CREATE TABLE loudness_blocks (
            track_id INTEGER PRIMARY KEY REFERENCES tracks(id) ON DELETE CASCADE,
            blocks BLOB NOT NULL
        );
        """,
    )


def _m2_albums_and_duplicates(db: sqlite3.Connection) -> None:
    _run(
        db,
        """
        ALTER TABLE tracks ADD COLUMN duplicate_count INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE albums (
            folder TEXT PRIMARY KEY,
            track_count INTEGER NOT NULL,
            integrated_lufs REAL,
            true_peak_dbtp REAL,
            album_gain_db REAL
        );
        """,
    )


#: Ordered migrations: entry ``i`` takes the schema from version ``i`` to ``i + 1``.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_m1_tracks, _m2_albums_and_duplicates)
SCHEMA_VERSION = len(MIGRATIONS)

_TRACK_COLUMNS = [
    "path",
    "folder",
    "size",
    "mtime_ns",
    "content_hash",
    "status",
    "error_code",
    "error_message",
    "attempts",
    "decoder",
    "codec",
    "container",
    "sample_rate",
    "channels",
    "frames",
    "duration_s",
    "title",
    "artist",
    "album",
    "album_artist",
    "genre",
    "track_number",
    "disc_number",
    "year",
    "tags_source",
    "integrated_lufs",
    "true_peak_dbtp",
    "sample_peak",
    "track_gain_db",
    "lyrics",
    "lyrics_source",
    "imported_at",
]
_TAG_COLUMNS = ("title", "artist", "album", "album_artist", "genre", "track_number", "disc_number", "year")

#: Columns ``library query --where`` may name (every column of ``tracks`` but the lyrics text).
QUERY_FIELDS = frozenset([c for c in _TRACK_COLUMNS if c != "lyrics"] + ["id", "album_gain_db", "duplicate_count"])
_NUMERIC_FIELDS = frozenset(
    {
        "id",
        "size",
        "mtime_ns",
        "attempts",
        "sample_rate",
        "channels",
        "frames",
        "duration_s",
        "track_number",
        "disc_number",
        "year",
        "integrated_lufs",
        "true_peak_dbtp",
        "sample_peak",
        "track_gain_db",
        "album_gain_db",
        "duplicate_count",
        "imported_at",
    }
)
_WHERE = re.compile(r"^\s*([a-z_]+)\s*(!=|>=|<=|=|<|>|~)\s*(.*?)\s*$")


def parse_where(expressions: Sequence[str]) -> tuple[str, list[Any]]:
    """``["codec=flac", "duration_s>0.5", "title~love"]`` → ``("codec = ? AND ...", params)``.

    Each expression is ``FIELD OP VALUE``: FIELD one of :data:`QUERY_FIELDS`, OP one of
    ``= != < <= > >=`` or ``~`` (substring, case-insensitive), VALUE a literal (a number when
    it parses as one and FIELD is numeric; ``null`` with ``=``/``!=`` tests for NULL). Values are always bound as
    parameters, never spliced into the SQL.
    """
    clauses: list[str] = []
    params: list[Any] = []
    for expr in expressions:
        m = _WHERE.match(expr)
        if not m:
            raise CatalogError(f"--where {expr!r}: expected FIELD=VALUE (or != < <= > >= ~)")
        name, op, raw = m.groups()
        if name not in QUERY_FIELDS:
            raise CatalogError(f"--where {expr!r}: unknown field {name!r} (one of {', '.join(sorted(QUERY_FIELDS))})")
        if raw.lower() == "null" and op in ("=", "!="):
            clauses.append(f"{name} IS {'NOT ' if op == '!=' else ''}NULL")
            continue
        if op == "~":
            clauses.append(f"{name} LIKE ? ESCAPE '\\'")
            params.append("%" + raw.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
            continue
        value: Any = raw
        if name in _NUMERIC_FIELDS:  # a text field compares as text: title=007 is "007"
            try:
                value = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    value = raw
        clauses.append(f"{name} {op} ?")
        params.append(value)
    return (" AND ".join(clauses) or "1"), params


class KnownTrack(NamedTuple):
    """A catalogued file, as an incremental import compares it with the disk."""

    size: int
    mtime_ns: int
    content_hash: Optional[str]
    status: str
    error_code: Optional[str]


class Catalog:
    """One SQLite catalog file, opened (and migrated to :data:`SCHEMA_VERSION`) in WAL mode."""

    def __init__(self, path: Path | str, *, readonly: bool = False):
        self.path = Path(path)
        try:
            if readonly:
                if not self.path.is_file():
                    raise CatalogError(f"{self.path}: no such catalog")
                # A URI, for mode=ro: as_uri() escapes the '#', '?' and '%' a path may hold.
                self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
                self._check_readable()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.execute("PRAGMA foreign_keys=ON")
                self.migrate()
        except (sqlite3.Error, OSError) as exc:
            raise CatalogError(f"{self.path}: cannot open the catalog: {exc}") from exc
        self.db.row_factory = sqlite3.Row

    def _check_readable(self) -> None:
        """A read-only open cannot migrate: the file must be a catalog of this very version."""
        version = self.version()
        if version == 0:
            self.db.close()
            raise CatalogError(f"{self.path}: not a stellatune catalog (no schema version)")
        if version != SCHEMA_VERSION:
            self.db.close()
            newer = version > SCHEMA_VERSION
            raise CatalogError(
                f"{self.path}: schema version {version} is {'newer' if newer else 'older'} than this "
                f"stellatune's ({SCHEMA_VERSION})" + ("" if newer else "; `stellatune library import` migrates it")
            )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema -----------------------------------------------------------------------------

    def version(self) -> int:
        has = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'").fetchone()
        if not has:
            return 0
        row = self.db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> int:
        """Apply the migrations this file lacks, each in its own transaction; returns the version."""
        self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
        current = self.version()
        if current > SCHEMA_VERSION:
            raise CatalogError(
                f"{self.path}: schema version {current} is newer than this stellatune ({SCHEMA_VERSION})"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                MIGRATIONS[version - 1](self.db)
                self.db.execute("INSERT INTO schema_version VALUES (?, ?)", (version, time.time()))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return SCHEMA_VERSION

    # --- incremental ------------------------------------------------------------------------

    def known(self) -> dict[str, KnownTrack]:
        """path (its :func:`catalog_text`) → what the catalog has of it, for every track."""
        rows = self.db.execute("SELECT path, size, mtime_ns, content_hash, status, error_code FROM tracks")
        return {r[0]: KnownTrack(*r[1:]) for r in rows}

    def folders_without_album(self) -> set[str]:
        """Folders with imported tracks but no album row: an import stopped before its
        :meth:`finish` (a second Ctrl-C) left them; the next one finishes them."""
        rows = self.db.execute(
            "SELECT DISTINCT folder FROM tracks WHERE status = 'ok' AND folder NOT IN (SELECT folder FROM albums)"
        )
        return {r[0] for r in rows}

    # --- writes -----------------------------------------------------------------------------

    def write_batch(self, results: Iterable[TrackResult]) -> int:
        """Upsert one batch of results in one transaction (``unchanged`` ones only get their new
        mtime); returns how many rows were written."""
        now = time.time()
        n = 0
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for r in results:
                n += 1
                if r.status == "unchanged":
                    self.db.execute(
                        "UPDATE tracks SET mtime_ns = ?, size = ? WHERE path = ?",
                        (r.mtime_ns, r.size, catalog_text(r.path)),
                    )
                    continue
                row = _row(r, now)
                placeholders = ", ".join("?" for _ in _TRACK_COLUMNS)
                updates = ", ".join(f"{c} = excluded.{c}" for c in _TRACK_COLUMNS if c != "path")
                cur = self.db.execute(
                    f"INSERT INTO tracks ({', '.join(_TRACK_COLUMNS)}) VALUES ({placeholders}) "
                    f"ON CONFLICT(path) DO UPDATE SET {updates}, album_gain_db = NULL RETURNING id",
                    [row[c] for c in _TRACK_COLUMNS],
                )
                track_id = cur.fetchone()[0]
                blocks = r.loudness.blocks if r.loudness is not None else b""
                if blocks:
                    self.db.execute("INSERT OR REPLACE INTO loudness_blocks VALUES (?, ?)", (track_id, blocks))
                else:
                    self.db.execute("DELETE FROM loudness_blocks WHERE track_id = ?", (track_id,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return n

    def finish(self, folders: Iterable[str]) -> None:
        """After an import: album loudness and gain for ``folders``, duplicate counts for all."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for folder in sorted(set(folders)):
                rows = self.db.execute(
                    "SELECT b.blocks, t.true_peak_dbtp FROM tracks t JOIN loudness_blocks b ON b.track_id = t.id "
                    "WHERE t.folder = ? AND t.status = 'ok' ORDER BY t.path",
                    (folder,),
                ).fetchall()
                count = self.db.execute("SELECT COUNT(*) FROM tracks WHERE folder = ? AND status = 'ok'", (folder,))
                n = int(count.fetchone()[0])
                if n == 0:
                    self.db.execute("DELETE FROM albums WHERE folder = ?", (folder,))
                    continue
                lufs = album_loudness([r[0] for r in rows])
                peaks = [r[1] for r in rows if r[1] is not None]
                gain = replaygain(lufs)
                self.db.execute(
                    "INSERT OR REPLACE INTO albums VALUES (?, ?, ?, ?, ?)",
                    (folder, n, lufs, max(peaks) if peaks else None, gain),
                )
                self.db.execute(
                    "UPDATE tracks SET album_gain_db = ? WHERE folder = ? AND status = 'ok'", (gain, folder)
                )
            # Duplicate counts in one pass over a grouped temp table (no per-row subquery scan).
            self.db.execute("DROP TABLE IF EXISTS temp.dup")
            self.db.execute("CREATE TEMP TABLE dup (content_hash TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID")
            self.db.execute(
                "INSERT INTO temp.dup SELECT content_hash, COUNT(*) - 1 FROM tracks "
                "WHERE content_hash IS NOT NULL GROUP BY content_hash"
            )
            self.db.execute(
                "UPDATE tracks SET duplicate_count = COALESCE("
                "(SELECT n FROM temp.dup WHERE dup.content_hash = tracks.content_hash), 0) "
                "WHERE duplicate_count != COALESCE("
                "(SELECT n FROM temp.dup WHERE dup.content_hash = tracks.content_hash), 0)"
            )
            self.db.execute("DROP TABLE temp.dup")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # --- readers ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        try:
            return self._stats()
        except sqlite3.Error as exc:
            raise CatalogError(f"{self.path}: cannot read the catalog: {exc}") from exc

    def _stats(self) -> dict[str, Any]:
        one = self.db.execute(
            "SELECT COUNT(*), SUM(status = 'ok'), SUM(status = 'failed'), COALESCE(SUM(duration_s), 0), "
            "COALESCE(SUM(size), 0), SUM(duplicate_count > 0) FROM tracks"
        ).fetchone()
        by = {
            key: {str(r[0]): r[1] for r in self.db.execute(sql)}
            for key, sql in (
                ("codecs", "SELECT codec, COUNT(*) FROM tracks WHERE status = 'ok' GROUP BY codec ORDER BY codec"),
                ("decoders", "SELECT decoder, COUNT(*) FROM tracks WHERE status = 'ok' GROUP BY decoder ORDER BY 1"),
                ("errors", "SELECT error_code, COUNT(*) FROM tracks WHERE status = 'failed' GROUP BY 1 ORDER BY 1"),
            )
        }
        albums = self.db.execute("SELECT COUNT(*) FROM albums").fetchone()[0]
        return {
            "schema_version": self.version(),
            "tracks": one[0],
            "ok": one[1] or 0,
            "failed": one[2] or 0,
            "duplicates": one[5] or 0,
            "albums": albums,
            "audio_hours": round(one[3] / 3600.0, 4),
            "bytes": one[4],
            **by,
        }

    def query(self, where: Sequence[str] = (), *, limit: Optional[int] = None) -> list[dict[str, Any]]:
        """Tracks matching every ``where`` expression (:func:`parse_where`), by path."""
        clause, params = parse_where(where)
        sql = f"SELECT * FROM tracks WHERE {clause} ORDER BY path"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        try:
            return [dict(r) for r in self.db.execute(sql, params)]
        except sqlite3.Error as exc:
            raise CatalogError(f"query failed: {exc}") from exc


def _row(r: TrackResult, now: float) -> dict[str, Any]:
    loud = r.loudness
    lufs = loud.lufs if loud is not None else None
    row: dict[str, Any] = {
        "path": r.path,
        "folder": r.folder,
        "size": r.size,
        "mtime_ns": r.mtime_ns,
        "content_hash": r.content_hash,
        "status": r.status,
        "error_code": r.error_code,
        "error_message": r.error_message,
        "attempts": r.attempts,
        "decoder": r.decoder,
        "codec": r.codec,
        "container": r.container,
        "sample_rate": r.sample_rate,
        "channels": r.channels,
        "frames": r.frames,
        "duration_s": r.duration_s,
        "tags_source": r.tags_source,
        "integrated_lufs": lufs,
        "true_peak_dbtp": loud.true_peak_dbtp if loud is not None else None,
        "sample_peak": loud.sample_peak if loud is not None else None,
        "track_gain_db": replaygain(lufs),
        "lyrics": r.lyrics,
        "lyrics_source": r.lyrics_source,
        "imported_at": now,
    }
    for c in _TAG_COLUMNS:
        value = r.tags.get(c)
        row[c] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return {c: _storable(v) for c, v in row.items()}


def _storable(value: Any) -> Any:
    """What a column may hold: text SQLite can store, and no inf or NaN (a float file holding
    inf peaks at inf; NULL says "no figure", and keeps ``--json`` output valid JSON)."""
    if isinstance(value, str):
        return catalog_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
