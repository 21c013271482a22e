"""Lyrics in a library import, through the real example plugin examples/plugins/lrc-lyrics
(built from source, installed, granted) against an LRCLIB-shaped API on loopback: granted, its
providers search ``"<artist> <title>"`` for each tagged track and the catalog stores what they
fetch, serially and on a LocalCluster (the config travels to the workers with the plugin);
not granted, no request is made."""

from __future__ import annotations

import http.server
import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stellatune import package
from stellatune.cli import main
from stellatune.errors import LibraryError
from stellatune.library import import_library

from ..conftest import loopback_http, send_json
from .conftest import rows

pytestmark = pytest.mark.slow  # builds lrc-lyrics with componentize-py (cached after)

LRC = "dev.stellatune.example.lrc-lyrics"
SOURCE = f"{LRC}/lrc"
#: What the service knows: (artist, title) → LRC text. Tagged tracks of the library below that
#: are not here get no lyrics (the search finds nothing).
LYRICS = {
    ("Artist 0", "Track 2"): "[00:01.00]two\n",
    ("Artist 1", "Track 4"): "[00:00.50]four\n[00:01.50]more\n",
    ("Artist 1", "Track 5"): "[00:02.00]five\n",
}


@dataclass
class Lrclib:
    """The loopback service: its ``host:port`` and the search keywords it was asked."""

    address: str
    searches: list[str] = field(default_factory=list)

    @property
    def config(self) -> dict[str, str]:
        return {"base_url": f"http://{self.address}"}


def _handler(service: Lrclib) -> type[http.server.BaseHTTPRequestHandler]:
    records = {i: (artist, title, text) for i, ((artist, title), text) in enumerate(sorted(LYRICS.items()))}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            url = urllib.parse.urlsplit(self.path)
            body: object
            if url.path == "/api/search":
                q = urllib.parse.parse_qs(url.query).get("q", [""])[0]
                service.searches.append(q)
                body = [
                    {"id": i, "trackName": title, "artistName": artist}
                    for i, (artist, title, _) in records.items()
                    if q.lower() == f"{artist} {title}".lower()
                ]
            elif url.path.startswith("/api/get/") and url.path[9:].isdigit() and int(url.path[9:]) in records:
                body = {"id": int(url.path[9:]), "syncedLyrics": records[int(url.path[9:])][2], "plainLyrics": None}
            else:
                self.send_error(404)
                return
            send_json(self, body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def lrclib() -> Iterator[Lrclib]:
    service = Lrclib("")
    with loopback_http(_handler(service)) as service.address:
        yield service


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stbench.librarygen import generate_library

    # Two folders of six: tagged FLAC and OGG tracks of "Artist 0" and "Artist 1" (mutagen reads
    # their tags; the WAV files' RIFF INFO tags it does not), and untagged ones.
    lib = generate_library(tmp_path_factory.mktemp("lyrics"), folders=2, per_folder=6, corrupt=0, duplicates=0)
    return lib.root


def _plugins(tmp_path: Path, built, grant: str | None) -> Path:
    plugins = tmp_path / "plugins"
    package.install_from_artifact(plugins, built("lrc-lyrics"))
    if grant is not None:
        assert main(["plugins", "grant", LRC, "--http", grant, "--plugins-dir", str(plugins)]) == 0
    return plugins


def _expected(got: dict[str, dict]) -> dict[str, str | None]:
    """path → the lyrics each row should carry: LYRICS by its tags, else none."""
    return {p: LYRICS.get((r["artist"], r["title"])) for p, r in got.items()}


def test_granted_lyrics_plugin_fills_the_catalog_serially_and_on_a_cluster(music, built, lrclib, tmp_path, capsys):
    plugins = _plugins(tmp_path, built, grant=lrclib.address)
    db = tmp_path / "serial.sqlite"
    report = import_library([music], db, workers=0, plugins_dir=plugins, lyrics_config={LRC: lrclib.config})
    assert report.failed == 0
    got = rows(db)
    expected = _expected(got)
    assert sum(text is not None for text in expected.values()) == len(LYRICS)  # each record matches a track
    assert {p: r["lyrics"] for p, r in got.items()} == expected
    assert all(r["lyrics_source"] == (SOURCE if expected[p] else None) for p, r in got.items())
    tagged = sorted(f"{r['artist']} {r['title']}" for r in got.values() if r["title"])
    assert sorted(lrclib.searches) == tagged  # one search per tagged track, none for the others

    # On a LocalCluster, through the CLI: the zip, the grant and the config reach the workers.
    lrclib.searches.clear()
    capsys.readouterr()  # the grant's message
    cluster_db = tmp_path / "cluster.sqlite"
    config = f"{LRC}={json.dumps(lrclib.config)}"
    argv = ["library", "import", str(music), "--db", str(cluster_db), "--workers", "2", "--batch-size", "3"]
    assert main([*argv, "--plugins-dir", str(plugins), "--lyrics-config", config, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["imported"] == len(got)
    assert rows(cluster_db) == got
    assert sorted(lrclib.searches) == tagged


def test_a_config_the_provider_refuses_stops_the_import_before_any_file(music, built, lrclib, tmp_path):
    plugins = _plugins(tmp_path, built, grant=lrclib.address)
    db = tmp_path / "bad.sqlite"
    with pytest.raises(LibraryError, match="refused its config"):
        import_library([music], db, workers=0, plugins_dir=plugins, lyrics_config={LRC: {"base_url": "ftp://x"}})
    assert rows(db) == {} and lrclib.searches == []


def test_an_ungranted_lyrics_plugin_is_not_asked(music, built, lrclib, tmp_path):
    plugins = _plugins(tmp_path, built, grant=None)
    with pytest.raises(LibraryError, match="not an active lyrics plugin with host grants"):
        import_library([music], tmp_path / "x.sqlite", workers=0, plugins_dir=plugins, lyrics_config={LRC: {}})
    db = tmp_path / "none.sqlite"
    report = import_library([music], db, workers=0, plugins_dir=plugins)
    assert report.imported == 12
    assert all(r["lyrics"] is None and r["lyrics_source"] is None for r in rows(db).values())
    assert lrclib.searches == []
