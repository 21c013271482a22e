"""What a plugin may reach: manifest permissions plus grants the host adds at run time.

Deny by default. Every check either returns the resolved target or raises ``PluginError`` with
code ``denied`` and a message naming the grant that is missing, so a plugin author can fix the
manifest from the message alone.

Grant grammar (entries of ``permissions.<field>`` in ``plugin.json``):

- ``files``: directories (or single files) the plugin may open; relative entries are relative
  to the plugin root. Containment is checked on real paths (symlinks resolved), so a link inside
  a root that points outside it is refused.
- ``http``: ``host`` (the scheme's default port only) or ``host:port``; ``[v6]:port`` for IPv6;
  ``*.example.org`` for any name below ``example.org``. Matching is the manifest's own
  :func:`stellatune.manifest.match_endpoint`, so the grammar has one definition.
- ``tcp``: ``host:port`` (same grammar; the port is required).
- ``sidecars``: executables inside the plugin root, relative, e.g. ``bin/helper``.
- ``env``: names of host environment variables a sidecar may inherit.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Optional
from urllib.parse import urlsplit

from ..errors import PluginError
from ..manifest import match_endpoint
from .calls import HostCalls
from .errors import denied, invalid_arg, not_found

__all__ = ["Grants", "HttpTarget", "PluginHostContext", "parse_host_port"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class HttpTarget:
    """An allowed HTTP(S) URL, split for ``http.client``."""

    scheme: str
    host: str
    port: int
    path: str
    """Path plus query, never empty (``/`` at least)."""

    @property
    def endpoint(self) -> str:
        return _join_host_port(self.host, self.port)


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_host_port(text: str, *, default_port: Optional[int] = None) -> tuple[str, Optional[int]]:
    """Split ``host``, ``host:port`` or ``[v6]:port``; the host comes back lowercased.

    Raises ``invalid-arg`` for a blank host or a port outside 1..65535.
    """
    spec = text.strip()
    port_text: Optional[str] = None
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest.startswith(":"):
            port_text = rest[1:]
        elif rest:
            raise invalid_arg(f"malformed endpoint {text!r}")
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
    else:
        host = spec  # a bare name, or a bare IPv6 address without a port
    host = host.strip().lower()
    if not host:
        raise invalid_arg(f"endpoint {text!r} has no host")
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise invalid_arg(f"endpoint {text!r} has an invalid port")
    return host, int(port_text)


def _is_within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives, or a relative/absolute mix
        return False


class Grants:
    """The mutable set of grants of one plugin; checks are safe to call from any thread.

    ``root`` is the plugin's install directory. Use :meth:`from_permissions` to start from the
    manifest, then ``add_*`` for what the host grants at run time (the user's music folder, a
    server the user configured).
    """

    def __init__(
        self,
        root: Path,
        *,
        files: Iterable[str] = (),
        http: Iterable[str] = (),
        tcp: Iterable[str] = (),
        sidecars: Iterable[str] = (),
        env: Iterable[str] = (),
    ):
        self.root = Path(os.path.realpath(root))
        self._lock = threading.Lock()
        self._file_roots: tuple[Path, ...] = ()
        self._http: tuple[str, ...] = ()
        self._tcp: tuple[str, ...] = ()
        self._sidecars = frozenset(self._normalise_sidecar(s) for s in sidecars)
        self._env = frozenset(e.strip() for e in env if e.strip())
        # Denials raised by the checks, by grant kind (read by the service's metrics).
        self._denials: dict[str, int] = {}
        #: Called as ``on_denied(grant, message)`` after each denial, on the thread of the host
        #: call that was refused (the service sets it to emit ``grant-denied``). Its errors are
        #: ignored: the plugin still gets its ``denied``.
        self.on_denied: Optional[Callable[[str, str], object]] = None
        for f in files:
            self.add_file_root(self.root / f)
        for h in http:
            self.add_http_host(h)
        for t in tcp:
            self.add_tcp_endpoint(t)
        # Where the manifest's grants end, so run-time additions can be told apart.
        self._initial = (len(self._file_roots), len(self._http), len(self._tcp))

    @classmethod
    def from_permissions(cls, permissions: Any, root: Path) -> Grants:
        """Grants from a ``stellatune.manifest.Permissions`` (or any object with the same
        ``files``/``http``/``tcp``/``sidecars``/``env`` string tuples; missing ones count as empty)."""
        fields = {
            name: tuple(getattr(permissions, name, ()) or ()) for name in ("files", "http", "tcp", "sidecars", "env")
        }
        return cls(root, **fields)

    # --- run-time grants -----------------------------------------------------------------

    def add_file_root(self, path: os.PathLike[str] | str) -> None:
        """Allow reading ``path`` (a directory tree or one file); relative paths are taken
        relative to the plugin root."""
        p = Path(path)
        with self._lock:
            self._file_roots = (*self._file_roots, p if p.is_absolute() else self.root / p)

    def add_http_host(self, spec: str) -> None:
        """Allow HTTP(S) to ``host`` (default port of the scheme), ``host:port`` or
        ``*.domain[:port]``."""
        parse_host_port(spec)  # refuse a malformed grant now rather than match nothing later
        with self._lock:
            self._http = (*self._http, spec.strip())

    def add_tcp_endpoint(self, spec: str) -> None:
        """Allow TCP connections to ``host:port``."""
        if parse_host_port(spec)[1] is None:
            raise invalid_arg(f"tcp grant {spec!r} needs a port (host:port)")
        with self._lock:
            self._tcp = (*self._tcp, spec.strip())

    def added_at_run_time(self) -> dict[str, list[str]]:
        """The grants added by the host after construction, by kind (``files`` as absolute
        paths, ``http``, ``tcp``); kinds with none are left out."""
        with self._lock:
            nf, nh, nt = self._initial
            added = {
                "files": [str(p) for p in self._file_roots[nf:]],
                "http": list(self._http[nh:]),
                "tcp": list(self._tcp[nt:]),
            }
        return {kind: entries for kind, entries in added.items() if entries}

    # --- checks ----------------------------------------------------------------------------

    def check_file(self, target: str) -> Path:
        """The real path of ``target`` if it lies inside a granted root, else ``denied``.

        Relative targets are relative to the plugin root. The check runs on the resolved path,
        before the file is opened, so a missing file outside the roots is ``denied`` rather than
        ``not-found`` (a plugin cannot probe the host's file system).
        """
        text = target.strip()
        if not text or "\0" in text:
            raise invalid_arg("file target is blank or contains NUL")
        candidate = Path(text)
        real = os.path.realpath(candidate if candidate.is_absolute() else self.root / candidate)
        if self.file_allowed(real):
            return Path(real)
        raise self.file_denied(text)

    def file_allowed(self, real_path: str) -> bool:
        """Whether an already resolved path lies inside a granted root."""
        return any(_is_within(real_path, os.path.realpath(root)) for root in self._file_roots)

    def denials(self) -> dict[str, int]:
        """How many times each grant kind (``files``, ``http``, ``tcp``, ``sidecars``) refused a
        request so far (a copy; kinds never denied are absent)."""
        with self._lock:
            return dict(self._denials)

    def _deny(self, grant: str, message: str) -> PluginError:
        with self._lock:
            self._denials[grant] = self._denials.get(grant, 0) + 1
        hook = self.on_denied
        if hook is not None:
            with contextlib.suppress(Exception):
                hook(grant, message)
        return denied(message)

    def file_denied(self, target: str) -> PluginError:
        # Only the plugin's own string: never the resolved path, which may be a symlink's
        # target, the plugins directory or anything else on the host.
        return self._deny("files", f"file {target!r} is not inside a granted root in permissions.files")

    def check_http(self, url: str) -> HttpTarget:
        """Split ``url`` and check its host and port against ``permissions.http``."""
        text = url.strip()
        if not text:
            raise invalid_arg("url is blank")
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise invalid_arg(f"malformed url {text!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise invalid_arg(f"url {text!r} must use http or https, not {scheme or 'no scheme'!r}")
        host = (parts.hostname or "").lower()
        if not host:
            raise invalid_arg(f"url {text!r} has no host")
        port = port or _DEFAULT_PORTS[scheme]
        if any(match_endpoint(g, host, port, _DEFAULT_PORTS[scheme]) for g in self._http):
            path = parts.path or "/"
            return HttpTarget(scheme, host, port, f"{path}?{parts.query}" if parts.query else path)
        raise self._deny("http", f"http host {_join_host_port(host, port)} is not in permissions.http")

    def check_tcp(self, target: str) -> tuple[str, int]:
        """``(host, port)`` of ``target`` if ``permissions.tcp`` lists it."""
        host, port = parse_host_port(target)
        if port is None:
            raise invalid_arg(f"tcp target {target!r} needs a port (host:port)")
        if not any(match_endpoint(g, host, port, 0) for g in self._tcp):  # 0: a port is required
            raise self._deny("tcp", f"tcp endpoint {_join_host_port(host, port)} is not in permissions.tcp")
        return host, port

    def check_sidecar(self, executable: str) -> Path:
        """Resolve a sidecar executable inside the plugin root and check ``permissions.sidecars``.

        Absolute paths and ``..`` are refused outright. Candidates are ``<root>/x`` then
        ``<root>/bin/x``; the first that exists must be listed (as its path relative to the root)
        and its real path must stay inside the root.
        """
        name = executable.strip()
        if not name:
            raise invalid_arg("sidecar executable is blank")
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            raise self._deny(
                "sidecars", f"sidecar executable {name!r} is absolute; it must be a path inside the plugin root"
            )
        rel = PurePosixPath(name.replace("\\", "/"))
        if ".." in rel.parts:
            raise self._deny("sidecars", f"sidecar executable {name!r} contains '..'")
        for candidate in (rel, PurePosixPath("bin") / rel):
            path = self.root / candidate
            if not path.exists():
                continue
            if str(candidate) not in self._sidecars:
                raise self._deny("sidecars", f"sidecar executable {str(candidate)!r} is not in permissions.sidecars")
            real = os.path.realpath(path)
            if not _is_within(real, str(self.root)):
                raise self._deny("sidecars", f"sidecar executable {str(candidate)!r} resolves outside the plugin root")
            if not os.path.isfile(real) or not os.access(real, os.X_OK):
                raise invalid_arg(f"sidecar executable {str(candidate)!r} is not an executable file")
            return Path(real)
        raise not_found(f"sidecar executable {name!r} not found in the plugin root or its bin/")

    @property
    def env_names(self) -> frozenset[str]:
        """Host environment variables a sidecar may inherit."""
        return self._env

    @staticmethod
    def _normalise_sidecar(entry: str) -> str:
        return str(PurePosixPath(entry.strip().replace("\\", "/")))


@dataclass(frozen=True)
class PluginHostContext:
    """Everything a host import needs to know about its caller: one object per plugin, shared
    by all of the plugin's instances (and passed by the executor to every service call)."""

    plugin_id: str
    root: Path
    grants: Grants
    calls: HostCalls = field(default_factory=HostCalls, compare=False)
    """The plugin's host calls by function, counted by the executor's import bindings."""

    @classmethod
    def from_permissions(cls, plugin_id: str, root: Path, permissions: Any) -> PluginHostContext:
        return cls(plugin_id, Path(root), Grants.from_permissions(permissions, Path(root)))
