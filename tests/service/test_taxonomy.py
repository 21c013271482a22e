"""The failure taxonomy: docs/errors.md is the enum's table; every exception class maps."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from stellatune import errors
from stellatune.taxonomy import TABLE, ErrorCode, classify, code_of

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def _doc_rows() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| `([a-z-]+)` \| (\w+) \| .* \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def test_docs_table_matches_the_enum():
    rows = _doc_rows()
    assert set(rows) == {c.value for c in ErrorCode}
    for code in ErrorCode:
        severity, hint = rows[code.value]
        assert severity == code.severity.value, code
        assert hint == TABLE[code][1].replace("|", "/"), code


def test_every_code_has_a_severity_and_a_hint():
    assert set(TABLE) == set(ErrorCode)
    assert all(code.hint for code in ErrorCode)


def test_every_exception_class_maps_to_a_specific_code():
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.StellatuneError) and cls is not errors.StellatuneError:
            assert any(c in _mapped() for c in cls.__mro__[:-3]), cls


def _mapped():
    from stellatune.taxonomy import _BY_CLASS

    return _BY_CLASS


def test_classify():
    f = classify(errors.PluginTimeout("slow", plugin_id="p", capability="dsp"), action="chain.insert")
    assert (f.code, f.plugin_id, f.capability, f.action) == (ErrorCode.PLUGIN_TIMEOUT, "p", "dsp", "chain.insert")
    assert f.to_json()["severity"] == "error"
    assert code_of(errors.PluginError(errors.PluginErrorCode.DENIED, "no")) is ErrorCode.PLUGIN_DENIED
    assert code_of(errors.PortAudioError("Pa_OpenStream", -9996, "bad device")) is ErrorCode.AUDIO_DEVICE
    assert code_of(ValueError("x")) is ErrorCode.INTERNAL
