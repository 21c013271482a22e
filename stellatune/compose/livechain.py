"""The player's chain while it plays: stage edits and config updates swapped in at block boundaries.

Every edit builds a new :class:`stellatune.engine.Chain` over the *same* stage objects (only a
new or recreated stage is built, off the audio thread) and hands it over:

- all stages on the hot path: the new C chain is posted to the driver, which takes it at the top
  of its next block; only once it has (bounded wait) is the old chain released and the new one
  claimed, so no stage is ever run by two chains;
- with component-path stages the chain runs on the feeder (Python), which swaps between pieces;
- a change between the two (a component stage added to a hot-path chain, or the last one
  removed) flushes the ring (5 ms fade) and decodes again from the playing position through the
  new chain, so no audio is processed twice or not at all.

Stages no longer used are closed after the swap.

A ``sink:`` output is the last stage of every chain (``sink``; not an entry, owned here). A
recreate (``update_config``) of a hot-path stage swaps in the new stage with a crossfade: the
new C chain carries the old stage's state into the new one at the block boundary where it is
taken (the optional state-carry ABI extension), then runs both on the same input for
``crossfade_ms``, mixing their outputs with equal-power gains; once the fade is done
(:meth:`LiveChain.finish_fades`, polled by the player's monitor) a plain chain replaces it and
the old stage is closed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Optional

from ..abi import Role
from ..engine import Chain, HotPathStage, _core
from ..errors import EngineError
from ..executor import AudioSpec, ConfigUpdateMode
from ..executor.slot import ConfigRejected
from .pipeline import DspPlugin
from .stages import _active_capability, _stage_over, parse_config

__all__ = ["Entry", "LiveChain", "build_entry"]


@dataclass
class Entry:
    """One stage of the live chain and what it was built from."""

    plugin_id: str
    type_id: str
    config: dict[str, Any]
    stage: Any
    processor: Any = field(repr=False, default=None)
    bypassed: bool = False

    @property
    def spec(self) -> str:
        return f"{self.plugin_id}:{self.type_id}:{json.dumps(self.config, sort_keys=True)}"


def build_entry(runtime: Any, spec: Any, rate: int, channels: int) -> Entry:
    """Build the stage for ``spec`` (``"ID:TYPE[:JSON]"`` or a DspPlugin), keeping its processor."""
    p = spec if isinstance(spec, DspPlugin) else DspPlugin.parse(spec)
    where = f"{p.plugin_id}/{p.type_id}"
    descriptor = _active_capability(runtime, p.plugin_id, "dsp", p.type_id)
    user = dict(p.config)
    defaults = parse_config(descriptor.default_config_json, f"{where} default config")
    aspec = AudioSpec(rate, channels)
    processor = runtime.host.dsp(p.plugin_id, p.type_id).create(aspec, json.dumps({**defaults, **user}))
    stage = _stage_over(
        runtime,
        p.plugin_id,
        where,
        processor,
        Role.DSP_TRANSFORM,
        processor.process,
        None,
        defaults,
        user,
        aspec,
        False,
        None,
    )
    return Entry(p.plugin_id, p.type_id, {**defaults, **user}, stage, processor)


class LiveChain:
    def __init__(
        self,
        runtime: Any,
        core: Any,
        feeder: Any,
        rate: int,
        channels: int,
        frames: int,
        driver_running: Callable[[], bool],
        position: Callable[[], Optional[float]],
        emit: Callable[..., None],
    ):
        self.runtime, self.core, self.feeder = runtime, core, feeder
        self.rate, self.channels, self.frames = rate, channels, frames
        self._driver_running = driver_running
        self._position = position
        self._emit = emit
        self.entries: list[Entry] = []
        self.sink: Any = None  # the sink: output's stage, last in every chain
        self.crossfade_ms = 10.0
        self._fading: list[tuple[Any, Entry]] = []  # (C chain running the fade, old entry)
        self.chain: Optional[Chain] = None
        self._running: Optional[AbstractContextManager[Any]] = None
        self.on_feeder = False
        self.swaps = 0

    def build(self, spec: Any) -> Entry:
        return build_entry(self.runtime, spec, self.rate, self.channels)

    def start(self, entries: list[Entry]) -> None:
        """Install the first chain (no driver running yet)."""
        self.commit(entries)

    # --- the swap ---------------------------------------------------------------------------

    def commit(self, entries: list[Entry], fade: Optional[tuple[Entry, Entry]] = None) -> None:
        """Make ``entries`` the chain at a block boundary; close the stages no longer in it.
        ``fade`` (old, new): ``new`` replaces ``old`` with a state carry and a crossfade (hot
        path only; ``old`` is closed once the fade is done, see :meth:`finish_fades`)."""
        tail = [self.sink] if self.sink is not None else []
        new = Chain([e.stage for e in entries] + tail, self.rate, self.channels, block_frames=self.frames)
        on_feeder = new.has_component_stages
        driver_chain = new._c_chain() or _core.Chain([], self.channels, self.frames)
        old_entries = self.entries
        fading = self._fading
        faded: Optional[tuple[Any, Entry]] = None
        if fade is not None and isinstance(fade[0].stage, HotPathStage) and isinstance(fade[1].stage, HotPathStage):
            c_chain, index = new._places[id(fade[1].stage)]
            frames = max(0, round(self.crossfade_ms * self.rate / 1000.0))
            c_chain.set_crossfade(index, fade[0].stage._core, frames, True)
            faded = (c_chain, fade[0])

        def swap() -> None:
            self._hand_over(driver_chain)
            if faded is not None and (on_feeder or not self._driver_running()):
                faded[0].xfade_carry()  # nobody runs either stage now: carry here
            if self._running is not None:
                self._running.__exit__(None, None, None)
            self._running = new.running()
            self._running.__enter__()
            self.chain, self.entries, self.on_feeder = new, list(entries), on_feeder
            self.feeder.render = new.render if on_feeder else None
            self.swaps += 1

        if self.chain is None or (not on_feeder and not self.on_feeder):
            swap()  # driver-side only: the feeder never runs either chain
        elif on_feeder and self.on_feeder:
            self.feeder.call(swap)  # the feeder runs both: swap between its pieces
        else:
            self.feeder.call(lambda: self.feeder.reposition(self._position, swap))
        self._fading = [faded] if faded is not None else []
        keep = {id(e.stage) for e in entries} | ({id(faded[1].stage)} if faded is not None else set())
        for e in old_entries:
            if id(e.stage) not in keep:
                e.stage.close()
        for _, e in fading:  # a fade cut short by this edit: the old stage no longer runs
            if id(e.stage) not in keep:
                e.stage.close()

    def finish_fades(self) -> None:
        """Once a recreate's crossfade is done, run a plain chain and close the old stage."""
        if self._fading and all(c.xfade_done for c, _ in self._fading):
            self.commit(list(self.entries))

    def _hand_over(self, c: Any) -> None:
        if not self._driver_running():
            self.core.set_chain_now(c)
            return
        old = self.core.chain
        # Commands still queued in the old chain would be applied from this thread once it is
        # released, while the driver runs the same stages in the new one: let it apply them first.
        deadline = time.monotonic() + 2.0
        while old.pending_commands and time.monotonic() < deadline:
            time.sleep(0.0005)
        if not self.core.post_chain(c):
            raise EngineError("a chain swap is already pending")
        deadline = time.monotonic() + 5.0
        while not self.core.chain_taken():
            if time.monotonic() > deadline:
                raise EngineError("the driver did not take the new chain within 5 s")
            time.sleep(0.0005)

    # --- edits ------------------------------------------------------------------------------

    def reset(self) -> None:
        if self.chain is not None:
            self.chain.reset()

    def update_config(self, index: int, changes: dict[str, Any]) -> str:
        e = self.entries[index]
        merged = {**e.config, **changes}
        text = json.dumps(merged)
        if e.stage.route == "component":
            try:
                fade = max(0, round(self.crossfade_ms * self.rate / 1000.0))
                mode = e.processor.update_config(text, crossfade_frames=fade)
            except ConfigRejected as ex:
                self._emit("config-rejected", index=index, spec=e.spec, reason=ex.reason)
                return "reject"
            e.config = merged
            self._emit("config-applied", index=index, spec=e.spec, mode=mode.value)
            return mode.value
        plan = e.processor.plan_config(text)
        if plan.mode is ConfigUpdateMode.REJECT:
            self._emit("config-rejected", index=index, spec=e.spec, reason=plan.reason or "")
            return "reject"
        if plan.mode is ConfigUpdateMode.HOT_APPLY and set(changes) <= set(e.stage.param_names):
            e.stage.configure(changes)  # set_param between blocks
            e.processor.apply_config(text)
            e.config = merged
            self._emit("config-applied", index=index, spec=e.spec, mode="hot-apply")
            return "hot-apply"
        fresh = self.build(DspPlugin(e.plugin_id, e.type_id, merged))
        try:
            if e.bypassed:
                fresh.stage.bypass(True)
                fresh.bypassed = True
            self.commit([*self.entries[:index], fresh, *self.entries[index + 1 :]], fade=(e, fresh))
        except BaseException:
            fresh.stage.close()
            raise
        self._emit("config-applied", index=index, spec=fresh.spec, mode="recreate")
        return "recreate"

    def close(self) -> None:
        if self._running is not None:
            self._running.__exit__(None, None, None)
            self._running = None
        for e in self.entries:
            e.stage.close()
        for _, e in self._fading:
            e.stage.close()
        self.entries, self._fading = [], []
        if self.sink is not None:
            sink, self.sink = self.sink, None
            sink.close()
