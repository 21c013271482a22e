"""http-source: a catalog of music on an HTTP server, described by an M3U index there.

Config ``{"base_url": "http://media.local:8080/music/", "index": "index.m3u"}``. The index and
the tracks are read through the host's ``host-stream`` (kind ``http``), so what the plugin may
reach is the host's decision: the manifest grants no server, the host adds the one the user
configured (``grants.add_http_host``). Tracks open as *passthrough* streams: the host hands the
HTTP stream to a decoder untouched, and the decoder's seeks become ``Range`` requests.
"""
import json
import posixpath
import sys
import urllib.parse

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import source
from wit_world.imports import common, host_stream

DEFAULT_INDEX = "index.m3u"
READ_CHUNK = 64 * 1024
CONNECT_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 10000


def log(text):
    print(f"http-source: {text}", file=sys.stderr, flush=True)


def invalid(message):
    return Err(common.PluginError_InvalidArg(message))


def open_url(url):
    request = host_stream.OpenRequest(host_stream.StreamOpenKind.HTTP, url, host_stream.HttpMethod.GET, [], None,
                                      CONNECT_TIMEOUT_MS, READ_TIMEOUT_MS)
    return host_stream.open(request)


def read_all(stream):
    out = bytearray()
    while True:
        chunk = stream.read(READ_CHUNK)
        if not chunk:
            return bytes(out)
        out += chunk


def ext_of(url):
    return posixpath.splitext(urllib.parse.urlsplit(url).path)[1].lstrip(".").lower() or None


def parse_m3u(text):
    """Entries of an extended M3U: ``#EXTINF:<seconds>,<artist> - <title>`` then the location."""
    items, title, artist, duration_ms = [], None, None, None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXTINF:"):
            head, _, name = line[len("#EXTINF:"):].partition(",")
            try:
                seconds = float(head.split()[0]) if head.strip() else -1
            except ValueError:
                seconds = -1
            duration_ms = int(seconds * 1000) if seconds > 0 else None
            artist, sep, song = name.partition(" - ")
            title, artist = (song.strip(), artist.strip()) if sep else (name.strip(), None)
        elif line and not line.startswith("#"):
            name = posixpath.basename(urllib.parse.urlsplit(line).path)
            items.append({"id": line, "path": line, "title": title or name, "artist": artist,
                          "duration_ms": duration_ms, "ext": ext_of(line)})
            title, artist, duration_ms = None, None, None
    return items


def empty_metadata(codec, title):
    tags = common.AudioTags(title, None, [], [], [], None, None, None, None, None, None)
    return common.MediaMetadata(tags, None, common.EncodedAudioFormat(codec, None, None, None, None), [])


class Catalog(source.Catalog):
    def __init__(self):
        self.base_url = None
        self.index = DEFAULT_INDEX
        self.opened = 0

    def _config(self, text):
        try:
            cfg = json.loads(text)
        except ValueError as e:
            raise invalid(f"config is not JSON: {e}")
        base = cfg.get("base_url")
        if base is not None:
            if not isinstance(base, str) or urllib.parse.urlsplit(base).scheme not in ("http", "https"):
                raise invalid("base_url must be an http:// or https:// URL")
            base = base if base.endswith("/") else base + "/"
        index = cfg.get("index", DEFAULT_INDEX)
        if not isinstance(index, str) or not index:
            raise invalid("index must be a path below base_url")
        return base, index

    def _url(self, location):
        """A location from the index (relative, or absolute on the same server) as a URL."""
        if self.base_url is None:
            raise invalid("no base_url configured")
        if not isinstance(location, str) or not location:
            raise invalid("a track needs a 'path'")
        url = urllib.parse.urljoin(self.base_url, location)
        base, target = urllib.parse.urlsplit(self.base_url), urllib.parse.urlsplit(url)
        # Stay below the configured library: the host's grants are per server, not per path.
        if (target.scheme, target.netloc) != (base.scheme, base.netloc) or not target.path.startswith(base.path):
            raise Err(common.PluginError_Denied(f"{location} is outside {self.base_url}"))
        return url

    def list_items_json(self, request_json):
        try:
            request = json.loads(request_json or "{}")
        except ValueError as e:
            raise invalid(f"request is not JSON: {e}")
        stream = open_url(self._url(self.index))
        try:
            items = parse_m3u(read_all(stream).decode("utf-8", "replace"))
        finally:
            stream.close()
        query = str(request.get("query", "")).lower()
        if query:
            items = [i for i in items if query in f"{i['title']} {i['artist'] or ''}".lower()]
        offset, limit = int(request.get("offset", 0)), int(request.get("limit", 1000))
        return json.dumps({"total": len(items), "items": items[offset:offset + limit]})

    def _passthrough(self, url):
        stream = open_url(url)
        self.opened += 1
        ext = ext_of(url)
        name = posixpath.basename(urllib.parse.urlsplit(url).path)
        return source.OpenedStream(source.OpenedStreamHandle_Passthrough(stream), ext,
                                   empty_metadata(ext or "unknown", name))

    def open_stream_json(self, track_json):
        try:
            track = json.loads(track_json)
        except ValueError as e:
            raise invalid(f"track is not JSON: {e}")
        if not isinstance(track, dict):
            raise invalid("track must be a JSON object")
        return self._passthrough(self._url(track.get("path")))

    def open_uri(self, uri):
        # Any http(s) URL: whether the plugin may reach it is the host's grant to decide.
        if urllib.parse.urlsplit(uri).scheme not in ("http", "https"):
            raise Err(common.PluginError_Unsupported(f"only http:// and https:// URIs: {uri}"))
        return self._passthrough(uri)

    def plan_config_update_json(self, new_config_json):
        self._config(new_config_json)  # a bad config is an error, not a plan
        return common.ConfigUpdatePlan(common.ConfigUpdateMode.HOT_APPLY, None)

    def apply_config_update_json(self, new_config_json):
        self.base_url, self.index = self._config(new_config_json)
        log(f"library {self.base_url} index {self.index}")

    def export_state_json(self):
        return json.dumps({"opened": self.opened})

    def import_state_json(self, state_json):
        self.opened = int(json.loads(state_json).get("opened", 0))

    def close(self):
        log("catalog closed")


class Lifecycle(exports.Lifecycle):
    def on_enable(self):
        log("on-enable")

    def on_disable(self, reason):
        log(f"on-disable {reason.name.lower().replace('_', '-')}")


class Source(exports.Source):
    def create(self):
        return Catalog()
