"""pygain: a gain DSP on the component path, written in Python.

Config: ``{"gain_db": x}`` (hot-applied), ``{"invert": bool}`` (needs a recreate: the plugin
says so through its plan), and two test switches: ``{"trap": true}`` makes the call trap,
``{"hang": true}`` makes it loop until the host's deadline stops it.
"""
import array
import json
import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import dsp
from wit_world.imports import common

MAX_GAIN_DB = 24.0
MIN_GAIN_DB = -60.0
ANY_LAYOUT = 0xFFFFFFFF


def log(text):
    # stderr goes to the plugin's log file on the host: tests read the hook calls there.
    print(f"pygain: {text}", file=sys.stderr, flush=True)


def bad_config(message):
    return Err(common.PluginError_InvalidArg(message))


def parse_config(text):
    try:
        cfg = json.loads(text)
    except ValueError as e:
        raise bad_config(f"config is not JSON: {e}")
    if not isinstance(cfg, dict):
        raise bad_config("config must be a JSON object")
    gain_db = cfg.get("gain_db", 0.0)
    if not isinstance(gain_db, (int, float)) or isinstance(gain_db, bool):
        raise bad_config("gain_db must be a number")
    return cfg


class Lifecycle(exports.Lifecycle):
    def on_enable(self):
        log("on-enable")

    def on_disable(self, reason):
        log(f"on-disable {reason.name.lower().replace('_', '-')}")


class Processor(dsp.Processor):
    def __init__(self, spec):
        self.channels = spec.channels
        self.factor = 1.0
        self.invert = False
        self.frames_processed = 0

    def describe_hot_path(self, spec):
        return None  # component path only; the C gain example has the hot path

    def process_interleaved_f32(self, channels, interleaved_f32le):
        if channels != self.channels:
            raise Err(common.PluginError_InvalidArg(f"created for {self.channels} channels, got {channels}"))
        samples = array.array("f")
        samples.frombytes(interleaved_f32le)
        factor = -self.factor if self.invert else self.factor
        out = array.array("f", (s * factor for s in samples))
        self.frames_processed += len(samples) // max(1, channels)
        return out.tobytes()

    def supported_layouts(self):
        return ANY_LAYOUT

    def output_channels(self):
        return 0

    def plan_config_update_json(self, new_config_json):
        cfg = parse_config(new_config_json)
        gain_db = cfg.get("gain_db", 0.0)
        if not MIN_GAIN_DB <= gain_db <= MAX_GAIN_DB:
            return common.ConfigUpdatePlan(common.ConfigUpdateMode.REJECT,
                                           f"gain_db {gain_db} is outside {MIN_GAIN_DB}..{MAX_GAIN_DB}")
        if bool(cfg.get("invert", False)) != self.invert:
            return common.ConfigUpdatePlan(common.ConfigUpdateMode.RECREATE, "phase inversion is fixed at creation")
        return common.ConfigUpdatePlan(common.ConfigUpdateMode.HOT_APPLY, None)

    def apply_config_update_json(self, new_config_json):
        cfg = parse_config(new_config_json)
        if cfg.get("trap"):
            raise RuntimeError("trap requested by config")  # uncaught: the guest traps
        if cfg.get("hang"):
            while True:
                pass
        self.factor = 10.0 ** (float(cfg.get("gain_db", 0.0)) / 20.0)
        self.invert = bool(cfg.get("invert", False))
        log(f"applied {json.dumps(cfg, sort_keys=True)}")

    def export_state_json(self):
        return json.dumps({"frames_processed": self.frames_processed})

    def import_state_json(self, state_json):
        try:
            self.frames_processed = int(json.loads(state_json)["frames_processed"])
        except (ValueError, KeyError, TypeError) as e:
            raise bad_config(f"bad state: {e}")

    def close(self):
        log("processor closed")


class Dsp(exports.Dsp):
    def create(self, spec):
        if spec.channels == 0 or spec.sample_rate == 0:
            raise Err(common.PluginError_InvalidArg("sample rate and channels must be non-zero"))
        return Processor(spec)
