"""Fuzzing the service's JSON-RPC framing in process, byte by byte.

tests/service/test_service.py already sends hypothesis-made requests (random methods and params
in valid envelopes) to a running ``stellatune serve`` and checks it survives; this does not
repeat that. It feeds ``parse_request`` arbitrary lines (random bytes, broken UTF-8, envelopes
with every field mistyped, deep nesting, huge numbers) and checks the contract the server's
loop relies on: a ``Request``, an auth object, or an ``RpcRequestError`` with a JSON-RPC code,
and that the reply the server would send for it encodes.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import strategies as st

from stellatune.errors import RpcRequestError
from stellatune.service.protocol import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    Request,
    encode,
    error_message,
    parse_request,
    reject,
    result_message,
    rpc_error_of,
)
from stellatune.taxonomy import ErrorCode

pytestmark = pytest.mark.fuzz

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    doc: dict[str, object] = {}
    for key, good in (
        ("jsonrpc", st.just("2.0")),
        ("id", st.integers(-(2**60), 2**60) | st.text(max_size=8) | st.none()),
        ("method", st.sampled_from(["player.status", "service.ping", "chain.insert", "x", ""])),
        ("params", st.dictionaries(st.text(max_size=6), json_values, max_size=3)),
        ("auth", st.text(max_size=8)),
    ):
        how = draw(st.sampled_from(["good", "good", "absent", "wrong"]))
        if how == "good":
            doc[key] = draw(good)
        elif how == "wrong":
            doc[key] = draw(json_values)
    return json.dumps(doc).encode()


lines = st.one_of(
    envelopes(),
    st.binary(max_size=120),
    st.text(max_size=120).map(lambda t: t.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [
            b"[" * 100_000 + b"]" * 100_000,
            b'{"jsonrpc": "2.0", "id": 1, "method": "x", "params": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            b'{"jsonrpc": "2.0", "id": 1e400, "method": "x"}',
            b'{"jsonrpc": "2.0", "id": NaN, "method": "x"}',
            b'{"jsonrpc": "2.0", "id": 1, "method": "x", "params": {"v": 1' + b"0" * 5000 + b"}}",
            b'{"jsonrpc": "2.0", "id": 1, "method": "x", "method": "y"}',
            b"\xef\xbb\xbf{}",
            b'{"jsonrpc": "2.0", "id": "\\ud800", "method": "x"}',
        ]
    ),
)


def _replies(req: Request) -> list[bytes]:
    """What the server sends back: a result, or an error that quotes the method."""
    missing = reject(ErrorCode.METHOD_NOT_FOUND, f"no such method: {req.method}")
    return [
        encode(result_message(req.id, {"ok": True})),
        encode(error_message(req.id, missing)),
        encode(error_message(req.id, rpc_error_of(ValueError("refused")))),
    ]


def test_any_line_is_a_request_or_a_json_rpc_error_and_the_reply_encodes(fuzz):

    def check(line: bytes) -> str:
        try:
            req = parse_request(line)
        except RpcRequestError as e:
            assert e.rpc_code in (PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS), e.rpc_code
            json.loads(encode(error_message(None, e)))
            return f"error {e.rpc_code}"
        if not isinstance(req, Request):
            assert isinstance(req, dict) and "auth" in req
            return "auth"
        assert isinstance(req.method, str) and req.method and isinstance(req.params, dict)
        for reply in _replies(req):
            assert json.loads(reply)["jsonrpc"] == "2.0"
        return "request"

    fuzz.run("rpc_lines", lines, check, short=200, full=5000)


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc": "2.0", "id": 1e400, "method": "service.ping"}',
        b'{"jsonrpc": "2.0", "id": "\\ud800", "method": "service.ping"}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "\\udfff"}',
    ],
    ids=["inf-id", "surrogate-id", "surrogate-method"],
)
def test_an_odd_request_id_still_gets_a_reply(line):
    try:
        req = parse_request(line)
    except RpcRequestError as e:  # refusing it is a fine answer too, as long as it encodes
        json.loads(encode(error_message(None, e)))
        return
    assert isinstance(req, Request)
    for reply in _replies(req):
        json.loads(reply)
