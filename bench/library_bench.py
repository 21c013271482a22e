"""Library import throughput: serial vs a Dask LocalCluster, on the generated library of
tests/library (bench/stbench/librarygen.py).

    .venv/bin/python bench/library_bench.py [--workers 2] [--folders 10] [--per-folder 18] [--seconds 0.5 1.0]

Prints files/s and audio-seconds/s for each mode, twice: over the whole run (cluster start
included) and in steady state (from the first finished batch to the last, so the start-up of
the cluster and of each worker's analyser is left out). Fresh catalog per run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stbench.librarygen import generate_library
from stellatune.library import import_library


def run(root: Path, db: Path, workers: int, batch_size: int | None) -> dict:
    marks: list[tuple[float, int, float]] = []

    def on_batch(results):
        marks.append((time.perf_counter(), len(results), sum(r.duration_s or 0.0 for r in results if r.status == "ok")))

    t0 = time.perf_counter()
    report = import_library([root], db, workers=workers, batch_size=batch_size, on_batch=on_batch)
    total = time.perf_counter() - t0
    steady_t = marks[-1][0] - marks[0][0] if len(marks) > 1 else float("nan")
    steady_files = sum(m[1] for m in marks[1:])
    steady_audio = sum(m[2] for m in marks[1:])
    return {
        "mode": "serial" if workers == 0 else f"LocalCluster({workers})",
        "files": report.analysed,
        "audio_s": round(report.audio_seconds, 1),
        "wall_s": round(total, 2),
        "files_per_s": round(report.analysed / total, 1),
        "audio_s_per_s": round(report.audio_seconds / total, 1),
        "steady_files_per_s": round(steady_files / steady_t, 1),
        "steady_audio_s_per_s": round(steady_audio / steady_t, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--folders", type=int, default=10)
    ap.add_argument("--per-folder", type=int, default=18)
    ap.add_argument("--seconds", type=float, nargs=2, default=(0.5, 1.0))
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lib = generate_library(
            Path(tmp) / "music", folders=args.folders, per_folder=args.per_folder, seconds=tuple(args.seconds)
        )
        results = []
        for i in range(args.repeat):
            for workers in (0, args.workers):
                results.append(run(lib.root, Path(tmp) / f"{workers}-{i}.sqlite", workers, args.batch_size))
                print(json.dumps(results[-1]), flush=True)
        best = {}
        for r in results:
            if r["mode"] not in best or r["steady_files_per_s"] > best[r["mode"]]["steady_files_per_s"]:
                best[r["mode"]] = r
        serial, dist = best["serial"], best[f"LocalCluster({args.workers})"]
        print(
            f"speed-up (best of {args.repeat}): steady {dist['steady_files_per_s'] / serial['steady_files_per_s']:.2f}x, "
            f"whole run {serial['wall_s'] / dist['wall_s']:.2f}x"
        )


if __name__ == "__main__":
    main()
