"""Sources for the engine from the plugins: a file decoded by the best decoder plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from stellatune.engine import BlockSource
from stellatune.executor import ComponentExecutor, FileHostStream, decoder_candidates, open_decoder
from stellatune.runtime import WasmPluginRuntime

from .stages import closer

__all__ = ["plugin_decoded_source", "DECODE_FRAMES"]

#: Frames per block read from a decoder plugin (about 43 ms at 48 kHz).
DECODE_FRAMES = 2048


def plugin_decoded_source(
    runtime: WasmPluginRuntime, executor: ComponentExecutor, path: Union[str, Path], block_frames: int = DECODE_FRAMES
) -> BlockSource:
    """The file ``path`` decoded by the best active decoder plugin (ranked by extension, each
    candidate tried until one opens), as a :class:`BlockSource` for ``Chain.play``.

    The session opens here, so its rate and channels are known; the blocks are read on whatever
    thread iterates them (the feeder, in playback). ``label`` is ``plugin_id/type_id``; ``close``
    closes the session. Raises ``PluginError(unsupported)`` when no decoder opens the file.
    """
    path = Path(path)
    ext = path.suffix.lstrip(".").lower() or None
    candidates = decoder_candidates(runtime, ext, local_file=True)
    session, chosen = open_decoder(executor, candidates, lambda: FileHostStream(path), ext)
    label = f"{chosen.plugin_id}/{chosen.type_id}"
    try:
        info = session.info()
    except BaseException:
        closer(session)()
        raise
    return BlockSource(
        session.pcm_blocks(block_frames), info.sample_rate, info.channels, label=label, close=closer(session)
    )
