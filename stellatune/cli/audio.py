"""``stellatune render|play|devices|demo-track``: run installed DSP plugins over audio, offline or live
(``play`` lives in :mod:`stellatune.cli.playcmd`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..compose import DspPlugin
from ..errors import EngineError, RuntimeStateError
from .context import open_runtime
from .playcmd import register_play

if TYPE_CHECKING:
    from ..engine import StageStats
    from ..engine.playback import BlockSource

__all__ = ["register"]

_RENDER_CHUNK = 65536


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``render``, ``play``, ``devices`` and ``demo-track`` commands."""
    p = subparsers.add_parser("render", help="process an audio file through DSP plugins")
    p.add_argument("input", type=Path, metavar="IN")
    p.add_argument("output", type=Path, metavar="OUT")
    _chain_options(p)
    p.set_defaults(func=cmd_render)

    register_play(subparsers)  # stellatune.cli.playcmd: the Player, gapless, keys in a terminal

    p = subparsers.add_parser("devices", help="list audio output devices")
    p.set_defaults(func=cmd_devices)

    p = subparsers.add_parser("demo-track", help="write a short synthetic stereo track (WAV)")
    p.add_argument("output", type=Path, metavar="OUT")
    p.add_argument("--seconds", type=float, default=8.0, metavar="S")
    p.set_defaults(func=cmd_demo_track)


def _chain_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dsp",
        action="append",
        default=[],
        metavar="ID:TYPE[:CONFIG_JSON]",
        help="a DSP stage (repeat for a chain, applied in order)",
    )
    p.add_argument(
        "--native",
        action="store_true",
        help="use the plugins' native builds instead of wasm (speed baseline, unsandboxed)",
    )
    p.add_argument("--frames", type=int, default=None, metavar="N", help="frames per block (render: 256, play: 128)")
    p.add_argument(
        "--rate",
        type=int,
        metavar="HZ",
        help="run the chain (and the device) at HZ, resampling the input (default: its rate)",
    )
    p.add_argument(
        "--decoder",
        choices=("builtin", "plugin"),
        default="builtin",
        help="decode with soundfile (builtin) or the best active decoder plugin",
    )


@contextmanager
def _plugins(args: argparse.Namespace) -> Iterator[tuple]:
    """The runtime and its component executor, plugins synced when the command uses any."""
    from ..compose import checks
    from ..executor import ComponentExecutor

    if args.rate is not None:
        checks.sample_rate(args.rate, "--rate")
    if getattr(args, "frames", None) is not None:
        checks.positive_int(args.frames, "--frames")
    with open_runtime(args) as runtime:
        executor = runtime.host
        if not isinstance(executor, ComponentExecutor):
            raise RuntimeStateError("plugins need the component executor as the runtime's host")
        if args.dsp or args.decoder == "plugin":
            runtime.sync_plugins()
        yield runtime, executor


@contextmanager
def _source(args: argparse.Namespace, runtime, executor, path: Path) -> Iterator[BlockSource]:
    """``path`` decoded as ``--decoder`` says; closed on the way out (playback may close it first,
    and closing twice is harmless)."""
    from ..engine.playback import file_source

    if args.decoder == "plugin":
        from ..compose import plugin_decoded_source

        source = plugin_decoded_source(runtime, executor, path)
        print(f"decoder: {source.label} (plugin)", file=sys.stderr)
    else:
        source = file_source(path)
    try:
        yield source
    finally:
        if source.close is not None:
            source.close()


@contextmanager
def _pipeline(args: argparse.Namespace, runtime, executor, sample_rate: int, channels: int, frames: int) -> Iterator:
    """The ``--dsp`` chain, each stage asked from its plugin's component (hot path, or the
    component path as a fallback); stages are closed on the way out."""
    from ..compose import build_dsp_stage
    from ..engine import Chain

    specs = [DspPlugin.parse(d) for d in args.dsp]
    stages = []
    try:
        for p in specs:
            stages.append(
                build_dsp_stage(
                    runtime, executor, p.plugin_id, p.type_id, dict(p.config), sample_rate, channels, native=args.native
                )
            )
            stage = stages[-1]
            note = f" ({stage.fallback_reason})" if stage.fallback_reason else ""
            print(f"{stage.name}: {stage.route}{note}", file=sys.stderr)
        yield Chain(stages, sample_rate, channels, block_frames=frames)
    finally:
        for stage in stages:
            stage.close()


def _report_rate(source_rate: int, pipeline_rate: int) -> None:
    if source_rate != pipeline_rate:
        print(f"resampling {source_rate} Hz -> {pipeline_rate} Hz (soxr HQ)", file=sys.stderr)


def cmd_render(args: argparse.Namespace) -> int:
    import soundfile
    from tqdm import tqdm

    from ..engine.playback import source_blocks

    with _plugins(args) as (runtime, executor), _source(args, runtime, executor, args.input) as src:
        rate = args.rate or src.sample_rate
        _report_rate(src.sample_rate, rate)
        with _pipeline(args, runtime, executor, rate, src.channels, args.frames or 256) as pipe:
            blocks = source_blocks(src, rate, src.channels)
            try:
                dst = soundfile.SoundFile(
                    str(args.output),
                    "w",
                    rate,
                    src.channels,
                    subtype="FLOAT" if args.output.suffix.lower() == ".wav" else None,
                )
            except (RuntimeError, OSError, TypeError, ValueError) as e:
                raise EngineError(f"cannot write {args.output}: {e}") from e
            with dst, tqdm(unit="frame", unit_scale=True, disable=None, desc=args.input.name) as bar:
                for block in _batched(blocks, _RENDER_CHUNK):
                    dst.write(pipe.process(block))
                    bar.update(len(block))
            _print_stage_stats(pipe.stats())
    return 0


def _batched(blocks: Iterator, frames: int) -> Iterator:
    """Source blocks joined into chunks of about ``frames``: one ``process`` call each."""
    import numpy as np

    pending, count = [], 0
    for block in blocks:
        pending.append(block)
        count += len(block)
        if count >= frames:
            yield np.concatenate(pending)
            pending, count = [], 0
    if pending:
        yield np.concatenate(pending)


def cmd_devices(args: argparse.Namespace) -> int:
    from ..engine import list_devices

    for d in list_devices():
        if d["max_output_channels"] == 0:
            continue
        mark = "*" if d["is_default_of_host_api"] else " "
        print(
            f"{mark} {d['index']:3d}  {d['name']}  [{d['host_api']}]  out {d['max_output_channels']}"
            f"  in {d['max_input_channels']}  {d['default_sample_rate']:.0f} Hz"
            f"  {d['default_low_output_latency'] * 1000:.2f} ms"
        )
    return 0


def cmd_demo_track(args: argparse.Namespace) -> int:
    from ..engine.demo import write_demo_track

    if args.seconds <= 0:
        raise EngineError("--seconds must be > 0")
    print(write_demo_track(args.output, seconds=args.seconds))
    return 0


def _print_stage_stats(stages: Sequence[StageStats]) -> None:
    for st in stages:
        state = "ok"
        if st.fault:
            # A trap message ends with the trap's cause; earlier lines are wasm backtrace.
            why = st.fault.message.splitlines()[-1] if st.fault.message else st.fault.code
            state = f"BYPASSED ({st.fault.kind}: {why})"
        skipped = f", {st.timeouts} blocks skipped (deadline)" if st.timeouts else ""
        print(
            f"{st.name}: {st.calls} blocks, p50 {st.p50_us:.2f} us, p99 {st.p99_us:.2f} us,"
            f" p99.9 {st.p999_us:.2f} us, max {st.max_us:.2f} us{skipped}, {state}",
            file=sys.stderr,
        )
