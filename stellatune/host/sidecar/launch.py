"""Turning a launch spec into a running process: checks, environment, endpoints, spawn.

A :class:`LaunchPlan` is the checked spec (made once per supervised sidecar); each
:class:`Generation` is one OS process started from it, with its own endpoint directory, so a
restart never shares a socket or ring with the process it replaces.

The child gets: cwd = the plugin root; an environment that is **empty** except the variables
named in ``permissions.env`` (copied from the host), the plugin's own ``env`` entries, and the
endpoint variables; a new session (its own process group, so teardown kills grandchildren too);
stdin always piped (EOF on stdin is the request to shut down); stdout piped only when stdio is a
channel, else merged with stderr into a drained log pipe, so a chatty child never blocks.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ... import diagnostics
from ..errors import invalid_arg, io_error, os_reason
from ..grants import PluginHostContext
from .spec import (
    ENV_PREFIX,
    LaunchSpec,
    TransportKind,
    TransportOption,
    control_env_names,
    data_env_names,
    normalise_role,
)
from .transports import Endpoint, create_endpoint

__all__ = ["LaunchPlan", "Generation", "plan_launch"]

LOG_TAIL_LINES = 200
_DATA_PREFIX = f"{ENV_PREFIX}DATA_"
# Longest first, so "PCM_LOOPBACK_TCP" is role PCM over loopback-tcp, not role PCM_LOOPBACK.
_SUFFIX_KINDS = sorted(((s, k) for k in TransportKind for s in k.env_suffixes), key=lambda sk: -len(sk[0]))


@dataclass(frozen=True)
class RoleEndpoint:
    """A data endpoint the plugin declared for one role by naming its env variable."""

    env_name: str
    role: str
    kind: TransportKind


@dataclass(frozen=True)
class LaunchPlan:
    plugin_id: str
    root: Path
    executable: Path
    args: tuple[str, ...]
    env: dict[str, str]
    """Host variables allowed by permissions.env plus the plugin's entries (no endpoints)."""
    control: tuple[TransportOption, ...]
    data: tuple[TransportOption, ...]
    roles: tuple[RoleEndpoint, ...]
    stdio: bool
    """Whether stdin/stdout form a channel (stdio listed, or no transport listed at all)."""
    name: str = ""
    """The executable as the plugin named it: what messages to the plugin say (never the
    resolved path, which may be a symlink's target)."""


def plan_launch(ctx: PluginHostContext, spec: LaunchSpec) -> LaunchPlan:
    """Check ``spec`` against the plugin's grants; raise ``denied``/``invalid-arg``/``not-found``."""
    executable = ctx.grants.check_sidecar(spec.executable)
    for arg in spec.args:
        if "\0" in arg:
            raise invalid_arg("sidecar argument contains NUL")
    control = tuple(
        TransportOption(TransportKind(o.kind), o.priority, o.max_frame_bytes) for o in spec.preferred_control
    )
    data = tuple(TransportOption(TransportKind(o.kind), o.priority, o.max_frame_bytes) for o in spec.preferred_data)
    env = {name: os.environ[name] for name in sorted(ctx.grants.env_names) if name in os.environ}
    roles: list[RoleEndpoint] = []
    for name, value in spec.env:
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise invalid_arg(f"invalid sidecar env name {name!r}")
        if name.startswith(ENV_PREFIX):
            roles.append(_role_endpoint(name))
            continue
        env[name] = value
    listed = {o.kind for o in control + data}
    stdio = TransportKind.STDIO in listed or not listed
    return LaunchPlan(
        ctx.plugin_id,
        ctx.grants.root,
        executable,
        tuple(spec.args),
        env,
        control,
        data,
        tuple(roles),
        stdio,
        name=spec.executable.strip(),
    )


def _role_endpoint(name: str) -> RoleEndpoint:
    rest = name[len(_DATA_PREFIX) :] if name.startswith(_DATA_PREFIX) else ""
    for suffix, kind in _SUFFIX_KINDS:
        if rest.endswith("_" + suffix) and kind is not TransportKind.STDIO:
            role = rest[: -len(suffix) - 1]
            if role and normalise_role(role) == role:
                return RoleEndpoint(name, role, kind)
    raise invalid_arg(
        f"sidecar env {name!r}: STELLATUNE_SIDECAR_* names are set by the host; a plugin may only "
        "declare a data role as STELLATUNE_SIDECAR_DATA_<ROLE>_<TRANSPORT>"
    )


class Generation:
    """One started process of a supervised sidecar, with its endpoints and log drain."""

    def __init__(self, plan: LaunchPlan, index: int, directory: Path, logger: logging.Logger):
        self.index = index
        self.directory = directory
        self.exited = threading.Event()
        self.returncode: Optional[int] = None
        self.log_tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.endpoints: dict[tuple[str, TransportKind], Endpoint] = {}
        self._logger = logger
        directory.mkdir(mode=0o700)
        try:
            env = dict(plan.env)
            self._make_endpoints(plan, env)
            self._spawn(plan, env)
        except BaseException:
            self.cleanup()
            self.close_pipes()
            raise

    def _add(self, env: dict[str, str], env_name: str, name: str, stem: str, option: TransportOption) -> None:
        """Create the endpoint (once per name and kind) and publish it under ``env_name``."""
        key = (name, option.kind)
        if key not in self.endpoints:
            self.endpoints[key] = create_endpoint(
                option.kind, name, self.directory, stem=stem, max_frame_bytes=option.max_frame_bytes
            )
        env[env_name] = self.endpoints[key].env_value

    def _make_endpoints(self, plan: LaunchPlan, env: dict[str, str]) -> None:
        try:
            for o in plan.control:
                if o.kind is not TransportKind.STDIO:
                    self._add(env, control_env_names(o.kind)[0], "control", "c", o)
            for o in plan.data:
                if o.kind is not TransportKind.STDIO:
                    self._add(env, data_env_names(o.kind, None)[0], "data", "d", o)
            for i, r in enumerate(plan.roles):
                # A role's ring is sized like the data options of the same kind.
                size = max((o.max_frame_bytes or 0 for o in plan.data if o.kind is r.kind), default=0) or None
                self._add(env, r.env_name, f"data-{r.role}", f"r{i}", TransportOption(r.kind, 0, size))
        except OSError as exc:
            raise io_error(f"cannot create sidecar endpoints: {os_reason(exc)}") from None
        if plan.stdio:
            env[control_env_names(TransportKind.STDIO)[0]] = "stdio"
            env[data_env_names(TransportKind.STDIO, None)[0]] = "stdio"

    def _spawn(self, plan: LaunchPlan, env: dict[str, str]) -> None:
        log_r, log_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.popen = subprocess.Popen(
                [str(plan.executable), *plan.args],
                cwd=plan.root,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE if plan.stdio else log_w,
                stderr=log_w,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            os.close(log_r)
            raise io_error(f"cannot start sidecar {plan.name!r}: {os_reason(exc)}") from None
        finally:
            os.close(log_w)
        self.pid = self.popen.pid
        diagnostics.track("sidecar_processes", self)
        self.pidfd: Optional[int] = os.pidfd_open(self.pid)
        if plan.stdio:
            assert self.popen.stdin is not None and self.popen.stdout is not None
            fds = (self.popen.stdout.fileno(), self.popen.stdin.fileno())
            self.endpoints[("stdio", TransportKind.STDIO)] = create_endpoint(
                TransportKind.STDIO, "stdio", self.directory, stdio_fds=fds
            )
        self._drain = threading.Thread(
            target=self._drain_log, args=(log_r,), name=f"sidecar-log-{self.pid}", daemon=True
        )
        self._drain.start()

    def _drain_log(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as stream:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.log_tail.append(line)
                self._logger.info("[pid %d] %s", self.pid, line)

    def endpoint(self, name: str, kind: TransportKind) -> Optional[Endpoint]:
        return self.endpoints.get((name, kind))

    def close_stdin(self) -> None:
        """EOF on stdin: the sidecar's cue to shut down."""
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except OSError:
                pass

    def kill_group(self) -> None:
        """SIGKILL the process and everything it started (its session's process group)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def reap(self) -> int:
        """Collect the exit status (the process must have exited); negative = killed by signal."""
        self.returncode = self.popen.wait()
        diagnostics.release("sidecar_processes", self)
        return self.returncode

    def cleanup(self) -> None:
        """Close the endpoints and remove the generation's directory; the process must be gone
        (or never started). The stdio pipes stay open, so whatever the sidecar wrote before
        exiting can still be read: :meth:`close_pipes` ends them."""
        for endpoint in self.endpoints.values():
            endpoint.close()
        if getattr(self, "popen", None) is not None:
            self._drain.join(2.0)  # EOF arrives once the whole process group is gone
        pidfd = getattr(self, "pidfd", None)
        if pidfd is not None:
            os.close(pidfd)
            self.pidfd = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def close_pipes(self) -> None:
        popen = getattr(self, "popen", None)
        for pipe in (popen.stdin, popen.stdout) if popen is not None else ():
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
