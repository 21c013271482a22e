"""The one wasmtime component engine, its epoch ticker, and the on-disk compile cache.

Compiling a componentize-py component takes seconds; loading a serialized one takes
milliseconds. The cache key is the sha256 of the component *bytes* (not its path, so replacing a
``.wasm`` never runs stale code) plus the wasmtime version and our engine settings, because a
serialized artifact only loads into an engine built the same way.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import wasmtime
from wasmtime.component import Component

from ..errors import ActivationError
from ..paths import default_cache_dir
from . import fastbytes

__all__ = ["ComponentEngine", "CompileCache", "CacheStats"]

WASMTIME_VERSION = importlib.metadata.version("wasmtime")
#: Part of every cache key: bump it when the engine configuration below changes.
ENGINE_PROFILE = "cm+epoch+simd.v1"
EPOCH_TICK_S = 0.02


class ComponentEngine:
    """A component-model engine with epoch interruption and a thread that advances the epoch.

    Deadlines are expressed in seconds and turned into epoch ticks; a call that runs past its
    deadline traps with an interrupt instead of hanging the host.
    """

    def __init__(self) -> None:
        fastbytes.install()
        cfg = wasmtime.Config()
        cfg.wasm_component_model = True
        cfg.epoch_interruption = True
        self.engine = wasmtime.Engine(cfg)
        self._max_lock = threading.Lock()
        self._max_ticks = 1  # the longest deadline handed out, for interrupt_all
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="stellatune-epoch", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(EPOCH_TICK_S):
            self.engine.increment_epoch()

    def ticks_for(self, seconds: float) -> int:
        """Epoch ticks that cover at least ``seconds`` (one extra: the current tick is partial)."""
        ticks = max(1, int(seconds / EPOCH_TICK_S + 0.999)) + 1
        with self._max_lock:
            self._max_ticks = max(self._max_ticks, ticks)
        return ticks

    def interrupt_all(self) -> None:
        """Make every call in flight trap with an interrupt at its next epoch check (shutdown).

        Deadlines are set relative to the epoch when a call starts, so advancing the epoch past
        the longest deadline ever set ends every running call; later calls are unaffected.
        """
        with self._max_lock:
            ticks = self._max_ticks
        for _ in range(ticks + 1):
            self.engine.increment_epoch()

    def stop_ticker(self) -> None:
        """Let the epoch thread end, without waiting for it (a finalizer may run on it)."""
        self._stop.set()

    def close(self) -> None:
        """Stop the epoch ticker, after interrupting every call in flight (with no ticker their
        deadlines would never come). Stores must not be called afterwards."""
        self.interrupt_all()
        self._stop.set()
        self._ticker.join(timeout=1.0)


@dataclass
class CacheStats:
    """What the cache did since the executor started (tests and ``plugins info`` read it)."""

    compiled: int = 0
    loaded_from_disk: int = 0
    reused_in_memory: int = 0
    compile_seconds: float = 0.0
    load_seconds: float = 0.0


class CompileCache:
    """Compiled components by content hash: in memory, then on disk, then compile and store."""

    def __init__(self, engine: ComponentEngine, cache_dir: Optional[Path] = None):
        self._engine = engine
        self.dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.dir = self.dir / "components"
        self._memory: dict[str, Component] = {}
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def key_for(self, wasm: bytes) -> str:
        """The cache key of a component's bytes under this engine."""
        digest = hashlib.sha256(wasm).hexdigest()
        tag = hashlib.sha256(f"{WASMTIME_VERSION}|{ENGINE_PROFILE}".encode()).hexdigest()[:12]
        return f"{digest}-{tag}"

    def load(self, path: Path) -> tuple[str, Component]:
        """Return ``(key, component)`` for the file at ``path``; raise ActivationError if it is not one."""
        try:
            wasm = path.read_bytes()
        except OSError as e:
            raise ActivationError(f"cannot read component {path}: {e}") from e
        key = self.key_for(wasm)
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self.stats.reused_in_memory += 1
                return key, hit
            component = self._from_disk(key) or self._compile(key, wasm, path)
            self._memory[key] = component
            return key, component

    def forget(self, key: str) -> None:
        """Drop the in-memory copy (the disk artifact stays for the next start)."""
        with self._lock:
            self._memory.pop(key, None)

    def _artifact(self, key: str) -> Path:
        return self.dir / f"{key}.cwasm"

    def _from_disk(self, key: str) -> Optional[Component]:
        artifact = self._artifact(key)
        if not artifact.is_file():
            return None
        started = time.perf_counter()
        try:
            component = Component.deserialize_file(self._engine.engine, str(artifact))
        except wasmtime.WasmtimeError:
            # A truncated or foreign artifact: recompile and overwrite it rather than fail.
            return None
        self.stats.load_seconds += time.perf_counter() - started
        self.stats.loaded_from_disk += 1
        return component

    def _compile(self, key: str, wasm: bytes, path: Path) -> Component:
        started = time.perf_counter()
        try:
            component = Component(self._engine.engine, wasm)
        except wasmtime.WasmtimeError as e:
            raise ActivationError(f"{path.name} is not a valid component: {_first_line(e)}") from e
        self.stats.compile_seconds += time.perf_counter() - started
        self.stats.compiled += 1
        self._store(key, component)
        return component

    def _store(self, key: str, component: Component) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            # Write-then-rename so a concurrent reader never sees half an artifact.
            fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        except OSError:
            # The cache is an optimisation: a read-only cache dir must not break activation.
            return
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(component.serialize())
            os.replace(tmp, self._artifact(key))
        except OSError:
            # A full disk, say: drop the partial file rather than leave it in the cache dir.
            Path(tmp).unlink(missing_ok=True)


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
