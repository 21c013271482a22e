"""Running the analysis: serially in this process, or on Dask (a ``LocalCluster`` or any
scheduler), in batches of files per task.

- **One runtime and executor per worker**: :class:`AnalyserPlugin`, a ``distributed``
  ``WorkerPlugin``, builds an :class:`~.analyse.Analyser` at worker setup and shuts it down at
  teardown; every task on that worker reuses it. Its executor keeps the worker machine's own
  on-disk compile cache (``$STELLATUNE_CACHE`` there, else the per-user cache). The setup also
  loads the analysis's imports (``analyse.warm_up``) and undoes the nanny's allocator setting
  (:func:`undo_nanny_malloc_settings`), so a task costs a worker what a file costs serially.
- **Plugins travel as zips**: the client zips each active decoder (and granted lyrics) plugin's
  installed tree (:func:`collect_bundles`); the worker plugin carries the bytes, and each worker
  installs them with the package plane into a worker-local plugins dir (same code, same checks
  as ``plugins install``), grants applied, then syncs.
- **Retries**: a task whose worker dies is re-run by the scheduler (``allowed-failures`` = 1 on
  the LocalCluster: 2 tries). The scheduler blames every task a dead worker held, queued ones
  too, so a task that still fails that way only says its worker died near it: its files are
  quarantined and, once the other tasks are done, run one at a time, each alone in the cluster
  (2 tries each). A file that kills 2 workers there is recorded ``worker-died``.
- **Batching**: without ``--batch-size``, batches shrink as the run goes (:func:`plan_batches`):
  big ones while there is plenty left (few tasks, small scheduler overhead), single files at
  the end (no worker idles while the other finishes a long batch).
- Only the caller (the client) gets results; it alone writes the catalog.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from distributed.diagnostics.plugin import WorkerPlugin

from ..errors import LibraryError, StellatuneError
from ..manifest import AbilityKind, Permissions
from .analyse import Analyser, TrackResult, WorkItem, warm_up

if TYPE_CHECKING:
    from ..executor import ComponentExecutor

__all__ = [
    "PLUGIN_NAME",
    "PluginBundle",
    "collect_bundles",
    "open_analyser",
    "AnalyserPlugin",
    "undo_nanny_malloc_settings",
    "analyse_batch",
    "batch_size_for",
    "plan_batches",
    "run_serial",
    "run_distributed",
]

#: The name the worker plugin is registered under.
PLUGIN_NAME = "stellatune-library"
#: Worker deaths a task may cause before the scheduler gives up on it (LocalCluster only; an
#: external scheduler uses its own ``distributed.scheduler.allowed-failures``).
ALLOWED_FAILURES = 1
#: Most files in one task: a task is worth its scheduling, and a lost task costs little.
MAX_BATCH = 64
#: Default batches hold ``remaining / (GUIDED_SHARE × workers)`` files (guided self-scheduling).
GUIDED_SHARE = 4
#: glibc ``mallopt`` parameters and the values a long-running process reaches by itself
#: (glibc's dynamic mmap threshold stops at 32 MiB, the trim threshold follows at twice that).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES = 32 << 20


@dataclass(frozen=True)
class PluginBundle:
    """One installed plugin as the zip a worker installs, with the host grants it has here,
    its granted lyrics abilities (``plugin_id, type_id``) and the config for them (a JSON
    object's text, laid over each ability's default config; ``None``: the defaults)."""

    plugin_id: str
    digest: str
    data: bytes
    grants: Permissions
    lyrics: tuple[tuple[str, str], ...] = ()
    lyrics_config: Optional[str] = None


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


def collect_bundles(
    plugins_dir: Path, decoder_mode: str, lyrics_config: Optional[Mapping[str, Mapping[str, Any]]] = None
) -> list[PluginBundle]:
    """The plugins a worker needs: every active decoder plugin (unless ``decoder_mode`` is
    ``builtin``) and every active lyrics plugin the user granted something (``plugins grant``).

    ``lyrics_config`` maps a lyrics plugin's id to the config its providers get (e.g. the
    service's ``base_url``); naming a plugin that is not an active, granted lyrics plugin is a
    :class:`LibraryError` (a typo would otherwise import without lyrics, silently).
    """
    from ..runtime import NoopLifecycleHost, WasmPluginRuntime

    configs = dict(lyrics_config or {})
    if not Path(plugins_dir).is_dir():
        if configs:
            raise LibraryError(f"lyrics config for {', '.join(sorted(configs))}, but {plugins_dir} has no plugins")
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
            config = configs.pop(info.id, None) if lyrics else None
            if (decoders and decoder_mode != "builtin") or lyrics:
                data = _zip_tree(Path(info.root_dir))
                digest = hashlib.sha256(data).hexdigest()[:16]
                text = json.dumps(dict(config), sort_keys=True) if config is not None else None
                bundles.append(PluginBundle(info.id, digest, data, grants, lyrics, text))
    if configs:
        raise LibraryError(
            f"lyrics config for {', '.join(sorted(configs))}: not an active lyrics plugin with host grants "
            "(stellatune plugins grant)"
        )
    return bundles


def open_analyser(
    bundles: Sequence[PluginBundle], work_dir: Path, decoder_mode: str, cache_dir: Optional[Path] = None
) -> tuple[Analyser, Callable[[], None]]:
    """Install ``bundles`` into ``work_dir/plugins-<digest>`` and open one executor and runtime
    on it; returns the analyser and the function that shuts both down. No bundles: an analyser
    without plugins (soundfile), nothing to shut down."""
    warm_up()
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
    try:
        for b in bundles:
            if b.lyrics_config is not None and runtime.is_active(b.plugin_id):
                _configure_lyrics(executor, b)
    except BaseException:
        runtime.shutdown()
        raise

    def close() -> None:
        runtime.shutdown()

    return Analyser(runtime, executor, decoder_mode=decoder_mode, lyrics=lyrics), close


def _configure_lyrics(executor: ComponentExecutor, bundle: PluginBundle) -> None:
    """Give each of ``bundle``'s lyrics providers its defaults overlaid with the user's config,
    once, before any file: the providers are long-lived, every file's search reuses them."""
    assert bundle.lyrics_config is not None
    overrides = json.loads(bundle.lyrics_config)
    for plugin_id, type_id in bundle.lyrics:
        provider = executor.lyrics(plugin_id, type_id)
        try:
            defaults = json.loads(provider.default_config_json)
        except ValueError:
            defaults = {}
        merged = {**(defaults if isinstance(defaults, dict) else {}), **overrides}
        try:
            provider.update_config(merged)
        except StellatuneError as exc:
            raise LibraryError(f"lyrics plugin {plugin_id}/{type_id} refused its config: {exc}") from exc


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
        undo_nanny_malloc_settings()
        work_dir = Path(worker.local_directory) / "stellatune"
        work_dir.mkdir(parents=True, exist_ok=True)
        cache = Path(self.cache_dir) if self.cache_dir else None
        self.analyser, self._close = open_analyser(self.bundles, work_dir, self.decoder_mode, cache)

    def teardown(self, worker: Any) -> None:
        close, self._close, self.analyser = self._close, (lambda: None), None
        close()


def undo_nanny_malloc_settings() -> None:
    """Give this worker process the allocator behaviour of the serial import (glibc only).

    ``distributed``'s nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``
    (``distributed.nanny.pre-spawn-environ``). Setting it also freezes glibc's mmap threshold at
    128 KiB, so every array the analysis makes (a decoded track, its 4× oversampled copy for
    the true peak) becomes a fresh ``mmap`` whose pages fault in zeroed, and is unmapped again
    when freed: measured here, the same files cost 40 % more CPU in a worker than in the serial
    import (docs/library.md). These are the thresholds glibc's own dynamic adjustment reaches in
    a long-running process: the serial import's (the cost: up to 64 MiB of freed heap kept per
    worker between files). Elsewhere (no glibc) nothing is done.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_BYTES)


def analyse_batch(items: Sequence[WorkItem], plugin_name: str = PLUGIN_NAME) -> list[TrackResult]:
    """The Dask task: analyse ``items`` with this worker's analyser."""
    from distributed import get_worker

    analyser = getattr(get_worker().plugins[plugin_name], "analyser", None)
    if analyser is None:
        raise LibraryError("the stellatune worker plugin is not set up on this worker")
    return [analyser.analyse(item) for item in items]


def batch_size_for(files: int, workers: int) -> int:
    """Files per task for ``files`` still to hand out to ``workers``: about ``GUIDED_SHARE``
    tasks' worth per worker, 1 to :data:`MAX_BATCH` files. Called again for what remains, it
    shrinks towards the end of a run (:func:`plan_batches`)."""
    return max(1, min(MAX_BATCH, math.ceil(files / max(1, workers * GUIDED_SHARE))))


def plan_batches(items: Sequence[WorkItem], workers: int, batch_size: Optional[int] = None) -> list[list[WorkItem]]:
    """``items`` cut into tasks: ``batch_size`` files each when given, else guided
    self-scheduling (each batch :func:`batch_size_for` what is left). Guided batches are large
    early, when per-task overhead matters, and single files at the end, so the run does not
    wait on one worker's long last batch while the others idle."""
    if batch_size is not None:
        return _batches(items, batch_size)
    out: list[list[WorkItem]] = []
    i = 0
    while i < len(items):
        size = batch_size_for(len(items) - i, workers)
        out.append(list(items[i : i + size]))
        i += size
    return out


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
            try:
                client = Client(scheduler, timeout=30)
            except (OSError, ValueError, TypeError) as exc:  # unreachable, refused, not an address
                raise LibraryError(f"cannot reach the Dask scheduler {scheduler!r}: {exc}") from exc
    try:
        n_workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
        client.register_plugin(AnalyserPlugin(bundles, decoder_mode), name=PLUGIN_NAME)
        pending: dict[Any, list[WorkItem]] = {}
        for batch in plan_batches(items, n_workers, batch_size):
            pending[client.submit(analyse_batch, batch, pure=False)] = batch
        quarantine: list[WorkItem] = []
        for future in as_completed(list(pending)):
            batch = pending.pop(future)
            results = _outcome(future, batch)
            if results is None:
                quarantine += batch
                continue
            yield results
        # Alone in the cluster, a task the scheduler gives up on killed its workers itself.
        for item in quarantine:
            yield _outcome(client.submit(analyse_batch, [item], pure=False), [item]) or [_died(item)]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _outcome(future: Any, batch: list[WorkItem]) -> Optional[list[TrackResult]]:
    """The results of a finished task, or None when the scheduler gave up on it because
    workers holding it died (:class:`~distributed.scheduler.KilledWorker`)."""
    from distributed.scheduler import KilledWorker

    try:
        return list(future.result())
    except KilledWorker:
        return None
    except StellatuneError as exc:
        return [_failed(item, "internal", f"task failed: {exc}") for item in batch]
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        return [_failed(item, "internal", f"task failed: {type(exc).__name__}: {exc}") for item in batch]
    finally:
        future.release()


def _failed(item: WorkItem, code: str, message: str, attempts: int = 1) -> TrackResult:
    return TrackResult(
        item.path, item.size, item.mtime_ns, "failed", error_code=code, error_message=message, attempts=attempts
    )


def _died(item: WorkItem) -> TrackResult:
    message = f"the worker analysing it died {ALLOWED_FAILURES + 1} times"
    return _failed(item, "worker-died", message, ALLOWED_FAILURES + 1)
