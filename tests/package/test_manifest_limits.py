"""The optional ``limits`` block: validated strictly (unknown keys refused), carried through
``to_json`` and into the runtime's plugin info."""

from __future__ import annotations

import pytest

from stellatune.errors import ManifestError
from stellatune.manifest import Limits, parse_manifest

BASE = {
    "schema_version": 1,
    "id": "dev.example.x",
    "name": "X",
    "version": "1",
    "api_version": 1,
    "components": [
        {
            "id": "c",
            "path": "x.wasm",
            "world": "stellatune:plugin/dsp-plugin@0.1.0",
            "abilities": [{"kind": "dsp", "type_id": "x"}],
        }
    ],
}


def test_absent_limits_are_the_defaults_and_are_not_written_out():
    m = parse_manifest(BASE)
    assert m.limits == Limits() and m.limits.hot_path_memory_mib is None
    assert "limits" not in m.to_json()
    assert parse_manifest({**BASE, "limits": None}).limits == Limits()


@pytest.mark.parametrize("mib", [1, 256, 4096])
def test_a_valid_limit_round_trips(mib):
    m = parse_manifest({**BASE, "limits": {"hot_path_memory_mib": mib}})
    assert m.limits.hot_path_memory_mib == mib
    assert m.to_json()["limits"] == {"hot_path_memory_mib": mib}
    assert parse_manifest(m.to_json()) == m


@pytest.mark.parametrize(
    "limits, path, rule",
    [
        ({"hot_path_memory_mib": 0}, "limits.hot_path_memory_mib", "memory-mib"),
        ({"hot_path_memory_mib": -5}, "limits.hot_path_memory_mib", "memory-mib"),
        ({"hot_path_memory_mib": 4097}, "limits.hot_path_memory_mib", "memory-mib"),
        ({"hot_path_memory_mib": 1.5}, "limits.hot_path_memory_mib", "type"),
        ({"hot_path_memory_mib": "64"}, "limits.hot_path_memory_mib", "type"),
        ({"hot_path_memory_mib": True}, "limits.hot_path_memory_mib", "type"),
        ({"hot_path_memory": 64}, "limits.hot_path_memory", "unknown-key"),
        ([64], "limits", "type"),
    ],
)
def test_broken_limits_name_the_field_and_the_rule(limits, path, rule):
    with pytest.raises(ManifestError) as caught:
        parse_manifest({**BASE, "limits": limits})
    assert [(p.json_path, p.rule) for p in caught.value.problems] == [(path, rule)]
