"""Memory of the `processes` executor's data hand-over: the driver's and the workers' peak RSS with 2 workers on
CIFAR-sized synthetic data, the code before the change (git commit 21b70c2: the whole data set went through
each worker's pipe as safetensors bytes built from `.copy()`ed arrays) against the current working tree (the
driver writes the arrays once as .npy files into the run's scratch folder `RUN/.data/` and the workers map them).

The old code is checked out with `git worktree add --detach /tmp/dnc-old 21b70c2` when /tmp/dnc-old does not
exist yet (this script runs that command, and `git worktree remove --force /tmp/dnc-old` at the end; a
/tmp/dnc-old that was already there is used and left in place). The data are written once into a temporary
directory as a .npz: `xtr` float32 (50000, 3, 32, 32) standard normal, `ytr` int64 labels in 0..9, and a
1000-sample `xte`/`yte`. Each measurement is a fresh subprocess of this same interpreter with `PYTHONPATH` set to
the code tree under test (it wins over the editable install), started in the temporary directory: the workers
run `python -m ...`, which puts their working directory first on sys.path, so from the repo root the old
driver's workers would import the new package. The child reports `deepncheap.__file__` and its workers' module,
PYTHONPATH and whether their working directory holds a `deepncheap` folder; a run that imported other code
counts as failed. The child runs

    deepncheap.search(data=NPZ, network="mlp", penalty="params", method="random", max_trials=2, epochs=1,
                      executor="processes", workers=2, space={"num_hidden_layers": 0}, seed=0, ...)

(an MLP with no hidden layer on the 3072 flat features: training is quick, the data size is what matters) and
reports on its last stdout line, as JSON:
  driver peak      its own peak RSS over the whole search (`getrusage(RUSAGE_SELF).ru_maxrss`), which includes
                   the data loader (reading the .npz, the float32 cast, the validation split, standardizing:
                   the same code in both trees) and the interpreter with torch (about 0.26 GB at the start);
  load peak        the same peak read when `load_dataset` returns; then the peak is reset (Linux
                   /proc/self/clear_refs) and read again at the end:
  post-load peak   the driver's peak after the data were loaded: the hand-over to the workers and the search;
  after-load RSS   the RSS right after the load (the post-load peak's starting point);
  worker peak      the largest worker's peak RSS (`getrusage(RUSAGE_CHILDREN).ru_maxrss`: the workers are its
                   only children, killed and reaped when the search closes);
  worker anon/file the largest anonymous (private) and file-backed RSS of a worker, sampled every 0.1 s from
                   /proc/PID/status while the search runs: mapped .npy pages are file-backed, shared between
                   the workers and the page cache, and count in each worker's RSS;
  data             the bytes the executor hands over (x_train, y_train, x_val, y_val after the loader: the
                   614.4 MB of x plus the labels).
The runs interleave old, new, old, new, ... (`--repeats` each); the table shows the medians and new/old. MB are
10^6 bytes.

Last line: `driver_peak_mb_old=… driver_peak_mb_new=… driver_peak_ratio=… post_load_peak_mb_old=…
post_load_peak_mb_new=… worker_peak_mb_old=… worker_peak_mb_new=… worker_peak_ratio=… data_mb=…` (medians;
ratios new/old; a failed side gives nan). Writes benchmarks/results/data_memory.md and data_memory.csv;
`--quick` (10000 training samples, 1 repeat) data_memory_quick.*.

    .venv/bin/python benchmarks/data_memory.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from results_file import write_results  # (benchmarks/ is on sys.path: the scripts run as files)

ROOT = Path(__file__).resolve().parent.parent
OLD_COMMIT = "21b70c2"
OLD_TREE = Path("/tmp/dnc-old")
TREES = {"old": OLD_TREE, "new": ROOT}
MB = 1e6
KIB = 1024


# --- the child: one search, its memory on the last stdout line -------------------------------------------------


def _status(pid: int | str = "self") -> dict[str, int]:
    """The kB fields of /proc/PID/status that matter here (bytes)."""
    fields = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0]) * KIB
    return fields


def _children(parent: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as handle:
                    stat = handle.read()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == parent:
                pids.append(int(entry.name))
    return pids


class WorkerSampler(threading.Thread):
    """Samples the driver's children (the workers) every 0.1 s: largest RssAnon and RssFile, their command."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.done = threading.Event()
        self.anon = self.file = 0
        self.modules: set[str] = set()
        self.seen: set[int] = set()
        self.pythonpaths: set[str] = set()  # the workers' PYTHONPATH
        self.shadowed = False  # a worker ran in a folder holding a `deepncheap` (it would import that one)

    def run(self) -> None:
        me = os.getpid()
        while not self.done.wait(0.1):
            for pid in _children(me):
                try:
                    fields = _status(pid)
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        argv = handle.read().split(b"\0")
                except OSError:
                    continue
                self.anon = max(self.anon, fields.get("RssAnon", 0))
                self.file = max(self.file, fields.get("RssFile", 0) + fields.get("RssShmem", 0))
                if b"-m" in argv and pid not in self.seen:
                    self.seen.add(pid)
                    self.modules.add(argv[argv.index(b"-m") + 1].decode())
                    with contextlib.suppress(OSError):  # `python -m` puts its cwd first on sys.path
                        cwd = os.readlink(f"/proc/{pid}/cwd")
                        self.shadowed |= (Path(cwd) / "deepncheap").exists()
                        with open(f"/proc/{pid}/environ", "rb") as handle:
                            env = dict(v.partition(b"=")[::2] for v in handle.read().split(b"\0") if v)
                        self.pythonpaths.add(env.get(b"PYTHONPATH", b"").decode())


def child(npz: str, out: str) -> None:
    import deepncheap

    print(f"deepncheap imported from {deepncheap.__file__}", flush=True)
    search_module = sys.modules["deepncheap.search"]
    load_dataset = search_module.load_dataset
    seen: dict[str, float] = {}

    def measured_load(*args: Any, **kwargs: Any) -> Any:
        dataset = load_dataset(*args, **kwargs)
        seen["load_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB
        seen["data"] = sum(getattr(dataset, key).nbytes for key in ("x_train", "y_train", "x_val", "y_val"))
        seen["x"] = dataset.x_train.nbytes + dataset.x_val.nbytes
        seen["after_load_rss"] = _status()["VmRSS"]
        try:  # reset the peak RSS (VmHWM, and with it ru_maxrss) to the current RSS
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            seen["reset"] = 1
        except OSError:
            seen["reset"] = 0
        return dataset

    search_module.load_dataset = measured_load  # type: ignore[attr-defined]
    rss_start = _status()["VmRSS"]
    sampler = WorkerSampler()
    sampler.start()
    began = time.perf_counter()
    result = deepncheap.search(
        data=npz, network="mlp", penalty="params", method="random", max_trials=2, epochs=1,
        executor="processes", workers=2, space={"num_hidden_layers": 0}, out=out, verbose=False, seed=0,
    )  # fmt: skip
    search_s = time.perf_counter() - began
    sampler.done.set()
    sampler.join()
    final_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB
    lines = (Path(result.run_dir) / "trials.csv").read_text().splitlines()
    statuses = [line.split(",")[2] for line in lines[1:]]
    report = {
        "deepncheap_file": deepncheap.__file__,
        "worker_modules": sorted(sampler.modules),
        "worker_pythonpaths": sorted(sampler.pythonpaths),
        "worker_shadowed": sampler.shadowed,
        "trial_statuses": statuses,
        "search_s": search_s,
        "data_mb": seen["data"] / MB,
        "x_mb": seen["x"] / MB,
        "rss_start_mb": rss_start / MB,
        "load_peak_mb": seen["load_peak"] / MB,
        "after_load_rss_mb": seen["after_load_rss"] / MB,
        "post_load_peak_mb": final_peak / MB if seen["reset"] else None,
        "driver_peak_mb": max(seen["load_peak"], final_peak) / MB,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * KIB / MB,
        "worker_anon_mb": sampler.anon / MB,
        "worker_file_mb": sampler.file / MB,
    }
    print(json.dumps(report), flush=True)


# --- the driver: data, old tree, interleaved children, table -------------------------------------------------


def write_npz(path: Path, n_train: int, n_test: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(
        path,
        xtr=rng.standard_normal((n_train, 3, 32, 32), dtype=np.float32),
        ytr=rng.integers(0, 10, n_train, dtype=np.int64),
        xte=rng.standard_normal((n_test, 3, 32, 32), dtype=np.float32),
        yte=rng.integers(0, 10, n_test, dtype=np.int64),
    )


def old_tree() -> bool:
    """Check out the old commit at /tmp/dnc-old unless it is there; True when this script added it."""
    if OLD_TREE.exists():
        head = subprocess.run(
            ["git", "-C", str(OLD_TREE), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        want = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", OLD_COMMIT], capture_output=True, text=True, check=True
        ).stdout.strip()
        if head != want:
            sys.exit(f"{OLD_TREE} exists but is at {head[:7]}, not {OLD_COMMIT}; remove it or check out {OLD_COMMIT}")
        return False
    print(f"git -C {ROOT} worktree add --detach {OLD_TREE} {OLD_COMMIT}", flush=True)
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(OLD_TREE), OLD_COMMIT],
        check=True, capture_output=True,
    )  # fmt: skip
    return True


def run_child(code: str, npz: Path, out: Path) -> dict:
    env = os.environ | {"PYTHONPATH": str(TREES[code])}
    began = time.perf_counter()
    proc = subprocess.run(  # (run in the temp dir: its workers, `python -m`, import from their cwd first)
        [sys.executable, __file__, "--child", str(npz), str(out)], env=env, cwd=npz.parent, capture_output=True,
        text=True,
    )  # fmt: skip
    wall = time.perf_counter() - began
    lines = proc.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return {"code": code, "wall_s": wall, "error": f"exit code {proc.returncode}: {tail}"}
    expected = str(TREES[code] / "deepncheap" / "__init__.py")
    if report["deepncheap_file"] != expected:
        return {"code": code, "wall_s": wall, "error": f"imported {report['deepncheap_file']}, not {expected}"}
    if report["worker_pythonpaths"] != [str(TREES[code])] or report["worker_shadowed"]:
        return {"code": code, "wall_s": wall, "error": f"workers may have imported other code: {report}"}
    return {"code": code, "wall_s": wall, "error": "", **report}


def median(runs: list[dict], key: str) -> float:
    values = [r[key] for r in runs if not r["error"] and r.get(key) is not None]
    return statistics.median(values) if values else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each code tree, interleaved")
    parser.add_argument("--quick", action="store_true", help="10000 training samples, 1 repeat")
    parser.add_argument("--child", nargs=2, metavar=("NPZ", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    began = time.perf_counter()
    n_train, repeats = (10000, 1) if args.quick else (50000, args.repeats)
    added = old_tree()
    runs: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="dnc-data-memory-") as tmp:
            npz = Path(tmp) / "cifar_sized.npz"
            write_npz(npz, n_train, 1000)
            print(f"data: {npz} ({npz.stat().st_size / MB:.0f} MB on disk)", flush=True)
            for repeat in range(repeats):
                for code in ("old", "new"):
                    run = run_child(code, npz, Path(tmp) / f"{code}-{repeat}")
                    runs.append(run)
                    if run["error"]:
                        print(f"{code} #{repeat}: FAILED after {run['wall_s']:.1f} s: {run['error']}", flush=True)
                    else:
                        print(
                            f"{code} #{repeat}: {run['wall_s']:.1f} s, driver peak {run['driver_peak_mb']:.0f} MB, "
                            f"worker peak {run['worker_peak_mb']:.0f} MB, trials {','.join(run['trial_statuses'])}",
                            flush=True,
                        )
    finally:
        if added:
            print(f"git -C {ROOT} worktree remove --force {OLD_TREE}", flush=True)
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(OLD_TREE)], check=False)
    report(runs, args, n_train, repeats, time.perf_counter() - began)


def report(runs: list[dict], args: argparse.Namespace, n_train: int, repeats: int, wall_s: float) -> None:
    by_code = {code: [r for r in runs if r["code"] == code] for code in TREES}
    med = {code: {key: median(rs, key) for key in COLUMNS} for code, rs in by_code.items()}
    data_mb = median(runs, "data_mb")
    x_mb = median(runs, "x_mb")
    lines = [
        f"# data_memory{' (quick)' if args.quick else ''}",
        "",
        f"`processes` executor, 2 workers, MLP without hidden layers, 2 random trials of 1 epoch on synthetic "
        f"CIFAR-sized data ({n_train} x 3x32x32 float32 training samples + 1000 test): {data_mb:.1f} MB handed "
        f"to the workers ({x_mb:.1f} MB of x). Old = commit {OLD_COMMIT} (data through the pipes), new = working "
        f"tree (.npy files mapped by the workers). Medians of {repeats} interleaved runs each; MB = 10^6 bytes; "
        "old/data, new/data = the value over the data size.",
        "",
        "| measure | old MB | new MB | new/old | old/data | new/data |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in COLUMNS.items():
        old, new = med["old"][key], med["new"][key]
        if key == "search_s":
            lines.append(f"| {label} | {old:.1f} | {new:.1f} | {new / old:.3f} | | |")
        else:
            lines.append(
                f"| {label} | {old:.0f} | {new:.0f} | {new / old:.3f} | {old / data_mb:.2f} | {new / data_mb:.2f} |"
            )
    lines += [
        "",
        "Every run:",
        "",
        "| code | wall s | driver peak | load peak | after-load RSS | post-load peak | worker peak | worker anon "
        "| worker file | trials | deepncheap | worker module |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        if r["error"]:
            lines.append(f"| {r['code']} | {r['wall_s']:.1f} | FAILED: {r['error'].splitlines()[-1]} |")
            continue
        post = "" if r["post_load_peak_mb"] is None else f"{r['post_load_peak_mb']:.0f}"
        lines.append(
            f"| {r['code']} | {r['wall_s']:.1f} | {r['driver_peak_mb']:.0f} | {r['load_peak_mb']:.0f} "
            f"| {r['after_load_rss_mb']:.0f} | {post} | {r['worker_peak_mb']:.0f} | {r['worker_anon_mb']:.0f} "
            f"| {r['worker_file_mb']:.0f} | {','.join(r['trial_statuses'])} | {r['deepncheap_file']} "
            f"| {','.join(r['worker_modules'])} |"
        )
    errors = [r for r in runs if r["error"]]
    if errors:
        lines += ["", "Failures:", ""] + [f"- {r['code']}: {r['error']}" for r in errors]
    lines += ["", f"benchmark wall time: {wall_s:.0f} s", ""]

    def ratio(key: str) -> float:
        return med["new"][key] / med["old"][key]

    summary = (
        f"driver_peak_mb_old={med['old']['driver_peak_mb']:.0f} driver_peak_mb_new={med['new']['driver_peak_mb']:.0f} "
        f"driver_peak_ratio={ratio('driver_peak_mb'):.3f} "
        f"post_load_peak_mb_old={med['old']['post_load_peak_mb']:.0f} "
        f"post_load_peak_mb_new={med['new']['post_load_peak_mb']:.0f} "
        f"worker_peak_mb_old={med['old']['worker_peak_mb']:.0f} worker_peak_mb_new={med['new']['worker_peak_mb']:.0f} "
        f"worker_peak_ratio={ratio('worker_peak_mb'):.3f} data_mb={data_mb:.0f}"
    )
    lines.append(summary)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    header = ["code", "wall_s", "error", *CSV_KEYS]
    rows = ([";".join(v) if isinstance(v := r.get(k, ""), list) else v for k in header] for r in runs)
    write_results("data_memory", text, quick=args.quick, header=header, rows=rows)


COLUMNS = {
    "driver_peak_mb": "driver peak RSS (whole search)",
    "load_peak_mb": "driver peak when the data are loaded",
    "after_load_rss_mb": "driver RSS right after the load",
    "post_load_peak_mb": "driver peak after the load (hand-over + search)",
    "worker_peak_mb": "largest worker's peak RSS",
    "worker_anon_mb": "largest worker anonymous RSS (sampled)",
    "worker_file_mb": "largest worker file-backed RSS (sampled)",
    "search_s": "search wall time (s)",
}
CSV_KEYS = [
    "search_s", "data_mb", "x_mb", "rss_start_mb", "load_peak_mb", "after_load_rss_mb", "post_load_peak_mb",
    "driver_peak_mb", "worker_peak_mb", "worker_anon_mb", "worker_file_mb", "trial_statuses", "deepncheap_file",
    "worker_modules",
]  # fmt: skip


if __name__ == "__main__":
    main()
