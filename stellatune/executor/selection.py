"""Picking a decoder for a track: rank by extension score, then try each until one opens.

The rules are the original runtime's: a candidate's score is its exact rule for the extension,
otherwise its wildcard; score 0 drops it; order is score descending, then plugin id, then type id.
A candidate "opens" when ``open`` succeeds and ``info`` reports a non-zero rate and channel count.
For local files with no scored candidate, every decoder is tried (sources get no such fallback).
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from ..errors import PluginError, PluginErrorCode, StellatuneError
from .capabilities import DecoderSession
from ..host.stream import HostStream

__all__ = ["normalize_ext", "decoder_score", "rank_decoders", "open_decoder"]


def normalize_ext(ext: Optional[str]) -> str:
    """``".FLAC "`` → ``"flac"``."""
    return (ext or "").strip().lstrip(".").lower()


def decoder_score(descriptor: Any, ext: str) -> int:
    """The descriptor's score for ``ext`` (exact rule, else wildcard)."""
    ext = normalize_ext(ext)
    for rule in getattr(descriptor, "decoder_ext_scores", None) or ():
        rule_ext = rule.ext if hasattr(rule, "ext") else rule[0]
        rule_score = rule.score if hasattr(rule, "score") else rule[1]
        if ext and normalize_ext(rule_ext) == ext:
            return int(rule_score)
    return int(getattr(descriptor, "decoder_wildcard_score", 0) or 0)


def rank_decoders(descriptors: Sequence[Any], ext: Optional[str], *, fallback_all: bool = False) -> list[Any]:
    """Decoder descriptors for ``ext``, best first; with ``fallback_all``, every decoder if none scores."""
    decoders = [d for d in descriptors if str(getattr(d.kind, "value", d.kind)) == "decoder"]
    scored = [(decoder_score(d, ext or ""), d) for d in decoders]
    ranked = [d for s, d in sorted(((s, d) for s, d in scored if s > 0),
                                   key=lambda sd: (-sd[0], sd[1].plugin_id, sd[1].type_id))]
    if not ranked and fallback_all:
        ranked = sorted(decoders, key=lambda d: (d.plugin_id, d.type_id))
    return ranked


def open_decoder(executor: Any, candidates: Sequence[Any], open_stream: Callable[[], HostStream],
                 ext_hint: Optional[str]) -> tuple[DecoderSession, Any]:
    """Try ``candidates`` in order, each on a fresh stream; return the first session that opens.

    Raises PluginError(unsupported) naming every candidate's failure when none opens.
    """
    failures: list[str] = []
    hint = normalize_ext(ext_hint) or None
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
