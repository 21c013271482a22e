"""``stellatune decode FILE --out OUT.wav``: decode a file with the installed decoder plugins."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import soundfile as sf

from ..errors import RuntimeStateError, StellatuneError
from ..executor import (
    ComponentExecutor,
    DecoderInfo,
    DecoderSession,
    FileHostStream,
    decoder_candidates,
    open_decoder,
)
from . import EXIT_OK
from .context import add_plugins_dir_option, open_runtime

__all__ = ["register"]

READ_FRAMES = 8192
SUBTYPES = ("FLOAT", "PCM_16", "PCM_24", "PCM_32")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``decode`` command."""
    p = subparsers.add_parser("decode", help="decode an audio file to WAV with the installed decoder plugins")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--out", type=Path, required=True, metavar="OUT.wav")
    p.add_argument("--subtype", choices=SUBTYPES, default="FLOAT", help="sample format of OUT (default FLOAT)")
    add_plugins_dir_option(p)
    p.set_defaults(func=cmd_decode)


def cmd_decode(args: argparse.Namespace) -> int:
    source: Path = args.file
    if not source.is_file():
        raise StellatuneError(f"{source} is not a file")
    with open_runtime(args) as runtime:
        executor = runtime.host
        if not isinstance(executor, ComponentExecutor):
            raise RuntimeStateError("decoding needs the component executor as the runtime's host")
        runtime.sync_plugins()
        ext = source.suffix
        candidates = decoder_candidates(runtime, ext, local_file=True)
        session, chosen = open_decoder(executor, candidates, lambda: FileHostStream(source), ext)
        with session:
            info = session.info()
            frames = _decode_to_wav(session, info, args.out, args.subtype)
    seconds = frames / info.sample_rate
    print(
        f"{args.out}: {frames} frames ({seconds:.2f} s), {info.sample_rate} Hz, {info.channels} ch, "
        f"decoded by {chosen.plugin_id}/{chosen.type_id}"
    )
    return EXIT_OK


def _decode_to_wav(session: DecoderSession, info: DecoderInfo, out: Path, subtype: str) -> int:
    """Decode the rest of ``session`` into ``out``; returns the frame count.

    The WAV is written beside ``out`` and renamed over it at the end, so a plugin that fails
    mid-track never leaves a truncated file, least of all in place of an existing one.
    """
    partial = out.with_name(f".{out.name}.partial")
    frames = 0
    try:
        with sf.SoundFile(
            partial, "w", samplerate=info.sample_rate, channels=info.channels, subtype=subtype, format="WAV"
        ) as wav:
            for block in session.pcm_blocks(READ_FRAMES):
                wav.write(block)
                frames += len(block)
        os.replace(partial, out)
    except (OSError, sf.SoundFileError) as exc:
        raise StellatuneError(f"cannot write {out}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return frames
