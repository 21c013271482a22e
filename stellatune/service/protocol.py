"""JSON-RPC 2.0 framing of the control API: one JSON object per line, UTF-8.

Errors use the JSON-RPC codes; their ``data`` is a :class:`~stellatune.taxonomy.Failure`
(``code``, ``plugin_id``, ``capability``, ``action``, ``severity``, ``hint``).
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional, Union

from ..errors import RpcRequestError
from ..taxonomy import ErrorCode, Failure, classify, failure

__all__ = [
    "MAX_MESSAGE_BYTES",
    "PARSE_ERROR",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "INVALID_PARAMS",
    "INTERNAL_ERROR",
    "SERVER_ERROR",
    "RpcError",
    "rpc_error",
    "reject",
    "Request",
    "parse_request",
    "encode",
    "result_message",
    "error_message",
    "notification",
    "rpc_error_of",
    "json_safe",
    "quote",
]

#: A request line longer than this is refused (and skipped up to its newline).
MAX_MESSAGE_BYTES = 1 << 20

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
#: A method ran and failed (a StellatuneError): the implementation-defined server error.
SERVER_ERROR = -32000

_RPC_CODE = {
    ErrorCode.PARSE_ERROR: PARSE_ERROR,
    ErrorCode.MESSAGE_TOO_LARGE: INVALID_REQUEST,
    ErrorCode.INVALID_REQUEST: INVALID_REQUEST,
    ErrorCode.UNAUTHORIZED: INVALID_REQUEST,
    ErrorCode.METHOD_NOT_FOUND: METHOD_NOT_FOUND,
    ErrorCode.INVALID_PARAMS: INVALID_PARAMS,
    ErrorCode.INTERNAL: INTERNAL_ERROR,
}

Id = Union[str, int, float, None]


#: A failure to send back as a JSON-RPC error (``failure``, ``rpc_code``).
RpcError = RpcRequestError


def rpc_error(fail: Failure) -> RpcRequestError:
    return RpcRequestError(fail, _RPC_CODE.get(fail.code, SERVER_ERROR))


def reject(code: ErrorCode, message: str, **where: Optional[str]) -> RpcRequestError:
    """The error of a request refused with ``code``."""
    return rpc_error(failure(code, message, **where))


class Request:
    __slots__ = ("id", "method", "notify", "params")

    def __init__(self, method: str, params: dict[str, Any], id: Id, notify: bool):
        self.method, self.params, self.id, self.notify = method, params, id, notify


#: How much of a client's method name an error message quotes (the name may be 1 MiB long).
QUOTE_CHARS = 200


def quote(text: str) -> str:
    """``text`` as an error message quotes it: cut to :data:`QUOTE_CHARS`."""
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + f"... ({len(text)} chars)"


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def parse_request(line: bytes) -> Union[Request, dict[str, Any]]:
    """A :class:`Request`, or the decoded object when it is not one (the caller checks auth
    messages); raises :class:`RpcError` on a parse error or an invalid request.

    The error carries what could be read of the request: ``request_id`` (the reply's id) and
    ``notify`` (a well-formed notification gets no reply, not even an error)."""
    try:
        doc = json.loads(line, parse_constant=_not_json)  # NaN and Infinity are not JSON
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise reject(ErrorCode.PARSE_ERROR, f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise reject(ErrorCode.INVALID_REQUEST, "a request is a JSON object (batches are not supported)")
    if "method" not in doc and "auth" in doc:
        return doc
    rid = doc.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int, float))):
        raise reject(ErrorCode.INVALID_REQUEST, "id must be a string, a number or null")
    if isinstance(rid, float) and not math.isfinite(rid):
        # 1e400 parses to inf, which JSON cannot carry back in the reply.
        raise reject(ErrorCode.INVALID_REQUEST, "id must be a finite number")
    try:
        if doc.get("jsonrpc") != "2.0":
            raise reject(ErrorCode.INVALID_REQUEST, 'jsonrpc must be "2.0"')
        method = doc.get("method")
        if not isinstance(method, str) or not method:
            raise reject(ErrorCode.INVALID_REQUEST, "method must be a non-empty string")
    except RpcRequestError as err:
        err.request_id = rid  # not a valid request object: answered even without an id
        raise
    try:
        params = doc.get("params", {})
        if params is None:
            params = {}
        if isinstance(params, list) and not params:
            params = {}
        if not isinstance(params, dict):
            raise reject(ErrorCode.INVALID_PARAMS, "params must be an object (named parameters)")
        if not _finite(params):
            raise reject(ErrorCode.INVALID_PARAMS, "numbers must be finite (1e400 is out of range)")
    except RpcRequestError as err:
        err.request_id, err.notify = rid, "id" not in doc
        raise
    return Request(method, params, rid, "id" not in doc)


def _finite(value: Any) -> bool:
    """No inf anywhere in ``value`` (iteratively: params may nest deeper than the stack)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return True


def json_safe(value: Any) -> Any:
    """``value`` with every inf and NaN replaced by None: what strict JSON can carry (an event's
    figures may be non-finite; a reply or log line must still be JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def encode(message: dict[str, Any]) -> bytes:
    """One line of UTF-8 JSON. Total over what a request can smuggle in: a lone surrogate
    (``"\\ud800"`` decodes to one, which UTF-8 cannot carry) is sent back as its JSON escape,
    a non-finite number (in an event's figures) as null."""
    try:
        text = json.dumps(message, ensure_ascii=False, allow_nan=False, default=str)
    except ValueError:
        message = json_safe(message)
        text = json.dumps(message, ensure_ascii=False, allow_nan=False, default=str)
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:
        return json.dumps(message, ensure_ascii=True, allow_nan=False, default=str).encode() + b"\n"


def result_message(rid: Id, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def error_message(rid: Id, err: RpcError) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": rid,
        "error": {"code": err.rpc_code, "message": err.failure.message, "data": err.failure.to_json()},
    }


def notification(method: str, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def rpc_error_of(exc: BaseException, action: Optional[str] = None) -> RpcError:
    """An exception a method raised, classified by the taxonomy."""
    if isinstance(exc, RpcError):
        return exc
    return rpc_error(classify(exc, action=action))
