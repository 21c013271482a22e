"""The ``Stage`` protocol every pipeline stage satisfies, and the lifecycle both kinds share.

A stage is either a :class:`~stellatune.engine.HotPathStage` (a core module driven from C) or a
:class:`~stellatune.engine.ComponentStage` (a Python call per block). :class:`Chain`, playback
and the composition layer (``stellatune.compose``) code against :class:`Stage` only.

Lifecycle (:class:`StageLifecycle`, mixed into both kinds):

- ``close()`` is idempotent; afterwards every control call (``set_param``, ``configure``,
  ``bypass``, ``reset``, running in a chain) raises :class:`~stellatune.errors.RuntimeStateError`
  naming the stage, and never reaches the plugin. ``fault``, ``stats()`` and ``closed`` stay
  readable.
- A stage garbage-collected without ``close()`` emits ``ResourceWarning("unclosed <stage>")``,
  as Python's file objects do, and releases what needs no plugin code: a finalizer may run on
  any thread, at any allocation, so the module's ``drop`` and the component processor's close
  (plugin code, and the executor's locks) do not run there. Close stages explicitly.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Optional, Protocol, runtime_checkable

from stellatune.abi import Role
from stellatune.engine.stats import StageFault, StageStats
from stellatune.errors import EngineError, RuntimeStateError

__all__ = ["Stage", "StageLifecycle"]


class _Ticker(Protocol):
    """What the chain needs of a stage's epoch engine (``stages.HotPathEngine``)."""

    def ticking(self) -> AbstractContextManager[None]: ...

    def deadline_ticks(self, seconds: float) -> int: ...


@runtime_checkable
class Stage(Protocol):
    """What a pipeline stage offers: the surface :class:`~stellatune.engine.Chain`, playback
    and ``stellatune.compose`` use. Both :class:`~stellatune.engine.HotPathStage` and
    :class:`~stellatune.engine.ComponentStage` satisfy it (``isinstance(x, Stage)`` works)."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> Role: ...

    @property
    def route(self) -> str:
        """``hot-path``, ``native`` or ``component``."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def channels(self) -> int: ...

    @property
    def max_frames(self) -> int: ...

    @property
    def fallback_reason(self) -> Optional[str]:
        """Why the hot path was not used (None for a hot-path stage)."""

    @property
    def fault(self) -> Optional[StageFault]:
        """Why the engine bypassed the stage for good, or None while healthy."""

    @property
    def closed(self) -> bool: ...

    def stats(self) -> StageStats: ...

    def set_param(self, name: str, value: float) -> None: ...

    def configure(self, config: Mapping[str, Any]) -> None: ...

    def bypass(self, bypassed: bool = True) -> None: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...

    # --- engine hooks (Chain) ----------------------------------------------------------------

    @property
    def _engine(self) -> Optional[_Ticker]:
        """The epoch engine whose ticker guards the stage's calls (None: none needed)."""

    def _use_deadline(self, offline_ticks: Optional[int]) -> None: ...

    def _claim(self, place: object) -> None: ...

    def _unclaim(self, then: Optional[Callable[[], object]] = None) -> None: ...


class StageLifecycle:
    """Closed-state bookkeeping, refusal after close and the unclosed-stage warning.

    The owning class calls :meth:`_init_lifecycle` first in ``__init__``, :meth:`_check_open`
    at the top of every control call (and under ``_lock`` where the call reaches the plugin),
    :meth:`_begin_close` in ``close()``, and may override :meth:`_release_unclosed`.
    """

    name: str
    _lock: threading.Lock
    _live: Optional[object]
    _closed: bool

    def _init_lifecycle(self) -> None:
        self._lock = threading.Lock()
        self._live = None  # the pipeline running the stage (Chain: _claim / _unclaim)
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run (the stage then refuses every control call)."""
        return self._closed

    def _check_open(self, action: str) -> None:
        if self._closed:
            raise RuntimeStateError(f"{self.name}: cannot {action}: the stage is closed")

    def _claim(self, place: object) -> None:
        """Chain: the stage runs in ``place`` from now on (one pipeline at a time)."""
        with self._lock:
            if self._live is not None:
                raise EngineError(f"{self.name} is already running in another pipeline")
            self._check_open("run")
            self._live = place

    def _unclaim(self, then: Optional[Callable[[], object]] = None) -> None:
        """Chain: the pipeline stopped; ``then`` runs under the stage's lock, so no control call
        slips in between."""
        with self._lock:
            self._live = None
            if then is not None:
                then()

    def _begin_close(self) -> bool:
        """Mark the stage closed; False when it already was. Refused while a pipeline runs it."""
        with self._lock:
            if self._live is not None:
                raise EngineError(f"{self.name}: cannot close a stage while its pipeline runs")
            if self._closed:
                return False
            self._closed = True
            return True

    def _release_unclosed(self) -> None:
        """Release, from a finalizer, what needs no plugin code (the stage was never closed)."""

    def __del__(self) -> None:
        if getattr(self, "_closed", True):  # closed, or __init__ never got this far
            return
        try:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=2)
        finally:  # released even when warnings are errors (-W error::ResourceWarning)
            self._closed = True
            self._release_unclosed()
