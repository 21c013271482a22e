"""Library import at catalog scale (docs/library.md): find audio files (scan), analyse each
(analyse: decode with the decoder plugins or soundfile, tags, loudness, lyrics), spread the work
over Dask workers (distribute), and keep the results in an SQLite catalog (catalog).

``stellatune library import`` is :func:`import_library`; ``Catalog`` reads what it wrote.
"""

from .analyse import DECODER_MODES, ERROR_CODES, Analyser, Loudness, TrackResult, WorkItem, measure_loudness
from .catalog import SCHEMA_VERSION, Catalog, parse_where
from .importer import ImportReport, import_library
from .scan import AUDIO_EXTENSIONS, FoundFile, scan

__all__ = [
    "DECODER_MODES",
    "ERROR_CODES",
    "Analyser",
    "Loudness",
    "TrackResult",
    "WorkItem",
    "measure_loudness",
    "SCHEMA_VERSION",
    "Catalog",
    "parse_where",
    "ImportReport",
    "import_library",
    "AUDIO_EXTENSIONS",
    "FoundFile",
    "scan",
]
