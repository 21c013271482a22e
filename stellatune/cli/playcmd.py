"""``stellatune play FILE...``: the files in order, gapless, on a :class:`stellatune.Player`.

In a terminal (stdin and stdout both ttys) the keys drive it (space pause/resume, ←/→ seek 5 s,
``n`` next, ``q`` quit) and one status line is redrawn in place; the terminal is put in cbreak
mode and always restored. Otherwise it prints a progress line every 0.5 s, as a log wants.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import time
from pathlib import Path
from typing import Any, Optional

from ..errors import EngineError
from .context import open_runtime

__all__ = ["register_play", "cmd_play", "parse_keys"]

SEEK_STEP_S = 5.0
_LINE_INTERVAL_S = 0.5
_TTY_INTERVAL_S = 0.1


def register_play(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("play", help="play audio files gaplessly through DSP plugins")
    p.add_argument(
        "files", nargs="+", metavar="FILE", help="audio files (or source:PLUGIN_ID:TYPE_ID:TRACK_JSON items), in order"
    )
    p.add_argument(
        "--dsp",
        action="append",
        default=[],
        metavar="ID:TYPE[:CONFIG_JSON]",
        help="a DSP stage (repeat for a chain, applied in order)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--out", type=Path, metavar="PATH.wav", help="write a float32 WAV instead of playing")
    out.add_argument("--sink", metavar="ID:TYPE[:JSON]", help="play through an output-sink plugin")
    out.add_argument(
        "--device",
        metavar="D",
        help="output device: index, name or part of it (default: the JACK server's, else the system"
        " default); 'null' discards the audio on the engine clock",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="with --out (or no output): run the engine clock as fast as it can (deterministic output)",
    )
    p.add_argument(
        "--decoder",
        choices=("auto", "builtin", "plugin"),
        default="auto",
        help="auto: a decoder plugin for the extension when one is active, else soundfile",
    )
    p.add_argument("--rate", type=int, metavar="HZ", help="output rate (default: the first file's); others resampled")
    p.add_argument("--frames", type=int, default=128, metavar="N", help="frames per block (default 128)")
    p.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--ring",
        type=int,
        default=8192,
        metavar="FRAMES",
        help="how far decoding may run ahead of the output (a power of two; default 8192)",
    )
    p.set_defaults(func=cmd_play)


def _output(args: argparse.Namespace) -> Any:
    if args.out is not None:
        if not args.out.parent.is_dir():
            raise EngineError(f"cannot write {args.out}: {args.out.parent} is not a directory")
        return f"file:{args.out}"
    if args.sink is not None:
        return f"sink:{args.sink}"
    if args.device is not None:
        if args.offline and args.device != "null":
            raise EngineError("--offline needs --out PATH.wav (or --device null)")
        return int(args.device) if args.device.isdigit() else args.device
    return "null" if args.offline else None


def cmd_play(args: argparse.Namespace) -> int:
    from ..compose import checks
    from ..compose.player import Player

    if args.rate is not None:
        checks.sample_rate(args.rate, "--rate")
    checks.positive_int(args.frames, "--frames")
    if args.seconds is not None and not args.seconds > 0:
        raise EngineError("--seconds must be > 0")
    output = _output(args)
    with open_runtime(args) as runtime:
        if args.dsp or args.decoder != "builtin" or any(f.startswith("source:") for f in args.files):
            runtime.sync_plugins()
        with Player(
            runtime=runtime,
            output=output,
            frames=args.frames,
            sample_rate=args.rate,
            decoder=args.decoder,
            ring_frames=args.ring,
            offline=args.offline,
        ) as player:
            view = _View(player, len(args.files))
            player.set_chain(args.dsp)
            player.enqueue(*args.files)
            player.play()
            for st in player.chain():
                print(f"{st['spec']}: {st['route']}", file=sys.stderr)
            interactive = sys.stdin.isatty() and sys.stdout.isatty()
            (_run_terminal if interactive else _run_lines)(player, view, args.seconds)
            view.print_messages()
            _print_summary(player)
    return 0


class _View:
    """What the status line shows, kept up to date from the player's events."""

    def __init__(self, player: Any, total: int):
        self.player, self.total = player, total
        self.item_no = 0
        self.label: Optional[str] = None
        self._durations: dict[str, Optional[float]] = {}
        self._messages: queue.SimpleQueue[str] = queue.SimpleQueue()
        player.subscribe(self._on_event, kinds=["track-started", "track-error", "stage-fault"])

    def _on_event(self, event: dict[str, Any]) -> None:
        if event["kind"] == "track-started":
            self.item_no, self.label = event["item_no"], event["item"]
            decoder = event.get("decoder")
            if decoder and decoder != "array":
                how = "builtin" if decoder == "soundfile" else "plugin"
                self.say(f"decoder: {decoder} ({how})")
            source, rate = event.get("source_rate"), event.get("rate")
            if source and rate and source != rate:
                self.say(f"resampling {source} Hz -> {rate} Hz (soxr HQ)")
        elif event["kind"] == "track-error":
            self.say(f"warning: {event['item']}: {event['error']}")
        else:
            self.say(f"warning: stage {event['index']} ({event['spec']}) bypassed: {event['fault']}")

    def say(self, text: str) -> None:
        """Queue a line for stderr. Events arrive on the player's event thread; the UI loop prints
        them (:meth:`print_messages`), so a line never lands in the middle of the status line."""
        self._messages.put(text)

    def print_messages(self, *, clear_status_line: bool = False) -> None:
        while True:
            try:
                text = self._messages.get_nowait()
            except queue.Empty:
                return
            if clear_status_line:
                sys.stdout.write("\r\x1b[K")
                sys.stdout.flush()
            _eprint(text)

    def duration(self, label: Optional[str]) -> Optional[float]:
        if label is None:
            return None
        if label not in self._durations:
            self._durations[label] = None
            if not label.startswith("source:") and label != "array":
                try:
                    import soundfile

                    self._durations[label] = float(soundfile.info(label).duration)
                except (RuntimeError, OSError, ValueError):  # not a file soundfile reads (plugin-decoded)
                    pass
        return self._durations[label]

    def line(self, *, wide: bool) -> str:
        s = self.player.status()
        c = s["counters"]
        pos, label = s["position"], s["current"] or self.label
        name = "-" if label is None else (label if label.startswith("source:") else Path(label).name)
        rate = s["sample_rate"] or 48000
        period_us = self.player.frames / rate * 1e6
        p99 = sum(st["p99_us"] or 0.0 for st in s["chain"])
        where = s["chain_thread"] or "driver"
        head = f"{_clock(pos)}/{_clock(self.duration(label))}  [{max(self.item_no, 1)}/{self.total}] {name}"
        if not wide:  # the terminal's status line
            mark = {"playing": ">", "paused": "||"}.get(s["state"], s["state"])
            return (
                f"{mark} {head}  xruns {c['xruns']}  underruns {c['ring_underruns']}"
                f"  chain load {p99 / period_us:.0%} ({where})"
            )
        return (
            f"{head}  callbacks {c.get('callbacks', 0)}  xruns {c['xruns']}  ring underruns {c['ring_underruns']}"
            f"  chain p99 {p99:.0f} us ({p99 / period_us:.0%} of the period, chain on the {where})"
        )


def _clock(seconds: Optional[float]) -> str:
    if seconds is None:
        return "--:--"
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


def _eprint(text: str) -> None:
    # A plugin's text: control characters escaped, so it cannot redraw the terminal.
    print("".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text), file=sys.stderr, flush=True)


def _run_lines(player: Any, view: _View, seconds: Optional[float]) -> None:
    """No terminal: a progress line every 0.5 s until the queue has played out (or ``seconds``)."""
    started = time.monotonic()
    while True:
        left = None if seconds is None else seconds - (time.monotonic() - started)
        if left is not None and left <= 0:
            return
        done = player.wait(timeout=_LINE_INTERVAL_S if left is None else min(_LINE_INTERVAL_S, left))
        view.print_messages()
        print(f"{time.monotonic() - started:6.1f}s  {view.line(wide=True)}", flush=True)
        if done:
            return


def parse_keys(data: bytes) -> list[str]:
    """Terminal input → commands: ``pause`` (space), ``back``/``forward`` (←/→), ``next`` (n),
    ``quit`` (q). Unknown keys are ignored."""
    out, i = [], 0
    while i < len(data):
        if data[i : i + 1] == b"\x1b" and data[i + 1 : i + 2] in (b"[", b"O") and i + 2 < len(data):
            arrow = {b"C": "forward", b"D": "back"}.get(data[i + 2 : i + 3])
            if arrow:
                out.append(arrow)
            i += 3
            continue
        key = data[i : i + 1].lower()
        cmd = {b" ": "pause", b"n": "next", b"q": "quit"}.get(key)
        if cmd:
            out.append(cmd)
        i += 1
    return out


def _run_terminal(player: Any, view: _View, seconds: Optional[float]) -> None:
    """Keys and one status line redrawn with \\r; the terminal is restored on every way out."""
    import select
    import shutil
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    started = time.monotonic()
    print("space pause  \u2190/\u2192 seek 5 s  n next  q quit", flush=True)
    try:
        tty.setcbreak(fd)
        while not player.wait(timeout=0):
            if seconds is not None and time.monotonic() - started >= seconds:
                break
            ready, _, _ = select.select([fd], [], [], _TTY_INTERVAL_S)
            if ready and _apply(player, view, parse_keys(os.read(fd, 64))):
                break
            view.print_messages(clear_status_line=True)
            width = shutil.get_terminal_size().columns
            sys.stdout.write("\r" + view.line(wide=False)[: max(10, width - 1)] + "\x1b[K")
            sys.stdout.flush()
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        sys.stdout.write("\n")
        sys.stdout.flush()


def _apply(player: Any, view: _View, commands: list[str]) -> bool:
    """Run the commands; True for quit. A seek past the item's end goes to the next one."""
    for cmd in commands:
        if cmd == "quit":
            return True
        if cmd == "pause":
            if player.status()["state"] == "paused":
                player.resume()
            else:
                player.pause()
        elif cmd == "next":
            player.skip()
        else:
            pos = player.position()
            if pos is None:
                continue
            target = max(0.0, pos + (SEEK_STEP_S if cmd == "forward" else -SEEK_STEP_S))
            duration = view.duration(player.current())
            if duration is not None and target >= duration - 0.25:
                player.skip()
            else:
                player.seek(target)
    return False


def _print_summary(player: Any) -> None:
    s = player.status()
    for st in s["chain"]:
        fault = st["fault"]
        why = (fault["message"].splitlines() or [""])[-1] if fault else ""
        state = "ok" if fault is None else f"BYPASSED ({fault['kind']}: {why})"
        _eprint(f"{st['spec']}: {st['route']}, p50 {st['p50_us']:.2f} us, p99 {st['p99_us']:.2f} us, {state}")
    c = s["counters"]
    _eprint(
        f"played {c['frames_played']} frames ({c['frames_played'] / (s['sample_rate'] or 1):.1f} s),"
        f" {c['xruns']} xruns, {c['ring_underruns']} ring underruns"
    )
