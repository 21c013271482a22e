"""folder-source: a catalog of one music folder, described by the folder's M3U playlist.

Config ``{"root": "/abs/folder", "playlist": "playlist.m3u"}``. Every byte is read through the
host's ``host-stream`` (the plugin has no filesystem of its own), so the host's grants decide
what it may open. ``open-stream-json`` returns the host stream untouched (*passthrough*) unless
the track asks for ``"processed": true``, in which case the bytes flow through the plugin.
"""
import json
import posixpath
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import source
from wit_world.imports import common, host_stream

DEFAULT_PLAYLIST = "playlist.m3u"
READ_CHUNK = 64 * 1024


def log(text):
    print(f"folder-source: {text}", file=sys.stderr, flush=True)


def invalid(message):
    return Err(common.PluginError_InvalidArg(message))


def open_file(path):
    request = host_stream.OpenRequest(host_stream.StreamOpenKind.FILE, path, None, [], None, None, None)
    return host_stream.open(request)


def read_all(stream):
    out = bytearray()
    while True:
        chunk = stream.read(READ_CHUNK)
        if not chunk:
            return bytes(out)
        out += chunk


def empty_metadata(codec, title=None):
    tags = common.AudioTags(title, None, [], [], [], None, None, None, None, None, None)
    return common.MediaMetadata(tags, None, common.EncodedAudioFormat(codec, None, None, None, None), [])


def parse_m3u(text):
    items, title, artist, duration_ms = [], None, None, None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#EXTINF:"):
            head, _, name = line[len("#EXTINF:"):].partition(",")
            try:
                duration_ms = int(float(head.split()[0]) * 1000) if head.strip() else None
            except ValueError:
                duration_ms = None
            artist, sep, song = name.partition(" - ")
            title, artist = (song.strip(), artist.strip()) if sep else (name.strip(), None)
        elif line and not line.startswith("#"):
            ext = posixpath.splitext(line)[1].lstrip(".").lower() or None
            items.append({"id": line, "path": line, "title": title or posixpath.basename(line),
                          "artist": artist, "duration_ms": duration_ms if duration_ms and duration_ms > 0 else None,
                          "ext": ext})
            title, artist, duration_ms = None, None, None
    return items


class ProcessedStream(source.SourceStream):
    """Bytes relayed through the plugin (a real plugin would decrypt or unpack here)."""

    def __init__(self, stream, name):
        self.stream = stream
        self.name = name

    def metadata(self):
        return empty_metadata("unknown", self.name)

    def read(self, max_bytes):
        data = self.stream.read(max(1, min(max_bytes, READ_CHUNK)))
        return common.EncodedChunk(data, len(data) == 0)

    def close(self):
        self.stream.close()


class Catalog(source.Catalog):
    def __init__(self):
        self.root = None
        self.playlist = DEFAULT_PLAYLIST
        self.opened = 0

    def _config(self, text):
        try:
            cfg = json.loads(text)
        except ValueError as e:
            raise invalid(f"config is not JSON: {e}")
        root = cfg.get("root")
        if root is not None and (not isinstance(root, str) or not root.startswith("/")):
            raise invalid("root must be an absolute path")
        playlist = cfg.get("playlist", DEFAULT_PLAYLIST)
        if not isinstance(playlist, str) or playlist.startswith("/") or ".." in playlist.split("/"):
            raise invalid("playlist must be a path inside root")
        return root, playlist

    def _track_path(self, rel):
        if self.root is None:
            raise invalid("no root configured")
        if not isinstance(rel, str) or not rel or rel.startswith("/") or ".." in rel.split("/"):
            raise invalid(f"track path {rel!r} must stay inside the folder")
        return posixpath.join(self.root, rel)

    def list_items_json(self, request_json):
        try:
            request = json.loads(request_json or "{}")
        except ValueError as e:
            raise invalid(f"request is not JSON: {e}")
        stream = open_file(self._track_path(self.playlist))
        try:
            items = parse_m3u(read_all(stream).decode("utf-8", "replace"))
        finally:
            stream.close()
        query = str(request.get("query", "")).lower()
        if query:
            items = [i for i in items if query in f"{i['title']} {i['artist'] or ''}".lower()]
        offset, limit = int(request.get("offset", 0)), int(request.get("limit", 1000))
        return json.dumps({"total": len(items), "items": items[offset:offset + limit]})

    def _opened(self, path, processed):
        stream = open_file(path)
        self.opened += 1
        ext = posixpath.splitext(path)[1].lstrip(".").lower() or None
        name = posixpath.basename(path)
        if processed:
            handle = source.OpenedStreamHandle_Processed(ProcessedStream(stream, name))
        else:
            handle = source.OpenedStreamHandle_Passthrough(stream)
        return source.OpenedStream(handle, ext, empty_metadata(ext or "unknown", name))

    def open_stream_json(self, track_json):
        try:
            track = json.loads(track_json)
        except ValueError as e:
            raise invalid(f"track is not JSON: {e}")
        return self._opened(self._track_path(track.get("path")), bool(track.get("processed", False)))

    def open_uri(self, uri):
        if not uri.startswith("file://"):
            raise Err(common.PluginError_Unsupported(f"only file:// URIs: {uri}"))
        path = posixpath.normpath(uri[len("file://"):])
        if self.root is None or not path.startswith(self.root.rstrip("/") + "/"):
            raise Err(common.PluginError_Denied(f"{path} is outside the configured folder"))
        return self._opened(path, False)

    def plan_config_update_json(self, new_config_json):
        self._config(new_config_json)  # a bad config is an error, not a plan
        return common.ConfigUpdatePlan(common.ConfigUpdateMode.HOT_APPLY, None)

    def apply_config_update_json(self, new_config_json):
        self.root, self.playlist = self._config(new_config_json)
        log(f"root {self.root} playlist {self.playlist}")

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
