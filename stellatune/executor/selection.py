"""Picking a decoder for a track: the runtime's ranked candidates, tried in order until one opens.

The runtime ranks active decoders by extension score (exact rule, else wildcard; 0 drops a
decoder; ties by plugin id, then type id). A candidate "opens" when ``open`` succeeds and
``info`` reports a non-zero rate and channel count. Local files no decoder scores fall back to
every decoder; streams from sources get no such fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Optional

from ..errors import PluginError, PluginErrorCode, StellatuneError
from ..host.stream import HostStream
from .capabilities import DecoderSession
from .descriptors import CapabilityInfo, DecoderRanking

if TYPE_CHECKING:
    from .executor import ComponentExecutor

__all__ = ["decoder_candidates", "open_decoder"]


def decoder_candidates(runtime: DecoderRanking, ext: Optional[str], *, local_file: bool) -> list[CapabilityInfo]:
    """The decoders to try for ``ext``, best first (every decoder as the local-file fallback)."""
    ranked = list(runtime.decoder_candidates(ext))
    if not ranked and local_file:
        ranked = list(runtime.all_decoders())
    return ranked


def open_decoder(
    executor: ComponentExecutor,
    candidates: Sequence[CapabilityInfo],
    open_stream: Callable[[], HostStream],
    ext_hint: Optional[str],
) -> tuple[DecoderSession, CapabilityInfo]:
    """Try ``candidates`` in order, each on a fresh stream; return the first session that opens.

    Raises PluginError(unsupported) naming every candidate's failure when none opens.
    """
    failures: list[str] = []
    hint = (ext_hint or "").strip().lstrip(".").lower() or None
    for descriptor in candidates:
        label = f"{descriptor.plugin_id}/{descriptor.type_id}"
        try:
            session = executor.decoder(descriptor.plugin_id, descriptor.type_id).open(open_stream(), hint)
        except StellatuneError as e:
            failures.append(f"{label}: {e}")
            continue
        try:
            info = session.info()
        except StellatuneError as e:
            session.close()
            failures.append(f"{label}: {e}")
            continue
        if info.sample_rate > 0 and info.channels > 0:
            return session, descriptor
        session.close()
        failures.append(f"{label}: reported {info.sample_rate} Hz, {info.channels} channels")
    detail = "; ".join(failures) if failures else "no decoder plugin is active for it"
    raise PluginError(PluginErrorCode.UNSUPPORTED, f"no decoder could open the track ({detail})")
