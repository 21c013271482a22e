"""Running the analysis: serially in this process, or on Dask (a ``LocalCluster`` or any
scheduler), in batches of files per task.

- **One runtime and executor per worker**: :class:`AnalyserPlugin`, a ``distributed``
  ``WorkerPlugin``, builds an :class:`~.analyse.Analyser` at worker setup and shuts it down at
  teardown; every task on that worker reuses it. Its executor keeps the worker machine's own
  on-disk compile cache (``$STELLATUNE_CACHE`` there, else the per-user cache).
- **Plugins travel as zips**: the client zips each active decoder (and granted lyrics) plugin's
  installed tree (:func:`collect_bundles`); the worker plugin carries the bytes, and each worker
  installs them with the package plane into a worker-local plugins dir (same code, same checks
  as ``plugins install``), grants applied, then syncs.
- **Retries**: a task whose worker dies is re-run by the scheduler (``allowed-failures`` = 1 on
  the LocalCluster: 2 tries); a batch that still fails that way is split into single-file tasks
  (2 tries each); a file whose task kills 2 workers is recorded ``worker-died``.
- Only the caller (the client) gets results; it alone writes the catalog.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from distributed.diagnostics.plugin import WorkerPlugin

from ..errors import LibraryError, StellatuneError
from ..manifest import AbilityKind, Permissions
from .analyse import Analyser, TrackResult, WorkItem

__all__ = [
    "PLUGIN_NAME",
    "PluginBundle",
    "collect_bundles",
    "open_analyser",
    "AnalyserPlugin",
    "analyse_batch",
    "batch_size_for",
    "run_serial",
    "run_distributed",
]

#: The name the worker plugin is registered under.
PLUGIN_NAME = "stellatune-library"
#: Worker deaths a task may cause before the scheduler gives up on it (LocalCluster only; an
#: external scheduler uses its own ``distributed.scheduler.allowed-failures``).
ALLOWED_FAILURES = 1


@dataclass(frozen=True)
class PluginBundle:
    """One installed plugin as the zip a worker installs, with the host grants it has here."""

    plugin_id: str
    digest: str
    data: bytes
    grants: Permissions
    lyrics: tuple[tuple[str, str], ...] = ()


def _zip_tree(root: Path) -> bytes:
    """The installed plugin tree as a zip, byte for byte the same for the same files (sorted
    entries, fixed timestamps); the install receipt and markers stay behind."""
    from ..package import MARKER_FILE_NAME, RECEIPT_FILE_NAME

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if rel in (RECEIPT_FILE_NAME, MARKER_FILE_NAME) or "__pycache__" in rel:
                continue
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (path.stat().st_mode & 0o777) << 16
            z.writestr(info, path.read_bytes())
    return buf.getvalue()


def collect_bundles(plugins_dir: Path, decoder_mode: str) -> list[PluginBundle]:
    """The plugins a worker needs: every active decoder plugin (unless ``decoder_mode`` is
    ``builtin``) and every active lyrics plugin the user granted something (``plugins grant``)."""
    from ..runtime import NoopLifecycleHost, WasmPluginRuntime

    if not Path(plugins_dir).is_dir():
        return []
    bundles: list[PluginBundle] = []
    with WasmPluginRuntime(Path(plugins_dir), NoopLifecycleHost()) as runtime:
        runtime.sync_plugins()
        for info in runtime.active_plugins():
            caps = runtime.capabilities_of(info.id)
            decoders = [c for c in caps if c.kind == AbilityKind.DECODER]
            grants = runtime.host_grants(info.id)
            lyrics = tuple(
                (c.plugin_id, c.type_id) for c in caps if c.kind == AbilityKind.LYRICS and not grants.is_empty()
            )
            if (decoders and decoder_mode != "builtin") or lyrics:
                data = _zip_tree(Path(info.root_dir))
                digest = hashlib.sha256(data).hexdigest()[:16]
                bundles.append(PluginBundle(info.id, digest, data, grants, lyrics))
    return bundles


def open_analyser(
    bundles: Sequence[PluginBundle], work_dir: Path, decoder_mode: str, cache_dir: Optional[Path] = None
) -> tuple[Analyser, Callable[[], None]]:
    """Install ``bundles`` into ``work_dir/plugins-<digest>`` and open one executor and runtime
    on it; returns the analyser and the function that shuts both down. No bundles: an analyser
    without plugins (soundfile), nothing to shut down."""
    if not bundles:
        return Analyser(None, None, decoder_mode=decoder_mode), lambda: None
    from .. import package
    from ..executor import ComponentExecutor
    from ..runtime import WasmPluginRuntime

    key = hashlib.sha256("".join(b.digest for b in bundles).encode()).hexdigest()[:16]
    plugins_dir = Path(work_dir) / f"plugins-{key}"
    if not plugins_dir.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=".plugins-", dir=work_dir))
        try:
            for b in bundles:
                artifact = staging / f"{b.plugin_id}.zip"
                artifact.write_bytes(b.data)
                package.install_from_artifact(staging / "plugins", artifact)
                artifact.unlink()
            try:
                os.replace(staging / "plugins", plugins_dir)
            except OSError:
                if not plugins_dir.is_dir():  # else another worker on this machine got there first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    executor = ComponentExecutor(cache_dir=cache_dir, log_dir=Path(work_dir) / "logs")
    try:
        runtime = WasmPluginRuntime(plugins_dir, executor)
        for b in bundles:
            if not b.grants.is_empty():
                runtime.grant(b.plugin_id, b.grants)
        report = runtime.sync_plugins()
    except BaseException:
        executor.shutdown()
        raise
    if report.errors:
        runtime.shutdown()
        raise LibraryError("plugins failed to activate on a worker: " + "; ".join(report.errors))
    lyrics = [pair for b in bundles for pair in b.lyrics if runtime.is_active(b.plugin_id)]

    def close() -> None:
        runtime.shutdown()

    return Analyser(runtime, executor, decoder_mode=decoder_mode, lyrics=lyrics), close


class AnalyserPlugin(WorkerPlugin):
    """Sets up the worker's one analyser (runtime + executor) and shuts it down at teardown."""

    name = PLUGIN_NAME

    def __init__(self, bundles: Sequence[PluginBundle], decoder_mode: str, cache_dir: Optional[str] = None):
        self.bundles = list(bundles)
        self.decoder_mode = decoder_mode
        self.cache_dir = cache_dir
        self.analyser: Optional[Analyser] = None
        self._close: Callable[[], None] = lambda: None

    def setup(self, worker: Any) -> None:
        work_dir = Path(worker.local_directory) / "stellatune"
        work_dir.mkdir(parents=True, exist_ok=True)
        cache = Path(self.cache_dir) if self.cache_dir else None
        self.analyser, self._close = open_analyser(self.bundles, work_dir, self.decoder_mode, cache)

    def teardown(self, worker: Any) -> None:
        close, self._close, self.analyser = self._close, (lambda: None), None
        close()


def analyse_batch(items: Sequence[WorkItem], plugin_name: str = PLUGIN_NAME) -> list[TrackResult]:
    """The Dask task: analyse ``items`` with this worker's analyser."""
    from distributed import get_worker

    analyser = getattr(get_worker().plugins[plugin_name], "analyser", None)
    if analyser is None:
        raise LibraryError("the stellatune worker plugin is not set up on this worker")
    return [analyser.analyse(item) for item in items]


def batch_size_for(files: int, workers: int) -> int:
    """Files per task: about 8 tasks per worker (load balance at the end of a run) and at most
    64 files per task, so a task is worth its scheduling (a few ms) and a lost task costs little."""
    return max(1, min(64, math.ceil(files / max(1, workers * 8))))


def _batches(items: Sequence[WorkItem], size: int) -> list[list[WorkItem]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def run_serial(
    items: Sequence[WorkItem], bundles: Sequence[PluginBundle], decoder_mode: str, batch_size: int = 16
) -> Iterator[list[TrackResult]]:
    """Analyse in this process with one analyser, yielding results batch by batch."""
    with tempfile.TemporaryDirectory(prefix="stellatune-library-") as tmp:
        analyser, close = open_analyser(bundles, Path(tmp), decoder_mode)
        try:
            for batch in _batches(items, batch_size):
                yield [analyser.analyse(item) for item in batch]
        finally:
            close()


def run_distributed(
    items: Sequence[WorkItem],
    bundles: Sequence[PluginBundle],
    decoder_mode: str,
    *,
    workers: Optional[int] = None,
    scheduler: Optional[str] = None,
    batch_size: Optional[int] = None,
) -> Iterator[list[TrackResult]]:
    """Analyse on Dask, yielding each task's results as it completes (any order).

    ``scheduler`` (``tcp://host:port``) uses a running cluster; otherwise a ``LocalCluster``
    of ``workers`` processes (default: one per core), one thread each, on 127.0.0.1, is started
    and closed here.
    """
    import dask
    from distributed import Client, LocalCluster, as_completed
    from distributed.scheduler import KilledWorker

    cluster: Any = None
    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        if scheduler is None:
            n = workers or os.cpu_count() or 1
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=40,
            )
            client = Client(cluster)
        else:
            client = Client(scheduler, timeout=30)
    try:
        n_workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
        size = batch_size or batch_size_for(len(items), n_workers)
        client.register_plugin(AnalyserPlugin(bundles, decoder_mode), name=PLUGIN_NAME)
        pending: dict[Any, list[WorkItem]] = {}
        for batch in _batches(items, size):
            pending[client.submit(analyse_batch, batch, pure=False)] = batch
        done = as_completed(list(pending))
        for future in done:
            batch = pending.pop(future)
            try:
                results = future.result()
            except KilledWorker:
                if len(batch) > 1:  # find the file that kills workers: one task per file
                    for item in batch:
                        single = client.submit(analyse_batch, [item], pure=False)
                        pending[single] = [item]
                        done.add(single)
                    continue
                results = [_died(batch[0])]
            except StellatuneError as exc:
                results = [_failed(item, "internal", f"task failed: {exc}") for item in batch]
            except (OSError, RuntimeError, ValueError, TypeError) as exc:
                results = [_failed(item, "internal", f"task failed: {type(exc).__name__}: {exc}") for item in batch]
            finally:
                future.release()
            yield results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _failed(item: WorkItem, code: str, message: str, attempts: int = 1) -> TrackResult:
    return TrackResult(
        item.path, item.size, item.mtime_ns, "failed", error_code=code, error_message=message, attempts=attempts
    )


def _died(item: WorkItem) -> TrackResult:
    return replace(
        _failed(item, "worker-died", f"the worker analysing it died {ALLOWED_FAILURES + 1} times", ALLOWED_FAILURES + 1)
    )
