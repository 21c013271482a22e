"""``stellatune decode FILE --out OUT.wav``: decode a file with the installed decoder plugins."""
from __future__ import annotations

import argparse
from pathlib import Path

import soundfile as sf

from ..errors import RuntimeStateError
from ..executor import ComponentExecutor, FileHostStream, decoder_candidates, open_decoder
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
        raise RuntimeStateError(f"{source} is not a file")
    with open_runtime(args) as runtime:
        executor = runtime.host
        if not isinstance(executor, ComponentExecutor):
            raise RuntimeStateError("decoding needs the component executor as the runtime's host")
        runtime.sync_plugins()
        ext = source.suffix
        candidates = decoder_candidates(runtime, ext, local_file=True)
        session, chosen = open_decoder(executor, candidates, lambda: FileHostStream(source), ext)
        frames = 0
        with session:
            info = session.info()
            with sf.SoundFile(args.out, "w", samplerate=info.sample_rate, channels=info.channels,
                              subtype=args.subtype, format="WAV") as out:
                while True:
                    chunk = session.read_pcm_f32(READ_FRAMES)
                    out.write(chunk.frames)
                    frames += len(chunk.frames)
                    if chunk.eof or not len(chunk.frames):
                        break
    seconds = frames / info.sample_rate
    print(f"{args.out}: {frames} frames ({seconds:.2f} s), {info.sample_rate} Hz, {info.channels} ch, "
          f"decoded by {chosen.plugin_id}/{chosen.type_id}")
    return EXIT_OK
