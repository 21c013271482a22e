"""Hot-path core-module ABI v1: the WIT ``hot-path`` records and the byte-level constants.

Pure Python (no wasmtime), shared by the component executor, which receives a
``core-module-spec`` from ``describe-hot-path``, and by the engine, which loads the module.
The byte layout is the contract in docs/hot-path-abi.md and csrc/../sdk/include/stellatune_hotpath.h.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Optional

ABI_VERSION = 1
INIT_ARGS_SIZE = 44
#: Bytes just before ``in_offset`` that belong to the host: init args, out-ctx, out-frames, out-flags.
HOST_SCRATCH_SIZE = 64
SCRATCH_INIT_ARGS = 0
SCRATCH_OUT_CTX = 48
SCRATCH_OUT_FRAMES = 52
SCRATCH_OUT_FLAGS = 56

#: Native baseline only: ``void *st_hot_native_memory(void)`` gives the base every offset is relative to.
NATIVE_MEMORY_EXPORT = "st_hot_native_memory"

# The C SDK's fixed memory map (stellatune/sdk/include/stellatune_sdk.h). Every SDK-built core
# module, and the native .so built from the same source, uses these offsets.
SDK_MAX_FRAMES = 4096
SDK_MAX_CHANNELS = 8
SDK_MAX_INSTANCES = 4
SDK_MAX_SAMPLE_RATE = 768000
SDK_NAMES_OFFSET = 1024
SDK_SCRATCH_OFFSET = 1984
SDK_IN_OFFSET = 2048
SDK_OUT_OFFSET = 133120
SDK_ARENA_END = 264192

DEFAULT_MEMORY_EXPORT = "memory"
DEFAULT_INIT_EXPORT = "st_hot_init"
DEFAULT_PROCESS_EXPORT = "st_hot_process"
DEFAULT_RESET_EXPORT = "st_hot_reset"
DEFAULT_DROP_EXPORT = "st_hot_drop"
SET_PARAM_EXPORT = "st_hot_set_param"
PARAM_NAMES_EXPORT = "st_hot_param_names"


class Role(enum.IntEnum):
    """What a core module does with a block (``st_hot_init_args.role``)."""

    DSP_TRANSFORM = 1
    OUTPUT_SINK = 2

    @property
    def wit_name(self) -> str:
        """The WIT enum case (``dsp-transform``, ``output-sink``)."""
        return self.name.lower().replace("_", "-")


class SampleFormat(enum.IntEnum):
    """Sample encoding of the audio regions (``st_hot_init_args.sample_format``)."""

    F32LE = 1
    I16LE = 2
    I32LE = 3

    @property
    def bytes_per_sample(self) -> int:
        """2 for i16le, else 4."""
        return 2 if self is SampleFormat.I16LE else 4

    @property
    def wit_name(self) -> str:
        """The WIT enum case (``f32le``, ...)."""
        return self.name.lower()


class Flag(enum.IntFlag):
    """Bits of the flags word the guest writes after ``process``."""

    EOF = 1 << 0
    DRAINED = 1 << 1
    NEED_RESET = 1 << 2
    SOFT_ERROR = 1 << 3


class ErrorCode(enum.IntEnum):
    """Non-zero returns of ``init``/``process``/``reset`` (0 is ok)."""

    INVALID_ARG = 1
    UNSUPPORTED = 2
    IO = 3
    INTERNAL = 4
    WOULD_BLOCK = 5
    NOT_READY = 6


@dataclass(frozen=True)
class BufferLayout:
    """WIT ``hot-path.buffer-layout``: where the guest keeps its audio regions."""

    in_offset: int
    out_offset: Optional[int]
    max_frames: int
    channels: int
    sample_format: SampleFormat = SampleFormat.F32LE
    interleaved: bool = True

    @property
    def buffer_bytes(self) -> int:
        """Size of *each* region (in and out)."""
        return self.max_frames * self.channels * self.sample_format.bytes_per_sample


@dataclass(frozen=True)
class CoreModuleSpec:
    """WIT ``hot-path.core-module-spec``: which core module to load and how to drive it."""

    role: Role
    wasm_rel_path: str
    buffer: BufferLayout
    abi_version: int = ABI_VERSION
    memory_export: str = DEFAULT_MEMORY_EXPORT
    init_export: str = DEFAULT_INIT_EXPORT
    process_export: str = DEFAULT_PROCESS_EXPORT
    reset_export: Optional[str] = DEFAULT_RESET_EXPORT
    drop_export: Optional[str] = DEFAULT_DROP_EXPORT

    def problems(self) -> list[str]:
        """Every reason this spec cannot be driven by ABI v1 (empty when it can)."""
        out: list[str] = []
        if self.abi_version != ABI_VERSION:
            out.append(f"abi-version {self.abi_version} is not {ABI_VERSION}")
        for name in ("wasm_rel_path", "memory_export", "init_export", "process_export"):
            if not getattr(self, name).strip():
                out.append(f"{name.replace('_', '-')} is blank")
        out += rel_path_problems(self.wasm_rel_path)
        b = self.buffer
        if b.max_frames <= 0:
            out.append("max-frames must be > 0")
        if b.channels <= 0:
            out.append("channels must be > 0")
        elif b.channels > 0xFFFF:  # a u16 in the WIT record and in st_hot_init_args
            out.append("channels must be at most 65535")
        if b.out_offset is not None and b.out_offset < 0:
            out.append("out-offset must be >= 0")
        if b.in_offset < HOST_SCRATCH_SIZE:
            out.append(f"in-offset must leave {HOST_SCRATCH_SIZE} host scratch bytes before it")
        if self.role is Role.DSP_TRANSFORM and b.out_offset is None:
            out.append("a dsp-transform needs out-offset")
        if b.out_offset is not None and b.max_frames > 0 and b.channels > 0:
            in_end = b.in_offset + b.buffer_bytes
            out_end = b.out_offset + b.buffer_bytes
            if b.out_offset < in_end and b.in_offset < out_end:
                out.append("in and out regions overlap")
            elif b.out_offset < b.in_offset and out_end > b.in_offset - HOST_SCRATCH_SIZE:
                out.append("out region overlaps the host scratch before in-offset")
        if b.in_offset % 4 or (b.out_offset or 0) % 4:
            out.append("in-offset and out-offset must be 4-byte aligned")
        if max(b.in_offset, b.out_offset or 0) + b.buffer_bytes > 0xFFFF_FFFF:
            out.append("regions end beyond the 32-bit address space")
        return out


def rel_path_problems(path: str) -> list[str]:
    """Why ``path`` is not a plain relative path inside a package (empty when it is one)."""
    if "\0" in path:
        return ["wasm-rel-path contains a NUL byte"]
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or ".." in parts or len(path) > 4096:
        return [f"wasm-rel-path {path!r} is not a relative path inside the package"]
    return []


def pack_init_args(
    role: Role,
    sample_rate: int,
    channels: int,
    max_frames: int,
    in_offset: int,
    out_offset: Optional[int],
    sample_format: SampleFormat = SampleFormat.F32LE,
) -> bytes:
    """The 44 bytes of ``st_hot_init_args`` the host writes at ``in_offset - 64`` before init."""
    buffer_bytes = max_frames * channels * sample_format.bytes_per_sample
    data = struct.pack(
        "<IIIHHIIIIIII",
        ABI_VERSION,
        int(role),
        sample_rate,
        channels,
        int(sample_format),
        max_frames,
        in_offset,
        out_offset or 0,
        buffer_bytes,
        0,
        0,
        0,
    )
    assert len(data) == INIT_ARGS_SIZE
    return data


def sdk_core_module_spec(wasm_rel_path: str, role: Role, channels: int) -> CoreModuleSpec:
    """The spec ``describe-hot-path`` of a C-SDK plugin returns for ``channels`` channels."""
    return CoreModuleSpec(
        role=role,
        wasm_rel_path=wasm_rel_path,
        buffer=BufferLayout(
            in_offset=SDK_IN_OFFSET,
            out_offset=SDK_OUT_OFFSET if role is Role.DSP_TRANSFORM else None,
            max_frames=SDK_MAX_FRAMES,
            channels=channels,
        ),
    )
