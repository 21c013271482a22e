"""``stellatune doctor``: every check reported, JSON form, exit code by failures."""

from __future__ import annotations

import json

from stellatune.cli import main


def test_doctor_json(tmp_path, capsys):
    rc = main(["doctor", "--json", "--plugins-dir", str(tmp_path / "plugins")])
    doc = json.loads(capsys.readouterr().out)
    names = {c["name"] for c in doc["checks"]}
    assert {"audio devices", "libwasmtime", "FTZ/DAZ", "compile cache", "plugins dir"} <= names
    assert all(c["status"] in ("ok", "warn", "fail") for c in doc["checks"])
    assert rc == (0 if doc["ok"] else 1)


def test_doctor_flags_a_broken_manifest(tmp_path, capsys):
    broken = tmp_path / "plugins" / "dev.broken"
    broken.mkdir(parents=True)
    (broken / "plugin.json").write_text("{not json")
    (broken / ".install.json").write_text("{}")
    rc = main(["doctor", "--plugins-dir", str(tmp_path / "plugins")])
    out = capsys.readouterr().out
    assert "plugins dir" in out
    if "FAIL" in out:
        assert rc == 1 and "hint:" in out
