"""Library import throughput: serial vs a Dask LocalCluster, on the generated library of
tests/library (bench/stbench/librarygen.py).

    .venv/bin/python bench/library_bench.py [--workers 2] [--folders 10] [--per-folder 18]
        [--seconds 0.5 1.0] [--repeat 5]

Each repeat runs the serial import and the cluster import side by side (alternating which goes
first), each into a fresh catalog. Per run:

- ``files_per_s`` / ``audio_s_per_s`` over the whole run (cluster start and stop included);
- ``steady_*``: from the first finished task to the last, counting only the files of tasks that
  started after the run was under way (each worker's first task is left out: it carries the
  start-up, and counting it would credit the window with work done before it began). This
  errs low for the cluster;
- ``cpu_s``: CPU seconds of this process and of the worker processes (the work done);
- ``others_cores``: cores' worth of CPU that *other* processes used during the run (the
  machine's busy time from /proc/stat minus ours). Other work on a shared machine moves every
  figure; the summary gives the medians over all pairs and over the quiet ones.

``--cli`` adds a pair of ``stellatune library import`` processes per repeat (``cli_wall_s``: the
wall time a user waits, interpreter and imports included, which the in-process serial runs
above do not pay after the first).

``ceiling`` is what the machine gives two processes at that moment: the same files analysed by
one plain process, then split over two at once (no Dask, no catalog).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stbench.librarygen import generate_library
from stellatune.library import import_library
from stellatune.library.analyse import warm_up

#: A pair is quiet when other processes used at most this many cores' worth during both runs.
QUIET_OTHERS_CORES = 0.15


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes; /proc/stat), 0 elsewhere."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds() -> float:
    """This process's CPU plus that of its children that have ended (a cluster's workers)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def run(root: Path, db: Path, workers: int, batch_size: int | None) -> dict[str, Any]:
    marks: list[tuple[float, int, float]] = []

    def on_batch(results: list[Any]) -> None:
        marks.append((time.perf_counter(), len(results), sum(r.duration_s or 0.0 for r in results if r.status == "ok")))

    busy0, cpu0, t0 = _busy_seconds(), _cpu_seconds(), time.perf_counter()
    report = import_library([root], db, workers=workers, batch_size=batch_size, on_batch=on_batch)
    total = time.perf_counter() - t0
    cpu, busy = _cpu_seconds() - cpu0, _busy_seconds() - busy0
    first = max(1, workers)  # the first task of each worker (serial: the first batch)
    steady_t = marks[-1][0] - marks[0][0] if len(marks) > first else float("nan")
    steady_files = sum(m[1] for m in marks[first:])
    steady_audio = sum(m[2] for m in marks[first:])
    return {
        "mode": "serial" if workers == 0 else f"LocalCluster({workers})",
        "files": report.analysed,
        "tasks": len(marks),
        "audio_s": round(report.audio_seconds, 1),
        "wall_s": round(total, 2),
        "files_per_s": round(report.analysed / total, 1),
        "audio_s_per_s": round(report.audio_seconds / total, 1),
        "steady_files_per_s": round(steady_files / steady_t, 1),
        "steady_audio_s_per_s": round(steady_audio / steady_t, 1),
        "cpu_s": round(cpu, 2),
        "others_cores": round(max(0.0, busy - cpu) / total, 2),
    }


def run_cli(root: Path, db: Path, workers: int) -> float:
    """Wall seconds of one ``stellatune library import`` process (fresh interpreter)."""
    cli = Path(sys.executable).parent / "stellatune"  # the console script of this environment
    argv = [str(cli), "library", "import", str(root), "--db", str(db)]
    t = time.perf_counter()
    subprocess.run([*argv, "--workers", str(workers), "--json"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def _analyse_paths(paths: list[str]) -> float:
    """Worker of the ceiling measurement: analyse ``paths`` with one analyser; wall seconds."""
    from stellatune.library.analyse import Analyser, WorkItem

    analyser = Analyser()
    t = time.perf_counter()
    for p in paths:
        analyser.analyse(WorkItem(p, 0, 0))
    return time.perf_counter() - t


def _warm_process(hold_s: float) -> int:
    """Load the analysis in a pool process and hold it a moment, so each process gets one."""
    warm_up()
    time.sleep(hold_s)
    return os.getpid()


def start_pool() -> ProcessPoolExecutor:
    """Two spawned processes, both started and warm before any measurement (the pool starts its
    processes lazily: the first ceiling would otherwise time one's start-up)."""
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    pids = {f.result() for f in [pool.submit(_warm_process, 1.0) for _ in range(2)]}
    assert len(pids) == 2, "the ceiling pool did not start two processes"
    return pool


def ceiling(pool: ProcessPoolExecutor, paths: list[str]) -> float:
    """Speed-up two plain processes get over one on ``paths`` right now (no Dask, no catalog)."""
    one = pool.submit(_analyse_paths, paths).result()
    t = time.perf_counter()
    halves = [pool.submit(_analyse_paths, paths[i::2]) for i in range(2)]
    for h in halves:
        h.result()
    return one / (time.perf_counter() - t)


def _ceiling_files(paths: list[Path], audio_s: float = 400.0, at_least: int = 8) -> list[str]:
    """The first good files, up to ``audio_s`` seconds of audio (a few seconds of analysis) but
    at least ``at_least`` (halves of one or two long files would not balance): enough to see
    what the machine gives two processes, cheap enough to measure on every repeat."""
    import soundfile

    out: list[str] = []
    total = 0.0
    for p in paths:
        if total >= audio_s and len(out) >= at_least:
            break
        out.append(str(p))
        total += soundfile.info(str(p)).duration
    return out


_KEYS = ("wall_s", "cpu_s", "files_per_s", "audio_s_per_s", "steady_files_per_s", "steady_audio_s_per_s")


def _summary(pairs: list[tuple[dict[str, Any], dict[str, Any], float]]) -> dict[str, Any]:
    """Medians over ``pairs`` of (serial run, cluster run, ceiling) measured side by side."""
    if not pairs:
        return {"pairs": 0}
    med = statistics.median
    cli = [(s["cli_wall_s"], c["cli_wall_s"]) for s, c, _ in pairs if "cli_wall_s" in s]
    return {
        "pairs": len(pairs),
        "serial": {k: round(med(s[k] for s, _, _ in pairs), 2) for k in _KEYS},
        "cluster": {k: round(med(c[k] for _, c, _ in pairs), 2) for k in _KEYS},
        "speedup_whole_run": round(med(c["files_per_s"] / s["files_per_s"] for s, c, _ in pairs), 2),
        "speedup_steady": round(med(c["steady_files_per_s"] / s["steady_files_per_s"] for s, c, _ in pairs), 2),
        "ceiling_2_processes": round(med(x for _, _, x in pairs), 2),
        **(
            {
                "cli_wall_s": {"serial": round(med(a for a, _ in cli), 2), "cluster": round(med(b for _, b in cli), 2)},
                "speedup_cli": round(med(a / b for a, b in cli), 2),
            }
            if cli
            else {}
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--folders", type=int, default=10)
    ap.add_argument("--per-folder", type=int, default=18)
    ap.add_argument("--seconds", type=float, nargs=2, default=(0.5, 1.0))
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cli", action="store_true", help="also time whole `stellatune library import` processes")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lib = generate_library(
            Path(tmp) / "music", folders=args.folders, per_folder=args.per_folder, seconds=tuple(args.seconds)
        )
        sample = _ceiling_files(lib.good)
        # Every serial run starts warm (scipy, pyloudnorm loaded), as every cluster worker does
        # after its set-up; only the first would otherwise pay the imports.
        warm_up()
        pairs: list[tuple[dict[str, Any], dict[str, Any], float]] = []
        pool = start_pool()
        try:
            for i in range(args.repeat):
                got: dict[str, dict[str, Any]] = {}
                order = [("serial", 0), ("cluster", args.workers)]
                for name, workers in order if i % 2 == 0 else order[::-1]:
                    got[name] = run(lib.root, Path(tmp) / f"{name}-{i}.sqlite", workers, args.batch_size)
                    if args.cli:
                        got[name]["cli_wall_s"] = round(
                            run_cli(lib.root, Path(tmp) / f"cli-{name}-{i}.sqlite", workers), 2
                        )
                    print(json.dumps(got[name]), flush=True)
                pairs.append((got["serial"], got["cluster"], round(ceiling(pool, sample), 2)))
                print(json.dumps({"ceiling_2_processes": pairs[-1][2]}), flush=True)
        finally:
            pool.shutdown()
        quiet = [p for p in pairs if max(p[0]["others_cores"], p[1]["others_cores"]) <= QUIET_OTHERS_CORES]
        print(
            json.dumps(
                {
                    "library": f"{len(lib.files)} files of {args.seconds[0]:g}-{args.seconds[1]:g} s, "
                    f"{pairs[0][0]['audio_s']} s of audio",
                    "all": _summary(pairs),
                    f"quiet (others <= {QUIET_OTHERS_CORES} cores)": _summary(quiet),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
