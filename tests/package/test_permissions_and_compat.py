"""The permissions block, endpoint matching, and the original project's real manifests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stellatune.errors import ManifestError
from stellatune.manifest import Permissions, load_manifest, match_endpoint, parse_manifest

COMPAT_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "original-manifests"

GOOD_PERMISSIONS = {
    "files": ["data", "media/covers", "."],
    "http": ["127.0.0.1:8080", "api.example.com", "*.example.org:443", "[::1]:9000", "localhost"],
    "tcp": ["127.0.0.1:9000", "*.lan.example:7000"],
    "sidecars": ["bin/helper.py"],
    "env": ["LANG", "TZ", "_PRIVATE_1"],
}


def test_a_full_permissions_block_is_read(tmp_path, manifest_dict, pk):
    manifest_dict["permissions"] = GOOD_PERMISSIONS
    root = pk.write_package(tmp_path / "pkg", manifest_dict, {"bin/helper.py": b"print(1)\n"})
    m = load_manifest(root / "plugin.json")
    assert m.permissions == Permissions(**{k: tuple(v) for k, v in GOOD_PERMISSIONS.items()})
    assert m.to_json()["permissions"] == GOOD_PERMISSIONS


def test_no_permissions_means_nothing_is_granted(manifest_dict):
    m = parse_manifest(manifest_dict)
    assert m.permissions == Permissions() and m.permissions.is_empty()
    assert "permissions" not in m.to_json()


BAD = [
    ("files", "/etc", "safe-path"),
    ("files", "../outside", "safe-path"),
    ("files", "data/../../x", "safe-path"),
    ("files", "C:/Windows", "safe-path"),
    ("files", "d:relative", "safe-path"),
    ("files", "media\\covers", "safe-path"),
    ("files", "  ", "not-blank"),
    ("files", 3, "type"),
    ("sidecars", "/usr/bin/python3", "safe-path"),
    ("sidecars", "../bin/x", "safe-path"),
    ("http", "example.com:0", "endpoint"),
    ("http", "example.com:65536", "endpoint"),
    ("http", "example.com:http", "endpoint"),
    ("http", "http://example.com", "endpoint"),
    ("http", "example.com/path", "endpoint"),
    ("http", "api.*.example.com", "endpoint"),
    ("http", "*", "endpoint"),
    ("http", "*example.com", "endpoint"),
    ("http", "ex ample.com", "endpoint"),
    ("http", "::1", "endpoint"),
    ("http", "[::zz]:80", "endpoint"),
    ("http", ":80", "endpoint"),
    ("tcp", "127.0.0.1", "endpoint"),
    ("tcp", "db.example.com:", "endpoint"),
    ("env", "1LANG", "env-name"),
    ("env", "LANG=C", "env-name"),
    ("env", "PATH ", None),  # trimmed, then fine
]


@pytest.mark.parametrize("key,entry,rule", BAD, ids=[f"{k}:{e!r}" for k, e, _ in BAD])
def test_bad_permission_entries(manifest_dict, key, entry, rule):
    manifest_dict["permissions"] = {
        key: ["LANG" if key == "env" else "ok.example:1", entry] if key in ("env", "http", "tcp") else [entry]
    }
    if rule is None:
        parse_manifest(manifest_dict)
        return
    with pytest.raises(ManifestError) as caught:
        parse_manifest(manifest_dict)
    index = 1 if key in ("env", "http", "tcp") else 0
    assert [(p.json_path, p.rule) for p in caught.value.problems] == [(f"permissions.{key}[{index}]", rule)]


def test_permission_lists_and_block_are_type_checked(manifest_dict):
    manifest_dict["permissions"] = {"files": "data", "env": None}
    with pytest.raises(ManifestError) as caught:
        parse_manifest(manifest_dict)
    assert [(p.json_path, p.rule) for p in caught.value.problems] == [("permissions.files", "type")]
    manifest_dict["permissions"] = ["files"]
    with pytest.raises(ManifestError) as caught:
        parse_manifest(manifest_dict)
    assert [(p.json_path, p.rule) for p in caught.value.problems] == [("permissions", "type")]


def test_sidecars_must_exist_as_files_inside_the_root(tmp_path, manifest_dict, pk):
    manifest_dict["permissions"] = {"sidecars": ["bin/missing", "bin"]}
    root = pk.write_package(tmp_path / "pkg", manifest_dict, {"bin/other": b""})
    with pytest.raises(ManifestError) as caught:
        load_manifest(root / "plugin.json")
    assert [(p.json_path, p.rule) for p in caught.value.problems] == [
        ("permissions.sidecars[0]", "exists"),
        ("permissions.sidecars[1]", "exists"),
    ]


@pytest.mark.parametrize(
    "pattern,host,port,allowed",
    [
        ("api.example.com", "api.example.com", 443, True),
        ("api.example.com", "API.Example.COM", 443, True),
        ("api.example.com", "api.example.com", 8443, False),  # no port: the default one only
        ("api.example.com:8443", "api.example.com", 8443, True),
        ("api.example.com:8443", "api.example.com", 443, False),
        ("api.example.com", "evil-api.example.com", 443, False),
        ("*.example.org:443", "a.b.example.org", 443, True),
        ("*.example.org:443", "example.org", 443, False),
        ("*.example.org:443", "badexample.org", 443, False),
        ("*.example.org", "x.example.org.evil.com", 443, False),
        ("127.0.0.1:9000", "127.0.0.1", 9000, True),
        ("127.0.0.1:9000", "127.0.0.2", 9000, False),
        ("[::1]:80", "::1", 80, True),
        ("[::1]:80", "[::1]", 80, True),
        ("not a pattern", "not a pattern", 443, False),
    ],
)
def test_match_endpoint(pattern, host, port, allowed):
    assert match_endpoint(pattern, host, port, default_port=443) is allowed


COMPAT = sorted(COMPAT_DIR.glob("*.json"))


def test_the_compat_corpus_is_there():
    assert len(COMPAT) == 3, COMPAT_DIR


@pytest.mark.parametrize("source", COMPAT, ids=[p.name for p in COMPAT])
def test_the_original_projects_manifests_validate(tmp_path, source):
    root = tmp_path / "pkg"
    root.mkdir()
    shutil.copy(source, root / "plugin.json")
    document = json.loads(source.read_text())
    with pytest.raises(ManifestError) as caught:  # the .wasm files are not there yet
        load_manifest(root / "plugin.json")
    assert {p.rule for p in caught.value.problems} == {"exists"}
    for component in document["components"]:
        (root / component["path"]).parent.mkdir(parents=True, exist_ok=True)
        (root / component["path"]).write_bytes(b"\0asm")
    m = load_manifest(root / "plugin.json")
    assert m.id == document["id"]
    assert [(c.id, a.type_id) for c, a in m.abilities()] == [
        (c["id"], a["type_id"]) for c in document["components"] for a in c["abilities"]
    ]
