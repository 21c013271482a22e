"""The real-time engine: hot-path core modules, the DSP chain and audio output.

``HotPathStage`` loads a core module (wasm, or the native build of the same kernel);
``ComponentStage`` wraps a Python block call (the component-path fallback); both satisfy the
``Stage`` protocol (``stage.py``: its surface, refusal after close, unclosed warning); ``Chain`` chains
stages and runs them offline (``process``) or live (``play``) through the
compiled core (``_core.pyx`` + ``csrc/``), with no Python on the audio thread.
"""

from stellatune.engine.chain import Chain
from stellatune.engine.component import ComponentStage
from stellatune.engine.playback import ENGINE_CLOCK, BlockSource, PlaybackHandle, file_source, list_devices
from stellatune.engine.stage import Stage
from stellatune.engine.stages import HotPathStage
from stellatune.engine.stats import PlaybackStats, StageFault, StageStats

__all__ = [
    "ENGINE_CLOCK",
    "BlockSource",
    "ComponentStage",
    "HotPathStage",
    "Chain",
    "PlaybackHandle",
    "PlaybackStats",
    "Stage",
    "StageFault",
    "StageStats",
    "file_source",
    "list_devices",
]
