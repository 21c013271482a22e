"""Where a :class:`~stellatune.compose.player.Player` sends its audio: the output spec, parsed.

``None`` (the default PortAudio device), a device name or index, ``"null"`` (discarded, paced by
the engine clock), ``"file:PATH.wav"`` (float32 WAV written by a Python thread from the blocks
the driver rendered; the driver itself does no I/O), ``"sink:PLUGIN_ID:TYPE_ID[:CONFIG_JSON]"``
(an output-sink plugin, :func:`open_sink`: the config's ``"target"`` key, if any, names the
target; the rest is the sink's config).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import EngineError

__all__ = ["OutputSpec", "parse_output", "FileWriter", "SinkOutput", "negotiate_sink", "open_sink"]


@dataclass(frozen=True)
class OutputSpec:
    kind: str  # "device", "null", "file", "sink"
    device: Union[str, int, None] = None
    path: Optional[Path] = None
    plugin_id: str = ""
    type_id: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_clock(self) -> bool:
        """Paced by the engine clock (no PortAudio)."""
        return self.kind in ("null", "file", "sink")


def parse_output(output: Union[str, int, None]) -> OutputSpec:
    if output is None or isinstance(output, int):
        return OutputSpec("device", device=output)
    if not isinstance(output, str) or not output.strip():
        raise EngineError(
            f"output must be None, a device name or index, 'null', 'file:PATH' or 'sink:...', got {output!r}"
        )
    if output == "null":
        return OutputSpec("null")
    if output.startswith("file:"):
        path = output[len("file:") :]
        if not path:
            raise EngineError("file: output needs a path (file:PATH.wav)")
        return OutputSpec("file", path=Path(path))
    if output.startswith("sink:"):
        parts = output[len("sink:") :].split(":", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise EngineError(f"{output!r}: expected sink:PLUGIN_ID:TYPE_ID[:CONFIG_JSON]")
        config: Any = {}
        if len(parts) == 3 and parts[2].strip():
            try:
                config = json.loads(parts[2])
            except ValueError as e:
                raise EngineError(f"{output!r}: config is not valid JSON: {e}") from e
        return OutputSpec("sink", plugin_id=parts[0], type_id=parts[1], config=dict(config))
    return OutputSpec("device", device=output)


class FileWriter:
    """Drains the driver's output ring into a float32 WAV on its own thread."""

    def __init__(self, path: Path, sample_rate: int, channels: int, read_output: Any):
        import soundfile

        try:
            self._file = soundfile.SoundFile(str(path), "w", samplerate=sample_rate, channels=channels, subtype="FLOAT")
        except (soundfile.LibsndfileError, RuntimeError, ValueError, OSError) as e:
            # e.g. a directory that is not there, or a format that cannot hold float samples
            raise EngineError(f"cannot write {path}: {e}") from e
        self._read = read_output
        self._stop = threading.Event()
        self.frames = 0
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="stellatune-file-output", daemon=True)
        self._thread.start()

    def _drain(self) -> int:
        block = self._read(1 << 14)
        if block is not None and len(block):
            self._file.write(block)
            self.frames += len(block)
            return len(block)
        return 0

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._drain():
                    self._stop.wait(0.005)
        except BaseException as e:  # noqa: BLE001 (reported by close())
            self.error = e

    def close(self) -> None:
        """Stop the thread, write what is left (call after the driver stopped), close the file."""
        self._stop.set()
        self._thread.join()
        try:
            while self.error is None and self._drain():
                pass
        finally:
            self._file.close()


@dataclass
class SinkOutput:
    """An opened ``sink:`` output: the session's stage (last in every chain) and what was
    negotiated. ``stage.route`` says whether it runs on the hot path or the component path."""

    spec: OutputSpec
    target: Any
    session: Any
    stage: Any
    sample_rate: int
    channels: int
    chunk_frames: int


def _sink_target(runtime: Any, spec: OutputSpec) -> tuple[Any, dict[str, Any]]:
    config = dict(spec.config)
    target = config.pop("target", None)
    if target is None:
        targets = runtime.host.output_sink(spec.plugin_id, spec.type_id).list_targets()
        if not isinstance(targets, list) or not targets:
            raise EngineError(f"{spec.plugin_id}/{spec.type_id}: the sink lists no targets")
        target = targets[0]
        if isinstance(target, dict) and set(target) <= {"id", "name"} and "id" in target:
            target = {"id": target["id"]}
    return target, config


def negotiate_sink(runtime: Any, spec: OutputSpec, rate: int, channels: int) -> tuple[int, int, int]:
    """The output format the sink asks for (``negotiate-spec``): (rate, channels, chunk frames).
    Its rate is taken unless it prefers the track's; the player then resamples to it."""
    from ..executor import AudioSpec
    from .stages import _active_capability

    _active_capability(runtime, spec.plugin_id, "output_sink", spec.type_id)
    target, _ = _sink_target(runtime, spec)
    got = runtime.host.output_sink(spec.plugin_id, spec.type_id).negotiate_spec(target, AudioSpec(rate, channels))
    out_rate = rate if got.prefer_track_rate else got.spec.sample_rate
    return int(out_rate), int(got.spec.channels or channels), int(got.preferred_chunk_frames)


def open_sink(runtime: Any, spec: OutputSpec, rate: int, channels: int, chunk_frames: int = 0) -> SinkOutput:
    """Open the session on its target with the negotiated format and make its stage: the core
    module when the session offers a hot path, else the component path (``write``)."""
    from ..abi import Role
    from ..executor import AudioSpec
    from .stages import _active_capability, _stage_over, parse_config

    where = f"{spec.plugin_id}/{spec.type_id}"
    descriptor = _active_capability(runtime, spec.plugin_id, "output_sink", spec.type_id)
    target, user = _sink_target(runtime, spec)
    defaults = parse_config(descriptor.default_config_json, f"{where} default config")
    aspec = AudioSpec(rate, channels)
    session = runtime.host.output_sink(spec.plugin_id, spec.type_id).open(
        target if isinstance(target, str) else json.dumps(target), aspec, json.dumps({**defaults, **user})
    )
    stage = _stage_over(
        runtime,
        spec.plugin_id,
        where,
        session,
        Role.OUTPUT_SINK,
        session.write,
        session.reset,
        defaults,
        user,
        aspec,
        False,
        None,
    )
    return SinkOutput(spec, target, session, stage, rate, channels, chunk_frames)
