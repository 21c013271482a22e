"""``import_library``: scan → skip what the catalog already has → analyse (serial or Dask) →
write batch by batch → album gains and duplicate flags. The one function the CLI calls."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import LibraryError
from .analyse import DECODER_MODES, TrackResult, WorkItem
from .catalog import Catalog, KnownTrack, catalog_text
from .scan import scan

__all__ = ["ImportReport", "import_library"]


@dataclass
class ImportReport:
    """Counts of one import (``--json`` prints :meth:`to_json`)."""

    files: int = 0
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    audio_seconds: float = 0.0
    elapsed_s: float = 0.0
    mode: str = "serial"
    workers: int = 0
    interrupted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "imported": self.imported,
            "skipped": self.skipped,
            "failed": self.failed,
            "failures": self.failures,
            "audio_seconds": round(self.audio_seconds, 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "files_per_s": round(self.analysed / self.elapsed_s, 3) if self.elapsed_s > 0 else None,
            "mode": self.mode,
            "workers": self.workers,
            "interrupted": self.interrupted,
        }

    @property
    def analysed(self) -> int:
        return self.imported + self.failed


def import_library(
    roots: Sequence[Path | str],
    db_path: Path | str,
    *,
    workers: Optional[int] = None,
    scheduler: Optional[str] = None,
    decoder_mode: str = "auto",
    plugins_dir: Optional[Path] = None,
    batch_size: Optional[int] = None,
    lyrics_config: Optional[Mapping[str, Mapping[str, Any]]] = None,
    on_start: Optional[Callable[[int], None]] = None,
    on_batch: Optional[Callable[[list[TrackResult]], None]] = None,
    report: Optional[ImportReport] = None,
) -> ImportReport:
    """Import the audio files under ``roots`` into the catalog at ``db_path``.

    ``workers=0`` analyses serially in this process; otherwise on Dask (``scheduler``, else a
    LocalCluster of ``workers`` processes, default one per core). ``on_start(n)`` learns how
    many files will be analysed, ``on_batch(results)`` sees each batch after it is written.
    ``lyrics_config`` maps a granted lyrics plugin's id to its providers' config (laid over
    their defaults; e.g. ``{"base_url": ...}`` for the example ``lrc-lyrics``).
    Ctrl-C stops the run between batches: what was written stays, consistent, and the
    ``KeyboardInterrupt`` goes on to the caller; pass ``report`` to keep the counts so far
    (``interrupted`` is then True).
    """
    from .distribute import collect_bundles, run_distributed, run_serial

    if decoder_mode not in DECODER_MODES:
        raise ValueError(f"decoder mode must be one of {DECODER_MODES}")
    if plugins_dir is None and lyrics_config:
        raise LibraryError("a lyrics config needs a plugins dir with the lyrics plugin")
    if batch_size is not None and batch_size < 1:
        raise ValueError("batch size must be 1 or more")
    started = time.perf_counter()
    report = report if report is not None else ImportReport()
    with Catalog(db_path) as catalog:
        known = catalog.known()
        touched = catalog.folders_without_album()
        todo: list[WorkItem] = []
        for found in scan(roots, on_error=lambda path, exc: _unlistable(report, path, exc)):
            report.files += 1
            had = known.get(catalog_text(found.path))
            if had is not None and (had.size, had.mtime_ns) == (found.size, found.mtime_ns) and not _retry(had):
                report.skipped += 1
                continue
            # Only an ok row's hash may say "unchanged": a failed file is analysed again once
            # touched (its bytes may be the same, the decoders or the reason may not).
            same = had is not None and had.size == found.size and had.status == "ok"
            known_hash = had.content_hash if same and had is not None else None
            todo.append(WorkItem(found.path, found.size, found.mtime_ns, known_hash))
        bundles = collect_bundles(plugins_dir, decoder_mode, lyrics_config) if plugins_dir is not None else []
        if on_start is not None:
            on_start(len(todo))
        if workers == 0 and scheduler is None:
            runs = run_serial(todo, bundles, decoder_mode, batch_size or 16)
        else:
            report.mode = "dask"
            report.workers = workers or (0 if scheduler else os.cpu_count() or 1)
            runs = run_distributed(
                todo, bundles, decoder_mode, workers=workers, scheduler=scheduler, batch_size=batch_size
            )
        try:
            for results in runs:
                catalog.write_batch(results)
                for r in results:
                    if r.status == "unchanged":
                        report.skipped += 1
                        continue
                    touched.add(catalog_text(r.folder))
                    if r.status == "ok":
                        report.imported += 1
                        report.audio_seconds += r.duration_s or 0.0
                    else:
                        report.failed += 1
                        report.failures.append(
                            {
                                "path": catalog_text(r.path),
                                "code": r.error_code,
                                "message": catalog_text(r.error_message or ""),
                            }
                        )
                if on_batch is not None:
                    on_batch(results)
        except KeyboardInterrupt:
            report.interrupted = True
            raise
        finally:
            # The catalog first: closing a cluster takes seconds, and a second Ctrl-C then must
            # not cost the album gains (a run that misses them anyway leaves the folder to the
            # next run: folders_without_album).
            try:
                catalog.finish(touched)
            finally:
                close = getattr(runs, "close", None)
                if close is not None:
                    close()
                report.failures.sort(key=lambda f: f["path"])
                report.elapsed_s = time.perf_counter() - started
    return report


def _retry(had: KnownTrack) -> bool:
    """A row an unchanged file does not keep: an io-error (a permission fixed with chmod
    changes no size or mtime)."""
    return had.status == "failed" and had.error_code == "io-error"


def _unlistable(report: ImportReport, path: str, exc: OSError) -> None:
    """A folder the walk cannot list is a failure of the run's, not silence."""
    report.failed += 1
    report.failures.append({"path": catalog_text(path), "code": "io-error", "message": f"cannot list: {exc.strerror}"})
