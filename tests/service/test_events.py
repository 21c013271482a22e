"""The event hub and the rotating events log (in-process)."""

from __future__ import annotations

import json
import threading

import jsonschema
import pytest

from stellatune.events import EVENT_KINDS, EventHub
from stellatune.service import EVENTS_SCHEMA_PATH
from stellatune.service.eventlog import EventLog

SCHEMA = json.loads(EVENTS_SCHEMA_PATH.read_text())


def test_schema_lists_every_kind():
    assert set(SCHEMA["properties"]["kind"]["enum"]) == set(EVENT_KINDS)


def test_every_engine_fault_kind_has_an_event_kind():
    from stellatune.engine._core import FAULT_KINDS
    from stellatune.service.app import STAGE_FAULT_EVENTS

    kinds = {k: STAGE_FAULT_EVENTS.get(k, "stage-fault") for k in [*FAULT_KINDS.values(), "plugin-error"] if k}
    assert set(kinds.values()) <= EVENT_KINDS
    assert kinds["timeout"] == "stage-timeout" and kinds["non-finite"] == "stage-non-finite"
    assert {k for k, v in kinds.items() if v == "stage-fault"} == {
        "trap",
        "bad-frames",
        "memory-grow",
        "error-code",
        "plugin-error",
    }
    fault_enum = SCHEMA["$defs"]["stage-fault-data"]["properties"]["fault"]["enum"]
    assert set(fault_enum) == set(kinds)


def _event(kind: str, **data) -> dict:
    return {"ts": 1.0, "seq": 1, "kind": kind, "severity": "error", "plugin_id": "p.x", "data": data}


def test_schema_ties_each_fault_event_to_its_fault_kind():
    where = {"index": 0, "spec": "p.x:t:{}", "message": "", "code": 0, "block": 12}
    jsonschema.validate(_event("stage-timeout", fault="timeout", **where), SCHEMA)
    jsonschema.validate(_event("stage-non-finite", fault="non-finite", **where), SCHEMA)
    jsonschema.validate(_event("stage-fault", fault="trap", **where), SCHEMA)
    for kind, fault in (("stage-timeout", "trap"), ("stage-fault", "timeout"), ("stage-fault", "non-finite")):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(_event(kind, fault=fault, **where), SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_event("stage-timeout", fault="timeout"), SCHEMA)  # no index/spec
    transition = {"from": "missing", "to": "active", "trigger": "load_new", "outcome": "applied", "detail": "new"}
    jsonschema.validate(_event("plugin-transition", **transition, duration_ms=3.5, sync_ms=4.0), SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_event("plugin-transition", **transition), SCHEMA)  # no duration_ms


def test_hub_numbers_filters_and_validates():
    hub = EventHub()
    got, only = [], []
    hub.subscribe(got.append)
    unsub = hub.subscribe(only.append, kinds=["seek"])
    threads = [threading.Thread(target=lambda: [hub.emit("seek", position=1.0) for _ in range(50)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    hub.emit("xrun", severity="warning", count=1, new=1)
    assert [e["seq"] for e in got] == list(range(1, 202))
    assert len(only) == 200
    unsub()
    hub.emit("seek", position=2.0)
    assert len(only) == 200
    for e in got:
        jsonschema.validate(e, SCHEMA)
    with pytest.raises(ValueError):
        hub.subscribe(print, kinds=["nope"])
    with pytest.raises(ValueError):
        hub.emit("nope")


def test_a_failing_callback_is_ignored():
    hub = EventHub()
    got = []
    hub.subscribe(lambda e: 1 / 0)
    hub.subscribe(got.append)
    hub.emit("queue-empty")
    assert len(got) == 1


def test_events_log_rotates_by_size(tmp_path):
    path = tmp_path / "ev.jsonl"
    log = EventLog(path, max_bytes=2000, backups=2)
    hub = EventHub()
    hub.subscribe(log)
    for i in range(200):
        hub.emit("seek", position=float(i))
    log.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["ev.jsonl", "ev.jsonl.1", "ev.jsonl.2"]
    for f in files:
        assert f.stat().st_size <= 2000
        for line in f.read_text().splitlines():
            jsonschema.validate(json.loads(line), SCHEMA)
    last = [json.loads(line) for line in path.read_text().splitlines()]
    assert last[-1]["data"]["position"] == 199.0
