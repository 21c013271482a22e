"""wav-decoder: RIFF/WAVE PCM (16/24/32-bit integer, 32/64-bit float) read through a host stream.

The host opens the bytes (file, HTTP, a source's passthrough stream) and hands the plugin a
``host-stream-handle``; the plugin only parses and converts. Tags come from a LIST/INFO chunk.
"""
import array
import struct
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import decoder
from wit_world.imports import common

FORMAT_PCM = 1
FORMAT_FLOAT = 3
FORMAT_EXTENSIBLE = 0xFFFE
INFO_TAGS = {b"INAM": "title", b"IART": "artist", b"IPRD": "album", b"ICMT": "comment", b"IGNR": "genre"}


def log(text):
    print(f"wav-decoder: {text}", file=sys.stderr, flush=True)


def invalid(message):
    return Err(common.PluginError_InvalidArg(message))


def read_exact(stream, n):
    out = bytearray()
    while len(out) < n:
        chunk = stream.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


class WavFormat:
    def __init__(self, fmt):
        if len(fmt) < 16:
            raise invalid("fmt chunk is too short")
        tag, self.channels, self.sample_rate, _, self.block_align, self.bits = struct.unpack("<HHIIHH", fmt[:16])
        if tag == FORMAT_EXTENSIBLE and len(fmt) >= 26:
            tag = struct.unpack("<H", fmt[24:26])[0]
        self.is_float = tag == FORMAT_FLOAT
        if tag not in (FORMAT_PCM, FORMAT_FLOAT):
            raise Err(common.PluginError_Unsupported(f"WAV format tag {tag:#x} is not PCM or float"))
        if (self.is_float and self.bits not in (32, 64)) or (not self.is_float and self.bits not in (16, 24, 32)):
            raise Err(common.PluginError_Unsupported(f"{self.bits}-bit {'float' if self.is_float else 'PCM'}"))
        if self.channels == 0 or self.sample_rate == 0 or self.block_align != self.channels * self.bits // 8:
            raise invalid("inconsistent fmt chunk")

    def to_f32(self, data):
        """Little-endian samples of this format → interleaved float32 little-endian bytes."""
        if self.is_float and self.bits == 32:
            return data
        if self.is_float:
            wide = array.array("d")
            wide.frombytes(data)
            return array.array("f", wide).tobytes()
        if self.bits == 16:
            ints = array.array("h")
            ints.frombytes(data)
            scale = 1.0 / 32768.0
        elif self.bits == 32:
            ints = array.array("i")
            ints.frombytes(data)
            scale = 1.0 / 2147483648.0
        else:
            ints = [int.from_bytes(data[i:i + 3], "little", signed=True) for i in range(0, len(data), 3)]
            scale = 1.0 / 8388608.0
        return array.array("f", (s * scale for s in ints)).tobytes()


class Session(decoder.Session):
    def __init__(self, stream, ext_hint):
        self.stream = stream
        self.fmt = None
        self.tags = {}
        self.data_start = 0
        self.data_frames = 0
        self.position = 0
        self._parse()

    def _parse(self):
        head = read_exact(self.stream, 12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise invalid("not a RIFF/WAVE stream")
        offset = 12
        data_bytes = None
        while True:
            header = read_exact(self.stream, 8)
            if len(header) < 8:
                break
            cid, size = header[:4], struct.unpack("<I", header[4:])[0]
            offset += 8
            if cid == b"data":
                self.data_start, data_bytes = offset, size
                if self.fmt is not None:
                    break  # the data chunk can be huge: never read past it to look for more tags
            elif cid in (b"fmt ", b"LIST"):
                body = read_exact(self.stream, size)
                if cid == b"fmt ":
                    self.fmt = WavFormat(body)
                else:
                    self._parse_info(body)
            offset += size + (size & 1)
            self.stream.seek(offset, common.SeekWhence.START)
        if self.fmt is None or data_bytes is None:
            raise invalid("WAV stream has no fmt or no data chunk")
        try:
            total = self.stream.size()
            data_bytes = min(data_bytes, max(0, total - self.data_start))
        except Err:
            pass  # a stream without a known size: trust the header
        self.data_frames = data_bytes // self.fmt.block_align
        self.stream.seek(self.data_start, common.SeekWhence.START)
        log(f"opened {self.fmt.channels} ch, {self.fmt.sample_rate} Hz, {self.fmt.bits}-bit, {self.data_frames} frames")

    def _parse_info(self, body):
        if body[:4] != b"INFO":
            return
        pos = 4
        while pos + 8 <= len(body):
            cid, size = body[pos:pos + 4], struct.unpack("<I", body[pos + 4:pos + 8])[0]
            value = body[pos + 8:pos + 8 + size].split(b"\0", 1)[0].decode("utf-8", "replace").strip()
            if cid in INFO_TAGS and value:
                self.tags[INFO_TAGS[cid]] = value
            pos += 8 + size + (size & 1)

    def _duration_ms(self):
        return self.data_frames * 1000 // self.fmt.sample_rate

    def info(self):
        return common.DecoderInfo(self.fmt.sample_rate, self.fmt.channels, self._duration_ms(), True, 0, 0)

    def metadata(self):
        t = self.tags
        tags = common.AudioTags(
            title=t.get("title"), album=t.get("album"), artists=[t["artist"]] if "artist" in t else [],
            album_artists=[], genres=[t["genre"]] if "genre" in t else [], track_number=None,
            track_total=None, disc_number=None, disc_total=None, year=None, comment=t.get("comment"))
        fmt = common.EncodedAudioFormat(
            codec="pcm_f" + str(self.fmt.bits) if self.fmt.is_float else "pcm_s" + str(self.fmt.bits),
            sample_rate=self.fmt.sample_rate, channels=self.fmt.channels,
            bitrate_kbps=self.fmt.sample_rate * self.fmt.block_align * 8 // 1000, container="wav")
        extras = [common.MetadataEntry("bits-per-sample", common.MetadataValue_Uint32(self.fmt.bits))]
        return common.MediaMetadata(tags, self._duration_ms(), fmt, extras)

    def read_pcm_f32(self, max_frames):
        frames = min(max_frames, self.data_frames - self.position)
        if frames <= 0:
            return common.PcmF32Chunk(b"", 0, True)
        raw = read_exact(self.stream, frames * self.fmt.block_align)
        frames = len(raw) // self.fmt.block_align
        self.position += frames
        data = self.fmt.to_f32(raw[:frames * self.fmt.block_align])
        return common.PcmF32Chunk(data, frames, self.position >= self.data_frames or frames == 0)

    def seek_ms(self, position_ms):
        frame = min(self.data_frames, position_ms * self.fmt.sample_rate // 1000)
        self.stream.seek(self.data_start + frame * self.fmt.block_align, common.SeekWhence.START)
        self.position = frame

    def plan_config_update_json(self, new_config_json):
        return common.ConfigUpdatePlan(common.ConfigUpdateMode.HOT_APPLY, None)

    def apply_config_update_json(self, new_config_json):
        pass  # nothing to configure

    def export_state_json(self):
        return None

    def import_state_json(self, state_json):
        pass

    def close(self):
        self.stream.close()
        log("session closed")


class Lifecycle(exports.Lifecycle):
    def on_enable(self):
        log("on-enable")

    def on_disable(self, reason):
        log(f"on-disable {reason.name.lower().replace('_', '-')}")


class Decoder(exports.Decoder):
    def open(self, input, ext_hint):
        return Session(input, ext_hint)
