"""lrc-lyrics: searches and fetches synced ``.lrc`` lyrics from an LRCLIB-style JSON API.

Config ``{"base_url": "https://lrclib.net"}``. ``search`` calls ``GET {base}/api/search?q=...``
and ``fetch`` calls ``GET {base}/api/get/{id}``, both through the host's ``fetch-json`` (the
host checks the URL against the plugin's ``http`` grants). ``fetch`` returns LRC text: the synced
lyrics when the service has them, else the plain lyrics with ``[00:00.00]`` stamps.
"""
import json
import re
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import lyrics
from wit_world.imports import common, http_client

LRC_LINE = re.compile(r"^\[(\d+):(\d{2})(?:[.:](\d{1,3}))?\]")
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


def log(text):
    print(f"lrc-lyrics: {text}", file=sys.stderr, flush=True)


def quote(text):
    # urllib.parse would do, but this keeps the component's imports minimal.
    return "".join(ch if ch in UNRESERVED else "".join(f"%{b:02X}" for b in ch.encode()) for ch in text)


def get_json(url):
    try:
        return json.loads(http_client.fetch_json(url))
    except ValueError as e:
        raise Err(common.PluginError_Io(f"{url} did not answer JSON: {e}"))


def to_lrc(record):
    synced = record.get("syncedLyrics") or ""
    if any(LRC_LINE.match(line) for line in synced.splitlines()):
        return synced if synced.endswith("\n") else synced + "\n"
    plain = record.get("plainLyrics") or ""
    if not plain.strip():
        raise Err(common.PluginError_NotFound(f"lyrics {record.get('id')} have no text"))
    return "".join(f"[00:00.00]{line}\n" for line in plain.splitlines())


class Provider(lyrics.Provider):
    def __init__(self):
        self.base_url = None
        self.fetched = 0

    def _config(self, text):
        try:
            cfg = json.loads(text)
        except ValueError as e:
            raise Err(common.PluginError_InvalidArg(f"config is not JSON: {e}"))
        base = cfg.get("base_url", "https://lrclib.net")
        if not isinstance(base, str) or not base.startswith(("http://", "https://")):
            raise Err(common.PluginError_InvalidArg("base_url must be an http(s) URL"))
        return base.rstrip("/")

    def search(self, keyword):
        if not keyword.strip():
            raise Err(common.PluginError_InvalidArg("empty search"))
        found = get_json(f"{self.base_url}/api/search?q={quote(keyword.strip())}")
        if not isinstance(found, list):
            raise Err(common.PluginError_Io("search did not answer a list"))
        return [lyrics.LyricCandidate(str(r.get("id")), str(r.get("trackName") or ""), str(r.get("artistName") or ""))
                for r in found if isinstance(r, dict) and r.get("id") is not None]

    def fetch(self, id):
        if not id.strip() or "/" in id:
            raise Err(common.PluginError_InvalidArg(f"bad lyrics id {id!r}"))
        record = get_json(f"{self.base_url}/api/get/{quote(id.strip())}")
        if not isinstance(record, dict):
            raise Err(common.PluginError_Io("get did not answer an object"))
        self.fetched += 1
        return to_lrc(record)

    def plan_config_update_json(self, new_config_json):
        self._config(new_config_json)
        return common.ConfigUpdatePlan(common.ConfigUpdateMode.HOT_APPLY, None)

    def apply_config_update_json(self, new_config_json):
        self.base_url = self._config(new_config_json)
        log(f"base_url {self.base_url}")

    def export_state_json(self):
        return json.dumps({"fetched": self.fetched})

    def import_state_json(self, state_json):
        self.fetched = int(json.loads(state_json).get("fetched", 0))

    def close(self):
        log("provider closed")


class Lifecycle(exports.Lifecycle):
    def on_enable(self):
        log("on-enable")

    def on_disable(self, reason):
        log(f"on-disable {reason.name.lower().replace('_', '-')}")


class Lyrics(exports.Lyrics):
    def create(self):
        return Provider()
