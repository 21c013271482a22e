"""``stellatune.Pipeline``: a chain of installed DSP plugins, used like a pedalboard.

    import stellatune
    with stellatune.Pipeline(["dev.stellatune.example.eq:eq",
                              'dev.stellatune.example.gain:gain:{"gain_db": -6}']) as board:
        out = board.process(audio, 48000)          # offline, float32 (frames, channels)
        handle = board.play("song.wav")            # live through the real-time engine

It is the convenience layer over the planes: it opens (or borrows) a runtime with the component
executor as its host, and builds each stage component-first through :mod:`stellatune.compose.stages`
for whatever sample rate and channel count the audio has; stages are kept per (rate, channels)
so repeated calls reuse them, and plugin state (a delay line, a compressor's envelope) carries
over between ``process`` calls of the same format, as with a live stream.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import EngineError, RuntimeStateError
from ..paths import default_plugins_dir
from . import checks

__all__ = ["DspPlugin", "Pipeline"]


@dataclass(frozen=True)
class DspPlugin:
    """One DSP ability of an installed plugin, with the config to run it with."""

    plugin_id: str
    type_id: str
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("plugin_id", "type_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise EngineError(f"a DSP stage's {name} must be a non-empty string, not {value!r}")
        if not isinstance(self.config, Mapping):
            raise EngineError(f"a DSP stage's config must be a mapping, not {type(self.config).__name__}")

    @classmethod
    def parse(cls, text: str) -> DspPlugin:
        """``PLUGIN_ID:TYPE_ID[:CONFIG_JSON]``, the CLI's ``--dsp`` syntax."""
        if not isinstance(text, str):
            raise EngineError(f"a stage spec is PLUGIN_ID:TYPE_ID[:CONFIG_JSON] text, not {type(text).__name__}")
        parts = text.split(":", 2)
        if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
            raise EngineError(f"{text!r}: expected PLUGIN_ID:TYPE_ID[:CONFIG_JSON]")
        config: Any = {}
        if len(parts) == 3 and parts[2].strip():
            try:
                config = json.loads(parts[2])
            except ValueError as e:
                raise EngineError(f"{text!r}: config is not valid JSON: {e}") from e
            if not isinstance(config, dict):
                raise EngineError(f"{text!r}: config must be a JSON object")
        return cls(parts[0].strip(), parts[1].strip(), config)


PluginSpec = Union[str, DspPlugin]


class Pipeline:
    """A chain of installed DSP plugins, applied in order.

    ``plugins`` are :class:`DspPlugin` values or ``"ID:TYPE[:CONFIG_JSON]"`` strings. The
    plugins come from ``plugins_dir`` (default: :func:`default_plugins_dir`) through a runtime
    this object opens, syncs and closes; pass ``runtime`` (whose host must be a
    ``ComponentExecutor``) to share one you already have. ``native`` runs the plugins' native
    builds (the unsandboxed speed baseline) instead of their wasm core modules.
    ``memory_limit_bytes`` caps each hot-path module's linear memory (over the manifests'
    ``limits.hot_path_memory_mib`` and the engine's 64 MiB default; docs/engine.md).
    """

    def __init__(
        self,
        plugins: Sequence[PluginSpec],
        *,
        plugins_dir: Union[str, Path, None] = None,
        runtime: Any = None,
        block_frames: int = 256,
        native: bool = False,
        memory_limit_bytes: Optional[int] = None,
    ):
        self.plugins = tuple(p if isinstance(p, DspPlugin) else DspPlugin.parse(p) for p in plugins)
        self.block_frames = checks.positive_int(block_frames, "block_frames")
        self.native = native
        self.memory_limit_bytes = memory_limit_bytes
        self._owns_runtime = runtime is None
        self._runtime = runtime if runtime is not None else self._open_runtime(plugins_dir)
        self._chains: dict[tuple[int, int], Any] = {}
        # One build per format, and one process() at a time, even when threads call at once:
        # the stages carry plugin state, so calls are a sequence, never two chains or a clash.
        self._chains_lock = threading.Lock()
        self._process_lock = threading.Lock()

    @staticmethod
    def _open_runtime(plugins_dir: Union[str, Path, None]) -> Any:
        from ..executor import ComponentExecutor
        from ..runtime import WasmPluginRuntime

        runtime = WasmPluginRuntime(Path(plugins_dir) if plugins_dir else default_plugins_dir(), ComponentExecutor())
        runtime.sync_plugins()
        return runtime

    def chain(self, sample_rate: int, channels: int) -> Any:
        """The engine chain (``stellatune.engine.Chain``) for this audio format, built on
        first use: its ``stages`` say which path each plugin took and hold their stats."""
        self._check_open()
        key = (checks.sample_rate(sample_rate), checks.channel_count(channels))
        with self._chains_lock:
            if key not in self._chains:
                self._chains[key] = self._build(*key)
            return self._chains[key]

    def _build(self, sample_rate: int, channels: int) -> Any:
        from ..engine import Chain
        from .stages import build_dsp_stage

        stages: list[Any] = []
        try:
            for p in self.plugins:
                stages.append(
                    build_dsp_stage(
                        self._runtime,
                        self._runtime.host,
                        p.plugin_id,
                        p.type_id,
                        dict(p.config),
                        sample_rate,
                        channels,
                        native=self.native,
                        memory_limit_bytes=self.memory_limit_bytes,
                    )
                )
            return Chain(stages, sample_rate, channels, block_frames=self.block_frames)
        except BaseException:
            for s in stages:
                s.close()
            raise

    def process(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Render ``audio`` (float32 ``(frames, channels)``, or 1-D mono) offline; returns a new
        array of the same shape. Like pedalboard: the sample rate comes with the call."""
        self._check_open()
        data = checks.float_samples(audio)
        if data.ndim not in (1, 2) or data.size == 0:
            raise EngineError(f"expected (frames,) or (frames, channels) audio, got shape {data.shape}")
        frames = data.reshape(len(data), -1)
        with self._process_lock:
            out = self.chain(sample_rate, frames.shape[1]).process(frames)
        return out.reshape(data.shape)

    def play(
        self,
        source: Union[str, Path, np.ndarray],
        *,
        sample_rate: Optional[int] = None,
        device: Union[str, int, None] = None,
        frames: int = 128,
        ring_frames: int = 8192,
    ) -> Any:
        """Play a file (its own rate and channels) or a ``(frames, channels)`` array at
        ``sample_rate`` through the real-time engine; returns its ``PlaybackHandle``
        (``stop()``, ``wait()``, ``stats()``). ``ring_frames`` (a power of two) is how far the
        decoder may run ahead of the device."""
        self._check_open()
        if isinstance(source, np.ndarray):
            if sample_rate is None:
                raise EngineError("playing an array needs its sample_rate")
            rate, channels = sample_rate, (1 if source.ndim == 1 else source.shape[1])
            source = checks.float_samples(source).reshape(len(source), channels)
        else:
            import soundfile

            try:
                info = soundfile.info(str(source))
            except (RuntimeError, OSError) as e:
                raise EngineError(f"cannot open {source}: {e}") from e
            rate, channels = int(info.samplerate), int(info.channels)
        return self.chain(rate, channels).play(source, device=device, frames=frames, ring_frames=ring_frames)

    def _check_open(self) -> None:
        if self._runtime is None:
            raise RuntimeStateError(f"{self!r} is closed")

    def __repr__(self) -> str:
        names = ", ".join(f"{p.plugin_id}:{p.type_id}" for p in self.plugins)
        return f"<Pipeline [{names}]{' (closed)' if self._runtime is None else ''}>"

    def close(self) -> None:
        """Close every stage, and the runtime if this object opened it. Idempotent; afterwards
        ``chain``, ``process`` and ``play`` raise ``RuntimeStateError``."""
        chains, self._chains = self._chains, {}
        for chain in chains.values():
            for stage in chain.stages:
                stage.close()
        if self._runtime is not None and self._owns_runtime:
            self._runtime.shutdown()
        self._runtime = None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
