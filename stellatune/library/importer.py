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
from .catalog import Catalog
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
) -> ImportReport:
    """Import the audio files under ``roots`` into the catalog at ``db_path``.

    ``workers=0`` analyses serially in this process; otherwise on Dask (``scheduler``, else a
    LocalCluster of ``workers`` processes, default one per core). ``on_start(n)`` learns how
    many files will be analysed, ``on_batch(results)`` sees each batch after it is written.
    ``lyrics_config`` maps a granted lyrics plugin's id to its providers' config (laid over
    their defaults; e.g. ``{"base_url": ...}`` for the example ``lrc-lyrics``).
    Ctrl-C stops the run between batches: what was written stays, consistent.
    """
    from .distribute import collect_bundles, run_distributed, run_serial

    if decoder_mode not in DECODER_MODES:
        raise ValueError(f"decoder mode must be one of {DECODER_MODES}")
    if plugins_dir is None and lyrics_config:
        raise LibraryError("a lyrics config needs a plugins dir with the lyrics plugin")
    started = time.perf_counter()
    report = ImportReport()
    touched: set[str] = set()
    with Catalog(db_path) as catalog:
        known = catalog.known()
        todo: list[WorkItem] = []
        for found in scan(roots):
            report.files += 1
            had = known.get(found.path)
            if had is not None and had[0] == found.size and had[1] == found.mtime_ns:
                report.skipped += 1
                continue
            same_size = had is not None and had[0] == found.size
            todo.append(WorkItem(found.path, found.size, found.mtime_ns, had[2] if same_size and had else None))
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
                    touched.add(r.folder)
                    if r.status == "ok":
                        report.imported += 1
                        report.audio_seconds += r.duration_s or 0.0
                    else:
                        report.failed += 1
                        report.failures.append({"path": r.path, "code": r.error_code, "message": r.error_message})
                if on_batch is not None:
                    on_batch(results)
        except KeyboardInterrupt:
            report.interrupted = True
            raise
        finally:
            close = getattr(runs, "close", None)
            if close is not None:
                close()
            catalog.finish(touched)
            report.failures.sort(key=lambda f: f["path"])
            report.elapsed_s = time.perf_counter() - started
    return report
