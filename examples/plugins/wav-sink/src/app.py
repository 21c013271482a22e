"""wav-sink: an output sink that records what it is given to a float32 WAV file.

Targets: ``{"id": "file", "path": "/abs/out.wav"}`` writes through the plugin's sidecar
``bin/wav-writer`` (a component has no filesystem of its own), holding the host lock
``file:<path>`` while open so two sessions never write one file; ``{"id": "null"}`` accepts and
discards. ``write`` accepts at most ``max_chunk_frames`` per call, and no more than fits in the
audio ring, so hosts must handle partial writes, as with a real device.

The sidecar gets commands over stdio (the control channel) and the samples over a
shared-memory ring (the ``audio`` data channel): the ring is a copy into shared memory with no
system call per chunk but a doorbell, where a pipe would copy through the kernel twice.
"""
import json
import struct
import sys
import time

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import output_sink
from wit_world.imports import common, sidecar

TARGETS = [{"id": "file", "name": "WAV file (float32)"}, {"id": "null", "name": "Discard"}]
MAX_CHANNELS = 8
ACK_TIMEOUT_MS = 5000
LOCK_TIMEOUT_MS = 200
RING_BYTES = 1 << 20  # about 2.7 s of 48 kHz stereo float32
RING_RETRY_S = 0.001


def log(text):
    print(f"wav-sink: {text}", file=sys.stderr, flush=True)


def invalid(message):
    return Err(common.PluginError_InvalidArg(message))


def frame(kind, payload=b""):
    return kind + struct.pack("<I", len(payload)) + payload


def parse_target(target_json):
    try:
        target = json.loads(target_json)
    except ValueError as e:
        raise invalid(f"target is not JSON: {e}")
    if not isinstance(target, dict) or target.get("id") not in ("file", "null"):
        raise Err(common.PluginError_NotFound(f"unknown target {target_json}"))
    if target["id"] == "file" and not str(target.get("path", "")).startswith("/"):
        raise invalid("a file target needs an absolute 'path'")
    return target


class Session(output_sink.Session):
    def __init__(self):
        self.max_chunk_frames = 4096
        self.spec = None
        self.process = None
        self.channel = None
        self.audio = None
        self.guard = None
        self.frames_written = 0
        self.bytes_sent = 0  # audio bytes handed to the ring, the last frame's tail included
        self.tail = b""  # the part of an accepted frame the ring had no room for yet

    def list_targets_json(self):
        return json.dumps(TARGETS)

    def negotiate_spec_json(self, target_json, desired):
        parse_target(target_json)
        channels = min(max(1, desired.channels), MAX_CHANNELS)
        # A file takes any rate, so the host should not resample: prefer the track's rate.
        return output_sink.NegotiatedSpec(common.AudioSpec(desired.sample_rate, channels), self.max_chunk_frames, True)

    def describe_hot_path(self, spec):
        return None

    def open_json(self, target_json, spec):
        target = parse_target(target_json)
        if spec.channels == 0 or spec.sample_rate == 0:
            raise invalid("sample rate and channels must be non-zero")
        self._close_writer()
        self.spec = spec
        if target["id"] == "file":
            self.guard = sidecar.lock(f"file:{target['path']}", LOCK_TIMEOUT_MS)  # Err(timeout) if taken
            stdio = sidecar.TransportOption(sidecar.TransportKind.STDIO, 0, None)
            ring = sidecar.TransportOption(sidecar.TransportKind.SHARED_MEMORY_RING, 0, RING_BYTES)
            self.process = sidecar.launch(sidecar.LaunchSpec(
                sidecar.LaunchScope.INSTANCE, "bin/wav-writer", [], [stdio], [ring], []))
            self.channel = self.process.open_control()
            self.audio = self.process.open_data("audio", [ring])
            log(f"audio over {self.audio.transport().name.lower().replace('_', '-')}")
            self.bytes_sent, self.tail = 0, b""
            header = {"path": target["path"], "sample_rate": spec.sample_rate, "channels": spec.channels}
            self.channel.write(frame(b"H", json.dumps(header).encode()))
        log(f"opened {target['id']} {spec.sample_rate} Hz x{spec.channels}")

    def write_interleaved_f32(self, channels, interleaved_f32le):
        if self.spec is None:
            raise Err(common.PluginError_Unsupported("write before open"))
        if channels != self.spec.channels:
            raise invalid(f"opened with {self.spec.channels} channels, got {channels}")
        frame_bytes = 4 * channels
        frames = min(len(interleaved_f32le) // frame_bytes, self.max_chunk_frames)
        if self.audio is not None and frames:
            frames = self._send_audio(interleaved_f32le[:frames * frame_bytes], frame_bytes)
        self.frames_written += frames
        return frames

    def _send_audio(self, data, frame_bytes):
        """Put what fits in the ring; returns the frames accepted. The ring takes bytes, not
        frames: a frame it took only part of counts as accepted, its rest waits in ``tail``."""
        if self.tail:
            self.tail = self.tail[self.audio.write(self.tail):]
            if self.tail:
                return 0
        taken = self.audio.write(data)
        frames = -(-taken // frame_bytes)
        self.tail = data[taken:frames * frame_bytes]
        self.bytes_sent += frames * frame_bytes
        return frames

    def _drain_tail(self):
        deadline = time.monotonic() + ACK_TIMEOUT_MS / 1000
        while self.tail:
            self.tail = self.tail[self.audio.write(self.tail):]
            if self.tail:
                if time.monotonic() > deadline:
                    raise Err(common.PluginError_Timeout("wav-writer stopped reading audio"))
                time.sleep(RING_RETRY_S)

    def query_status(self):
        return output_sink.RuntimeStatus(0, self.spec is not None)

    def _sync(self, kind):
        """Tell the writer how many audio bytes were sent and wait until it has them all."""
        self._drain_tail()
        self.channel.write(frame(kind, struct.pack("<Q", self.bytes_sent)))
        head = self._read_exact(5)
        if head[:1] != b"K":
            raise Err(common.PluginError_Io("wav-writer did not acknowledge"))
        return json.loads(self._read_exact(struct.unpack("<I", head[1:])[0]))

    def _read_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.channel.read(n - len(data), ACK_TIMEOUT_MS)
            if not chunk:
                raise Err(common.PluginError_Io("wav-writer exited before answering"))
            data += chunk
        return data

    def flush(self):
        if self.channel is not None:
            self._sync(b"F")

    def reset(self):
        pass  # accepted frames belong to the recording (in the ring or the tail): nothing to drop

    def plan_config_update_json(self, new_config_json):
        cfg = self._config(new_config_json)
        if self.spec is not None and cfg.get("max_chunk_frames", self.max_chunk_frames) != self.max_chunk_frames:
            return common.ConfigUpdatePlan(common.ConfigUpdateMode.RECREATE, "chunk size is fixed while open")
        return common.ConfigUpdatePlan(common.ConfigUpdateMode.HOT_APPLY, None)

    def _config(self, text):
        try:
            cfg = json.loads(text)
        except ValueError as e:
            raise invalid(f"config is not JSON: {e}")
        chunk = cfg.get("max_chunk_frames", 4096)
        if not isinstance(chunk, int) or chunk < 1:
            raise invalid("max_chunk_frames must be a positive integer")
        return cfg

    def apply_config_update_json(self, new_config_json):
        self.max_chunk_frames = self._config(new_config_json).get("max_chunk_frames", 4096)

    def export_state_json(self):
        return json.dumps({"frames_written": self.frames_written})

    def import_state_json(self, state_json):
        self.frames_written = int(json.loads(state_json).get("frames_written", 0))

    def _close_writer(self):
        try:
            if self.channel is not None:
                report = self._sync(b"E")
                log(f"wav-writer read {report['audio_bytes']} bytes over {report['audio_transport']}")
                self.process.wait_exit(ACK_TIMEOUT_MS)
        finally:
            self.channel = None
            self.audio = None
            self.process = None
            if self.guard is not None:
                self.guard.unlock()
                self.guard = None

    def close(self):
        try:
            self._close_writer()
        except Err as e:
            # close() has no error result: letting this escape would trap and lose the instance.
            log(f"closing the writer failed: {e.value}")
        self.spec = None
        log(f"closed after {self.frames_written} frames")


class Lifecycle(exports.Lifecycle):
    def on_enable(self):
        log("on-enable")

    def on_disable(self, reason):
        log(f"on-disable {reason.name.lower().replace('_', '-')}")


class OutputSink(exports.OutputSink):
    def create(self):
        return Session()
