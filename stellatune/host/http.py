"""http-client (``fetch-json``) and the one HTTP request helper the http streams share.

Requests go through ``http.client`` from the standard library: one connection per request,
explicit connect and read timeouts, and redirects followed only to hosts the plugin may reach
(each hop is checked against ``permissions.http`` again). Inside a plugin call every wait is
also cut to the call's budget, and a cancelled call shuts the socket down (``budget.py``).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urljoin

from . import budget
from .errors import invalid_arg, io_error, timeout
from .grants import HttpTarget, PluginHostContext
from .net import connect_tcp, socket_wait

__all__ = ["FETCH_JSON_MAX_BYTES", "FETCH_JSON_TIMEOUT_S", "HttpReply", "fetch_json", "send_request"]

#: Largest body ``fetch_json`` accepts.
FETCH_JSON_MAX_BYTES = 4 * 1024 * 1024
#: Deadline for a whole ``fetch_json`` call (connect, headers and body).
FETCH_JSON_TIMEOUT_S = 15.0
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass
class HttpReply:
    """A response whose headers are read, with the socket its body arrives on (to adjust the
    read timeout while streaming) and the URL it finally came from."""

    response: http.client.HTTPResponse
    sock: socket.socket
    target: HttpTarget

    def close(self) -> None:
        self.response.close()
        self.sock.close()


def send_request(
    ctx: PluginHostContext,
    url: str,
    *,
    method: str = "GET",
    headers: Iterable[tuple[str, str]] = (),
    body: Optional[bytes] = None,
    connect_timeout_s: float,
    read_timeout_s: float,
    deadline: Optional[float] = None,
) -> HttpReply:
    """Send one request to an allowed URL and return the response with its headers read.

    GET and HEAD follow up to :data:`MAX_REDIRECTS` redirects to allowed hosts. ``deadline``
    (``time.monotonic()`` based) bounds every hop together; each wait is cut to what is left.
    The caller owns the reply and must ``close()`` it.
    """
    header_list = list(headers)
    for _hop in range(MAX_REDIRECTS + 1):
        target = ctx.grants.check_http(url)
        connect_s, read_s = connect_timeout_s, read_timeout_s
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise timeout(f"{method} {url}: no answer within the deadline")
            connect_s, read_s = min(connect_s, left), min(read_s, left)
        reply = _send_once(target, method, header_list, body, connect_s, read_s)
        location = reply.response.getheader("Location")
        if reply.response.status not in _REDIRECTS or method not in ("GET", "HEAD") or not location:
            return reply
        reply.close()
        url = urljoin(url, location)
    raise io_error(f"more than {MAX_REDIRECTS} redirects, last to {url}")


def _send_once(
    target: HttpTarget,
    method: str,
    headers: list[tuple[str, str]],
    body: Optional[bytes],
    connect_timeout_s: float,
    read_timeout_s: float,
) -> HttpReply:
    where = f"{method} {target.scheme}://{target.endpoint}{target.path}"
    sock = connect_tcp(target.host, target.port, connect_timeout_s, f"{where}: connect")
    conn = http.client.HTTPConnection(target.host, target.port, timeout=read_timeout_s)
    try:
        if target.scheme == "https":
            with socket_wait(sock, read_timeout_s, where):
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
        with socket_wait(sock, read_timeout_s, where):
            conn.sock = sock  # connected by us, so that the connect can be cut short
            conn.putrequest(method, target.path, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            return HttpReply(conn.getresponse(), sock, target)
    except ssl.SSLError as exc:  # before ValueError: a failed certificate check is both
        conn.close()
        sock.close()
        budget.check(where)
        raise io_error(f"{where}: {exc}") from None
    except ValueError as exc:  # http.client refuses header names/values with CR/LF and the like
        conn.close()
        sock.close()
        raise invalid_arg(f"{where}: {exc}") from None
    except TimeoutError:
        conn.close()
        sock.close()
        budget.check(where)
        raise timeout(f"{where}: no response within {read_timeout_s:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        sock.close()
        budget.check(where)  # a cancelled call shut the socket down: that is the error to report
        raise io_error(f"{where}: {_os_text(exc)}") from None
    except BaseException:
        conn.close()
        sock.close()
        raise


def _os_text(exc: BaseException) -> str:
    """The OS's words for an error, without the file names an OSError may carry."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def fetch_json(
    ctx: PluginHostContext,
    url: str,
    *,
    max_bytes: int = FETCH_JSON_MAX_BYTES,
    timeout_s: float = FETCH_JSON_TIMEOUT_S,
) -> str:
    """WIT ``http-client.fetch-json``: GET ``url`` and return the body, which must be JSON.

    Errors: ``invalid-arg`` (blank or malformed url), ``denied`` (host not granted),
    ``timeout`` (the whole call exceeded ``timeout_s``), ``io`` (non-2xx status, a body over
    ``max_bytes``, a body that is not UTF-8 JSON, a broken connection).
    """
    deadline = time.monotonic() + timeout_s  # the call's budget cuts every wait further
    reply = send_request(
        ctx,
        url,
        headers=[("Accept", "application/json")],
        connect_timeout_s=timeout_s,
        read_timeout_s=timeout_s,
        deadline=deadline,
    )
    response = reply.response
    try:
        if not 200 <= response.status < 300:
            raise io_error(f"GET {url} answered HTTP {response.status} {response.reason}")
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise io_error(f"GET {url}: body of {declared} bytes exceeds the {max_bytes}-byte limit")
        body = _read_capped(reply, url, max_bytes, deadline)
    finally:
        reply.close()
    try:
        text = body.decode("utf-8")
        json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise io_error(f"GET {url}: body is not JSON ({exc})") from None
    return text


def _read_capped(reply: HttpReply, url: str, max_bytes: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    total = 0
    what = f"GET {url}"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise timeout(f"GET {url}: body not received within the deadline")
        try:
            # Each wait is bounded by what is left of the deadline and of the call's budget.
            with socket_wait(reply.sock, left, what):
                chunk = reply.response.read1(64 * 1024)
        except TimeoutError:
            budget.check(what)
            raise timeout(f"GET {url}: body not received within the deadline") from None
        except (OSError, http.client.HTTPException) as exc:
            budget.check(what)
            raise io_error(f"GET {url}: reading body: {_os_text(exc)}") from None
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise io_error(f"GET {url}: body exceeds the {max_bytes}-byte limit")
        chunks.append(chunk)
