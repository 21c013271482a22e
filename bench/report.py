#!/usr/bin/env python3
"""Run the benchmarks and regenerate bench/RESULTS.md and bench/results.png (and results.json).

    .venv/bin/python bench/report.py [--quick] [--no-realtime | --soak]

The same run as ``stellatune bench --markdown bench/RESULTS.md``; see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from stbench import render, suite  # noqa: E402  (needs bench/ on the path first)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short, noisier run (about 20 s)")
    realtime = parser.add_mutually_exclusive_group()
    realtime.add_argument("--no-realtime", action="store_true", help="skip the JACK dummy-device run")
    realtime.add_argument(
        "--soak", action="store_true", help="play the 16-plugin chain at 32 frames for 10 minutes instead of 30 s"
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR, help="directory for the three files")
    args = parser.parse_args(argv)
    doc = suite.run(
        quick=args.quick,
        realtime=not args.no_realtime,
        soak_seconds=suite.SOAK_SECONDS if args.soak else None,
        progress=lambda step: print(f"bench: {step}", file=sys.stderr, flush=True),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    flags = [f for f in ("--quick", "--no-realtime", "--soak") if getattr(args, f[2:].replace("-", "_"))]
    command = " ".join([".venv/bin/python bench/report.py", *flags])
    (args.out / "RESULTS.md").write_text(render.markdown(doc, command=command), encoding="utf-8")
    render.plot(doc, args.out / "results.png")
    for t in doc["targets"]:
        detail = f" ({t['detail']})" if t.get("detail") else ""
        print(f"{'met    ' if t['met'] else 'NOT met'}  {t['target']}: {t['measured']:.3g}{t['unit']}{detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
