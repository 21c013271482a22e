"""``WasmPluginRuntime``: keeps the set of active plugins in line with the plugins directory and
the user's desired states, and routes every activation through a ``LifecycleHost``.

Locking rule. Two locks, always taken in this order and never the other way round:

- ``_op_lock`` serialises operations (sync, enable/disable, unload, shutdown). It is held while
  the host is called, because an operation is a sequence of host calls that must not interleave
  with another operation's.
- ``_data_lock`` guards the bookkeeping (active map, capability index, desired states, errors).
  It is held only for short reads and writes and **never while calling the host**, so a host can
  read capabilities from inside ``activate`` and readers on other threads never wait on plugin
  code.

A host hook that calls an operation again on the same thread would deadlock on ``_op_lock``; the
runtime detects that and raises ``RuntimeStateError`` instead.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import LifecycleFailures, RuntimeStateError, StellatuneError
from ..events import EventHub
from ..manifest import AbilityKind, Permissions
from ..package import DiscoveredPlugin, DiscoveryResult, component_digest, discover_plugins
from .directives import DirectiveCallback, DirectiveHub, PluginDirective
from .grants import GrantsLike, HostGrantChange, grants_signature, merge_grants, subtract_grants, validate_host_grants
from .lifecycle import DisableReason, LifecycleHost, NoopLifecycleHost
from .model import (
    CapabilityDescriptor,
    DesiredState,
    LifecycleState,
    PluginStatus,
    PluginTransition,
    RuntimePluginInfo,
    SyncReport,
    SyncTimings,
    TransitionDetail,
    TransitionOutcome,
    TransitionTrigger,
)
from .registry import ActivePlugin, ActiveRegistry, build_capabilities, parse_kind, plugin_signature
from .state import DesiredStateStore

__all__ = ["WasmPluginRuntime"]


class WasmPluginRuntime:
    """The plugin runtime of one plugins directory.

    :param plugins_dir: where plugins are installed (``<plugins_dir>/<id>/``); it also holds the
        persisted desired states, ``.stellatune-state.json``, which are loaded here.
    :param host: activates and deactivates plugins; ``NoopLifecycleHost`` when omitted.
    :raises RuntimeStateError: the state file exists but cannot be read.

    Thread-safe. Use as a context manager, or call :meth:`shutdown` when done.
    """

    def __init__(self, plugins_dir: Union[Path, str], host: Optional[LifecycleHost] = None):
        self.plugins_dir = Path(plugins_dir)
        self.host: LifecycleHost = host if host is not None else NoopLifecycleHost()
        self._store = DesiredStateStore(self.plugins_dir)
        self._op_lock = threading.Lock()
        self._op_owner: Optional[int] = None
        self._op_seq = 0  # bumped as each operation starts and ends: odd while one runs
        self._data_lock = threading.Lock()
        self._registry = ActiveRegistry()
        self._desired: dict[str, DesiredState]
        self._host_grants: dict[str, Permissions]
        self._desired, self._host_grants = self._store.read()
        self._directives = DirectiveHub()
        # Directives an operation emitted, delivered once it released the operation lock.
        self._outbox: list[tuple[str, PluginDirective]] = []
        self._errors: dict[str, str] = {}
        self._discovered: frozenset[str] = frozenset()
        # Lifecycle as of the last sync, updated by deactivations between syncs: the "from" of
        # the next sync's transitions (re-deriving it would call a just re-enabled plugin failed).
        self._known: dict[str, LifecycleState] = {}
        self._revision = 0
        self._last_report: Optional[SyncReport] = None
        self._shut_down = False
        #: Structured events (docs/events.md): ``runtime.events.subscribe(callback, kinds=None)``.
        self.events = EventHub()

    # --- context manager ------------------------------------------------------------------

    def __enter__(self) -> WasmPluginRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = " (shut down)" if getattr(self, "_shut_down", False) else ""
        return f"<WasmPluginRuntime {self.plugins_dir}{state}>"

    def __del__(self) -> None:
        # Like an unclosed file: say so. Nothing is released here: deactivating runs the
        # host's (plugin) code and takes locks, which a finalizer must not.
        if getattr(self, "_shut_down", True):  # shut down, or __init__ failed
            return
        try:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1, source=self)
        finally:
            self._shut_down = True

    # --- reads (data lock only) -------------------------------------------------------------

    def capability_of(
        self, plugin_id: str, kind: Union[AbilityKind, str], type_id: str
    ) -> Optional[CapabilityDescriptor]:
        """The active capability ``(plugin_id, kind, type_id)``, or ``None``.

        ``kind`` may be an ``AbilityKind`` or its spelling; an unknown kind raises ``ValueError``.
        """
        key_kind = parse_kind(kind)
        with self._data_lock:
            return self._registry.capability(plugin_id, key_kind, type_id)

    def capabilities_of(self, plugin_id: str) -> tuple[CapabilityDescriptor, ...]:
        """Every capability of an active plugin, in manifest order (empty if not active)."""
        with self._data_lock:
            return self._registry.capabilities_of(plugin_id)

    def decoder_candidates(self, ext: Optional[str]) -> list[CapabilityDescriptor]:
        """Active decoders for files with extension ``ext`` (``"mp3"``, ``".MP3"``, or ``None``),
        best first. See ``ActiveRegistry.decoder_candidates`` for the ranking."""
        with self._data_lock:
            return self._registry.decoder_candidates(ext)

    def all_decoders(self) -> list[CapabilityDescriptor]:
        """Every active decoder, sorted by (plugin_id, type_id): the fallback for local files no
        decoder scored."""
        with self._data_lock:
            return self._registry.all_decoders()

    def active_plugins(self) -> list[RuntimePluginInfo]:
        """Active plugins, sorted by id."""
        with self._data_lock:
            return [p.info for p in self._registry.plugins()]

    def is_active(self, plugin_id: str) -> bool:
        """Whether ``plugin_id`` is active now."""
        with self._data_lock:
            return plugin_id in self._registry

    def desired_state(self, plugin_id: str) -> DesiredState:
        """The desired state of ``plugin_id`` (enabled when none is recorded)."""
        with self._data_lock:
            return self._desired.get(plugin_id, DesiredState.ENABLED)

    def desired_states(self) -> dict[str, DesiredState]:
        """A copy of the explicitly recorded desired states."""
        with self._data_lock:
            return dict(self._desired)

    def host_grants(self, plugin_id: str) -> Permissions:
        """The host grants stored for ``plugin_id`` (empty when none): what :meth:`grant` added
        on top of its manifest's ``permissions``."""
        with self._data_lock:
            return self._host_grants.get(plugin_id.strip(), Permissions())

    def all_host_grants(self) -> dict[str, Permissions]:
        """A copy of every plugin's stored host grants (plugins without any are left out)."""
        with self._data_lock:
            return dict(self._host_grants)

    def status(self, plugin_id: str) -> PluginStatus:
        """Where ``plugin_id`` stands now (lifecycle derived as in the sync report)."""
        with self._data_lock:
            return self._status_locked(plugin_id)

    @property
    def revision(self) -> int:
        """How many syncs this instance has run."""
        with self._data_lock:
            return self._revision

    @property
    def last_report(self) -> Optional[SyncReport]:
        """The report of the latest sync, or ``None`` before the first one."""
        with self._data_lock:
            return self._last_report

    @property
    def operation_seq(self) -> int:
        """Odd while an operation (sync, enable/disable, unload, shutdown) runs; bumped as each
        starts and ends. A reload deactivates a plugin for a moment inside a sync, so a reader
        that must tell a reload from a disable looks at the active set between two equal, even
        reads of this (the player's monitor does)."""
        return self._op_seq

    @property
    def is_shut_down(self) -> bool:
        """Whether :meth:`shutdown` has run."""
        with self._data_lock:
            return self._shut_down

    # --- operations (op lock, then host calls) ---------------------------------------------

    def sync_plugins(self, *, tidy: bool = True) -> SyncReport:
        """Discover installed plugins and make the active set match them and the desired states.
        ``tidy=False`` leaves pending deletes and dead installs' leftovers on disk alone
        (:func:`~stellatune.package.discover_plugins`), for a look that changes nothing there.

        Per discovered plugin: disabled → deactivate (``host-disable``) if active, else a
        ``skipped``/``already_inactive`` transition (emitted on every sync); enabled and
        unchanged → kept; new or changed signature → activate (a changed one is deactivated
        with ``reload`` first, once the host's optional ``prepare`` passed). Active plugins no
        longer discovered are deactivated (``unload``). A failed reload re-activates the
        previous version so it stays usable.
        Failures never raise: they are transitions with outcome ``failed`` and entries in
        ``errors``.

        :raises RuntimeStateError: after :meth:`shutdown`, or when called from a host hook.
        """
        with self._operation():
            started = time.perf_counter()
            discovery = discover_plugins(self.plugins_dir, tidy=tidy)
            discovered_at = time.perf_counter()
            sync = _SyncRun(self)
            sync.run(discovery)
            finished = time.perf_counter()
            timings = SyncTimings(
                discover=(discovered_at - started) * 1000.0,
                apply=(finished - discovered_at) * 1000.0,
                total=(finished - started) * 1000.0,
            )
            with self._data_lock:
                self._revision += 1
                self._discovered = frozenset(sync.discovered)
                self._errors = {pid: "; ".join(msgs) for pid, msgs in sync.errors_by_plugin.items()}
                ids = set(sync.discovered) | set(self._registry.ids()) | set(self._desired)
                ids |= {t.plugin_id for t in sync.transitions}
                statuses = tuple(self._status_locked(pid) for pid in sorted(ids))
                self._known = {s.plugin_id: s.lifecycle_state for s in statuses}
                report = SyncReport(
                    revision=self._revision,
                    discovered_plugins=tuple(sorted(sync.discovered)),
                    active_plugins=tuple(p.info for p in self._registry.plugins()),
                    plugin_statuses=statuses,
                    transitions=tuple(sorted(sync.transitions, key=lambda t: (t.plugin_id, t.detail.value))),
                    errors=tuple(sync.errors),
                    warnings=tuple(str(w) for w in discovery.warnings),
                    timings_ms=timings,
                )
                self._last_report = report
            self._outbox.extend(_directives_of(report))
            _emit_sync_events(self.events, report)
            return report

    def set_desired_state(self, plugin_id: str, state: DesiredState) -> None:
        """Record and persist what the user wants for ``plugin_id``.

        Disabling an active plugin deactivates it now (``host-disable``). Enabling only records
        the wish; the next :meth:`sync_plugins` activates the plugin.

        :raises RuntimeStateError: the state cannot be persisted (nothing changed), or the
            runtime is shut down.
        :raises StellatuneError: the host failed to deactivate (the state is recorded, the plugin
            stays active and its status carries the error).
        """
        plugin_id = _checked_id(plugin_id)
        state = DesiredState(state)
        with self._operation():
            with self._data_lock:
                updated = dict(self._desired)
            if state is DesiredState.ENABLED:
                # Only explicit disables need storing: a missing entry means enabled.
                updated.pop(plugin_id, None)
            else:
                updated[plugin_id] = state
            self._persist(updated)
            if state is DesiredState.DISABLED:
                self._deactivate(plugin_id, DisableReason.HOST_DISABLE)

    def replace_desired_states(self, states: Mapping[str, DesiredState]) -> None:
        """Replace every recorded desired state with ``states`` (plugins not listed count as
        enabled), persist them, and deactivate every active plugin that is now disabled.

        :raises LifecycleFailures: naming each plugin the host failed to deactivate, after
            trying them all.
        """
        cleaned = {_checked_id(pid): DesiredState(s) for pid, s in states.items()}
        cleaned = {pid: s for pid, s in cleaned.items() if s is DesiredState.DISABLED}
        with self._operation():
            self._persist(cleaned)
            failures: dict[str, BaseException] = {}
            for pid in sorted(cleaned):
                try:
                    self._deactivate(pid, DisableReason.HOST_DISABLE)
                except StellatuneError as exc:
                    failures[pid] = exc
            if failures:
                raise LifecycleFailures("disable", failures)

    def unload(self, plugin_id: str) -> bool:
        """Deactivate ``plugin_id`` now (reason ``unload``) without changing its desired state,
        so the next sync activates it again if it is still installed and enabled.

        :returns: whether the plugin was active.
        :raises StellatuneError: the host failed; the plugin stays active.
        """
        plugin_id = _checked_id(plugin_id)
        with self._operation():
            return self._deactivate(plugin_id, DisableReason.UNLOAD)

    def grant(self, plugin_id: str, grants: GrantsLike) -> HostGrantChange:
        """Add host grants for ``plugin_id`` and persist them (state file, atomically).

        ``grants`` is a ``Permissions`` or ``{"http": [...], "tcp": [...], "files": [...],
        "sidecars": [...], "env": [...]}``, checked by the rules of the manifest's
        ``permissions`` block (a ``sidecars`` entry must name a file of the installed plugin).
        Entries already granted are no-ops (``unchanged``). The grants reach the plugin at its
        next activation: the next :meth:`sync_plugins` reloads an active plugin whose grants
        changed (they are part of its signature), a disabled one gets them when re-enabled.

        :raises HostGrantError: an entry breaks a rule (nothing is stored).
        :raises RuntimeStateError: the state file cannot be written, or the runtime is shut down.
        """
        plugin_id = _checked_id(plugin_id)
        root = self.plugins_dir / plugin_id
        wanted = validate_host_grants(plugin_id, grants, root=root if root.is_dir() else None)
        with self._operation():
            merged, already = merge_grants(self.host_grants(plugin_id), wanted)
            self._persist_grants(plugin_id, merged)
            added, _removed, _absent = subtract_grants(wanted, already)
            return HostGrantChange(plugin_id, added, already, merged)

    def revoke(self, plugin_id: str, grants: GrantsLike) -> HostGrantChange:
        """Remove host grants of ``plugin_id`` and persist the rest; entries that were never
        granted are no-ops (``unchanged``). Takes effect like :meth:`grant`: at the next
        activation (the next sync reloads an active plugin).

        :raises HostGrantError: an entry is malformed (checked lexically only, so a sidecar
            whose file is gone can still be revoked).
        """
        plugin_id = _checked_id(plugin_id)
        gone = validate_host_grants(plugin_id, grants)
        with self._operation():
            kept, removed, absent = subtract_grants(self.host_grants(plugin_id), gone)
            self._persist_grants(plugin_id, kept)
            return HostGrantChange(plugin_id, removed, absent, kept)

    def clear_host_grants(self, plugin_id: str) -> Permissions:
        """Forget every host grant of ``plugin_id`` (e.g. when it is uninstalled, so a
        reinstalled package with the same id starts from its manifest only); returns them."""
        plugin_id = _checked_id(plugin_id)
        with self._operation():
            previous = self.host_grants(plugin_id)
            if not previous.is_empty():
                self._persist_grants(plugin_id, Permissions())
            return previous

    def subscribe_plugin(self, plugin_id: str, callback: DirectiveCallback) -> Callable[[], None]:
        """Call ``callback(plugin_id, directive)`` for each directive about ``plugin_id``;
        returns ``unsubscribe()``. The runtime emits ``Rebuild`` when a sync activates the plugin
        (new or reloaded) and ``Destroy(reason)`` when a sync, a disable, :meth:`unload` or
        :meth:`shutdown` deactivates it, after the operation finished (so a callback may call
        runtime operations); :meth:`notify_plugin` sends any directive. Callbacks run on the
        notifying thread; one that raises is logged and does not stop the others.
        """
        return self._directives.subscribe(_checked_id(plugin_id), callback)

    def notify_plugin(self, plugin_id: str, directive: PluginDirective) -> int:
        """Deliver ``directive`` to the subscribers of ``plugin_id`` now, on this thread;
        returns how many callbacks ran without raising."""
        return self._directives.notify(_checked_id(plugin_id), directive)

    def notify_plugin_update_config(self, plugin_id: str, config: Union[str, Mapping[str, Any]]) -> int:
        """``notify_plugin(plugin_id, PluginDirective.update_config(config))``."""
        return self.notify_plugin(plugin_id, PluginDirective.update_config(config))

    def shutdown(self) -> list[str]:
        """Deactivate every active plugin (reason ``shutdown``), then shut the host down.

        Idempotent: later calls return ``[]``. Afterwards every operation raises
        ``RuntimeStateError``; reads keep working and see nothing active.

        :returns: the ids deactivated, sorted.
        :raises LifecycleFailures: some plugins failed to deactivate (the runtime is shut down
            anyway and forgets them; the host's ``shutdown`` still ran).
        """
        with self._operation(allow_shut_down=True):
            with self._data_lock:
                if self._shut_down:
                    return []
                ids = self._registry.ids()
            done: list[str] = []
            failures: dict[str, BaseException] = {}
            for pid in ids:
                try:
                    self.host.deactivate(pid, DisableReason.SHUTDOWN)
                    done.append(pid)
                    self._outbox.append((pid, PluginDirective.destroy(DisableReason.SHUTDOWN)))
                except StellatuneError as exc:
                    failures[pid] = exc
            try:
                self.host.shutdown()
            finally:
                with self._data_lock:
                    for pid in ids:
                        self._registry.remove(pid)
                    self._shut_down = True
            if failures:
                raise LifecycleFailures("shutdown", failures)
            return done

    # --- internals --------------------------------------------------------------------------

    @contextmanager
    def _operation(self, allow_shut_down: bool = False) -> Iterator[None]:
        me = threading.get_ident()
        if self._op_owner == me:
            raise RuntimeStateError("runtime operations cannot be called from inside a lifecycle hook")
        outbox: list[tuple[str, PluginDirective]] = []
        try:
            with self._op_lock:
                self._op_owner = me
                self._op_seq += 1
                try:
                    if not allow_shut_down and self.is_shut_down:
                        raise RuntimeStateError(f"the plugin runtime of {self.plugins_dir} is shut down")
                    yield
                finally:
                    self._op_owner = None
                    self._op_seq += 1
                    outbox, self._outbox = self._outbox, []
        finally:
            # Outside the operation lock, so a listener may call runtime operations itself.
            self._directives.notify_all(outbox)

    def _persist(self, states: dict[str, DesiredState]) -> None:
        # The whole file from what this runtime holds (desired states and host grants).
        with self._data_lock:
            grants = dict(self._host_grants)
        self._store.save(states, grants)
        with self._data_lock:
            self._desired = states

    def _persist_grants(self, plugin_id: str, grants: Permissions) -> None:
        with self._data_lock:
            desired = dict(self._desired)
            all_grants = dict(self._host_grants)
        if grants.is_empty():
            all_grants.pop(plugin_id, None)
        else:
            all_grants[plugin_id] = grants
        self._store.save(desired, all_grants)
        with self._data_lock:
            self._host_grants = all_grants

    def _deactivate(self, plugin_id: str, reason: DisableReason) -> bool:
        """Deactivate an active plugin outside of a sync; ``False`` if it was not active."""
        if not self.is_active(plugin_id):
            return False
        started = time.perf_counter()
        try:
            self.host.deactivate(plugin_id, reason)
        except StellatuneError as exc:
            with self._data_lock:
                self._errors[plugin_id] = f"deactivate ({reason.value}) failed: {exc}"
            # As in a sync report: a failed transition goes "to" failed, though the plugin stays active.
            self._emit_deactivation(plugin_id, reason, started, LifecycleState.FAILED, str(exc))
            raise
        with self._data_lock:
            self._registry.remove(plugin_id)
            self._errors.pop(plugin_id, None)
            after = self._known[plugin_id] = self._lifecycle_locked(plugin_id)
        self._outbox.append((plugin_id, PluginDirective.destroy(reason)))
        self._emit_deactivation(plugin_id, reason, started, after, None)
        return True

    def _emit_deactivation(
        self, plugin_id: str, reason: DisableReason, started: float, after: LifecycleState, error: Optional[str]
    ) -> None:
        """A ``plugin-transition`` event for a deactivation outside a sync (disable, unload):
        no sync reports it (the next one sees the plugin already inactive), so without this the
        event stream would not show it, nor how long the plugin's teardown took."""
        self.events.emit(
            "plugin-transition",
            severity="error" if error is not None else "info",
            plugin_id=plugin_id,
            **{"from": LifecycleState.ACTIVE.value, "to": after.value},
            trigger=reason.value,
            outcome=TransitionOutcome.FAILED.value if error is not None else TransitionOutcome.APPLIED.value,
            detail="deactivate_failed" if error is not None else "deactivated",
            last_error=error,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            sync_ms=None,
        )

    def _status_locked(self, plugin_id: str) -> PluginStatus:
        desired = self._desired.get(plugin_id, DesiredState.ENABLED)
        return PluginStatus(
            plugin_id=plugin_id,
            desired_state=desired,
            lifecycle_state=self._lifecycle_locked(plugin_id),
            last_error=self._errors.get(plugin_id),
        )

    def _lifecycle_locked(self, plugin_id: str) -> LifecycleState:
        if plugin_id in self._registry:
            return LifecycleState.ACTIVE
        if plugin_id not in self._discovered:
            return LifecycleState.MISSING
        if self._desired.get(plugin_id) is DesiredState.DISABLED:
            return LifecycleState.DISABLED
        return LifecycleState.FAILED


class _SyncRun:
    """The apply phase of one sync: walks discovered and previously active plugins, calls the
    host, updates the registry one plugin at a time, and collects transitions and errors."""

    def __init__(self, runtime: WasmPluginRuntime):
        self.rt = runtime
        self.discovered: dict[str, DiscoveredPlugin] = {}
        self.transitions: list[PluginTransition] = []
        self.errors: list[str] = []
        self.errors_by_plugin: dict[str, list[str]] = defaultdict(list)
        self._plugin_started = time.perf_counter()  # when the plugin being applied was started

    def run(self, discovery: DiscoveryResult) -> None:
        rt = self.rt
        # Discovery already keeps one entry per id (and warns about the others).
        self.discovered = {plugin.manifest.id: plugin for plugin in discovery.plugins}
        with rt._data_lock:
            desired = dict(rt._desired)
            previous = {p.info.id: p for p in rt._registry.plugins()}
            known = dict(rt._known)
        for pid in sorted(self.discovered):
            self._plugin_started = time.perf_counter()
            before = LifecycleState.ACTIVE if pid in previous else known.get(pid, LifecycleState.MISSING)
            if desired.get(pid) is DesiredState.DISABLED:
                self._apply_disabled(pid, before, previous)
            else:
                self._apply_enabled(pid, before, self.discovered[pid], previous)
        for pid in sorted(set(previous) - set(self.discovered)):
            self._plugin_started = time.perf_counter()
            self._apply_removed(pid)

    def _apply_disabled(self, pid: str, before: LifecycleState, previous: dict[str, ActivePlugin]) -> None:
        trigger = TransitionTrigger.DISABLE_REQUESTED
        if pid not in previous:
            self._transition(
                pid,
                before,
                LifecycleState.DISABLED,
                trigger,
                TransitionOutcome.SKIPPED,
                TransitionDetail.ALREADY_INACTIVE,
            )
            return
        if self._host_deactivate(pid, DisableReason.HOST_DISABLE):
            self._transition(
                pid, before, LifecycleState.DISABLED, trigger, TransitionOutcome.APPLIED, TransitionDetail.DISABLED
            )
        else:
            self._transition(
                pid, before, LifecycleState.FAILED, trigger, TransitionOutcome.FAILED, TransitionDetail.UNINSTALL_FAILED
            )

    def _apply_enabled(
        self, pid: str, before: LifecycleState, plugin: DiscoveredPlugin, previous: dict[str, ActivePlugin]
    ) -> None:
        old: Optional[ActivePlugin] = previous.get(pid)
        try:
            candidate = _activation_of(plugin, self.rt.host_grants(pid))
        except (StellatuneError, OSError) as exc:
            self._error(pid, f"cannot read plugin files: {exc}")
            self._transition(
                pid,
                before,
                LifecycleState.FAILED,
                TransitionTrigger.RELOAD_CHANGED if old else TransitionTrigger.LOAD_NEW,
                TransitionOutcome.FAILED,
                TransitionDetail.INSTALL_FAILED,
            )
            return
        if old is not None and old.signature == candidate.signature:
            return
        trigger = TransitionTrigger.RELOAD_CHANGED if old else TransitionTrigger.LOAD_NEW
        detail = TransitionDetail.MANIFEST_CHANGED if old else TransitionDetail.NEW
        if old is not None and not self._host_prepare(candidate):
            self._transition(
                pid, before, LifecycleState.FAILED, trigger, TransitionOutcome.FAILED, TransitionDetail.INSTALL_FAILED
            )
            return
        if old is not None and not self._host_deactivate(pid, DisableReason.RELOAD):
            self._transition(
                pid, before, LifecycleState.FAILED, trigger, TransitionOutcome.FAILED, TransitionDetail.UNINSTALL_FAILED
            )
            return
        if self._host_activate(candidate):
            self._transition(pid, before, LifecycleState.ACTIVE, trigger, TransitionOutcome.APPLIED, detail)
            return
        if old is not None:
            # Put the previous version back so a bad update does not take a working plugin away;
            # its signature stays the old one, so the next sync retries the update.
            self._host_activate(old, rollback=True)
        self._transition(
            pid, before, LifecycleState.FAILED, trigger, TransitionOutcome.FAILED, TransitionDetail.INSTALL_FAILED
        )

    def _apply_removed(self, pid: str) -> None:
        trigger = TransitionTrigger.REMOVED_FROM_DISK
        if self._host_deactivate(pid, DisableReason.UNLOAD):
            self._transition(
                pid,
                LifecycleState.ACTIVE,
                LifecycleState.MISSING,
                trigger,
                TransitionOutcome.APPLIED,
                TransitionDetail.REMOVED,
            )
        else:
            self._transition(
                pid,
                LifecycleState.ACTIVE,
                LifecycleState.FAILED,
                trigger,
                TransitionOutcome.FAILED,
                TransitionDetail.UNINSTALL_FAILED,
            )

    def _host_prepare(self, plugin: ActivePlugin) -> bool:
        """Run the host's optional pre-flight check; ``True`` when it passed or there is none."""
        prepare = getattr(self.rt.host, "prepare", None)
        if prepare is None:
            return True
        try:
            prepare(plugin.info, plugin.capabilities)
        except StellatuneError as exc:
            self._error(plugin.info.id, f"prepare failed: {exc}")
            return False
        return True

    def _host_activate(self, plugin: ActivePlugin, rollback: bool = False) -> bool:
        try:
            self.rt.host.activate(plugin.info, plugin.capabilities)
        except StellatuneError as exc:
            what = "re-activating the previous version" if rollback else "activate"
            self._error(plugin.info.id, f"{what} failed: {exc}")
            return False
        with self.rt._data_lock:
            self.rt._registry.put(plugin)
        return True

    def _host_deactivate(self, pid: str, reason: DisableReason) -> bool:
        try:
            self.rt.host.deactivate(pid, reason)
        except StellatuneError as exc:
            self._error(pid, f"deactivate ({reason.value}) failed: {exc}")
            return False
        with self.rt._data_lock:
            self.rt._registry.remove(pid)
        return True

    def _transition(
        self,
        pid: str,
        before: LifecycleState,
        after: LifecycleState,
        trigger: TransitionTrigger,
        outcome: TransitionOutcome,
        detail: TransitionDetail,
    ) -> None:
        took = (time.perf_counter() - self._plugin_started) * 1000.0
        self.transitions.append(PluginTransition(pid, before, after, trigger, outcome, detail, took))

    def _error(self, pid: str, message: str) -> None:
        self.errors.append(f"{pid}: {message}")
        self.errors_by_plugin[pid].append(message)


def _activation_of(plugin: DiscoveredPlugin, host_grants: Permissions = Permissions()) -> ActivePlugin:
    """What activating a discovered plugin means: its info (with its host grants),
    capabilities and signature (which covers the host grants too)."""
    manifest = plugin.manifest
    root = Path(plugin.root)
    info = RuntimePluginInfo(
        id=manifest.id,
        name=manifest.name,
        version=manifest.version,
        root_dir=root,
        manifest_path=plugin.manifest_path,
        component_count=len(manifest.components),
        manifest=manifest,
        host_grants=host_grants,
    )
    signature = grants_signature(plugin_signature(manifest, component_digest(root, manifest)), host_grants)
    return ActivePlugin(info, build_capabilities(manifest), signature)


def _directives_of(report: SyncReport) -> list[tuple[str, PluginDirective]]:
    """What the original sent after a sync (reference §2.3 step 5): ``Rebuild`` for each applied
    transition to active, ``Destroy`` for each applied one to disabled (``host-disable``) or
    missing (``unload``)."""
    out = []
    for t in report.transitions:
        if t.outcome is not TransitionOutcome.APPLIED:
            continue
        if t.to_state is LifecycleState.ACTIVE:
            out.append((t.plugin_id, PluginDirective.rebuild()))
        elif t.to_state is LifecycleState.DISABLED:
            out.append((t.plugin_id, PluginDirective.destroy(DisableReason.HOST_DISABLE)))
        elif t.to_state is LifecycleState.MISSING:
            out.append((t.plugin_id, PluginDirective.destroy(DisableReason.UNLOAD)))
    return out


def _emit_sync_events(events: EventHub, report: SyncReport) -> None:
    """``plugin-transition`` for each transition that did something, then ``sync-completed``."""
    for t in report.transitions:
        if t.outcome is TransitionOutcome.SKIPPED:
            continue
        status = report.status_of(t.plugin_id)
        events.emit(
            "plugin-transition",
            severity="error" if t.outcome is TransitionOutcome.FAILED else "info",
            plugin_id=t.plugin_id,
            **{k: v for k, v in t.to_json().items() if k != "plugin_id"},
            last_error=status.last_error if status else None,
            duration_ms=t.duration_ms,
            sync_ms=report.timings_ms.total,
        )
    events.emit(
        "sync-completed",
        severity="info" if report.ok else "warning",
        revision=report.revision,
        timings_ms=report.timings_ms.to_json(),
        errors=list(report.errors),
    )


def _checked_id(plugin_id: str) -> str:
    if not isinstance(plugin_id, str) or not plugin_id.strip():
        raise RuntimeStateError(f"plugin id must be a non-blank string, got {plugin_id!r}")
    return plugin_id.strip()
