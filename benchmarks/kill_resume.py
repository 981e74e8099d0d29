"""Crash safety: SIGKILL a small Deep-n-Cheap search at random moments, resume it, and check nothing is lost.

One uninterrupted reference search (MLP on digits, `--penalty params`, 4 prior points + 3 BO steps per BO
stage, a narrowed space) runs first; its wall time T, start-up included, sets the kill horizon. Then
`dnc search` is started into a fresh run directory and SIGKILLed after a random delay uniform in (0, T)
(seeded, so the moments repeat), then `dnc resume RUN` is started and killed the same way, and so on; a
process that ends on its own before its kill finishes its run, and the next kill goes to a new run. After
the last kill the current run is resumed to the end. A search killed before its store holds its settings
cannot be resumed: `dnc resume` must refuse it (exit 2), and it is started again (`--overwrite`).

After every kill the store is read (read-only): `PRAGMA integrity_check`, and its complete trials
(stage, stage_index, config). Checked:

- lost_trials: trials complete at a kill that are no longer complete once the next process has ended;
- duplicate_trials: (stage, stage_index) pairs with more than one complete row in a finished run;
- identical_best: every finished run's best.json config equals the reference's; each finished run also has
  the reference's complete trials, (stage, stage_index, config, objective) (else `mismatched_runs`);
- corrupt_stores: stores whose integrity check is not `ok` after a kill or at the end.

Prints a table (one row per kill) and, last, `kills=N lost_trials=L duplicate_trials=D identical_best=yes|no`
followed by more name=value pairs; writes the same to benchmarks/results/kill_resume.md.

    .venv/bin/python benchmarks/kill_resume.py [--kills 20] [--seed 0] [--epochs 40] [--quick]

Trials run with `--threads 1`: on this shared 2-core machine torch's default of two threads made trials
up to 30 times slower whenever anything else was running.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from results_file import write_results  # (benchmarks/ is on sys.path: the scripts run as files)

from deepncheap.store import STORE_NAME, IncompleteStore, RunStore

DNC = Path(sys.executable).parent / "dnc"
SPACE = "hidden_nodes: [20, 128]\nbatch_size: [32, 256]\n"
PROCESS_LIMIT_S = 300  # a process that runs on its own (no kill planned) longer than this is a hang

TrialKey = tuple[str, int, str]  # (stage, stage_index, config as sorted JSON)


@dataclass
class Snapshot:
    """What a run's store holds between two processes."""

    store: str  # "none" (no store file), "no settings", "unreadable: ...", or the run state
    integrity: str = "ok"
    complete: dict[TrialKey, float | None] = field(default_factory=dict)  # -> objective
    complete_rows: int = 0  # complete rows, duplicates included
    duplicates: int = 0  # (stage, stage_index) pairs with more than one complete row
    running: dict[int, str] = field(default_factory=dict)  # trial_id -> "stage #index" of rows left `running`
    interrupted: int = 0

    @property
    def resumable(self) -> bool:
        return self.store not in ("none", "no settings") and not self.store.startswith("unreadable")


@dataclass
class Kill:
    number: int
    run: int
    process: str
    at_s: float
    start: Snapshot
    killed: Snapshot
    after: Snapshot | None = None  # once the next process has ended
    lost: list[TrialKey] = field(default_factory=list)

    def doing(self, reference_complete: int) -> str:
        """A guess at what the process was doing when killed, from the store it left."""
        snap = self.killed
        if not snap.resumable:
            return "start-up (no store)" if snap.store == "none" else f"creating store ({snap.store})"
        new = [label for trial_id, label in snap.running.items() if trial_id not in self.start.running]
        if new:  # (a row still `running` from an earlier kill is not this process's)
            return f"trial {new[-1]}"
        if snap.store == "finished":
            return "already finished" if self.start.store == "finished" else "finished, exiting"
        if len(snap.complete) == reference_complete:
            return "writing outputs"
        if len(snap.complete) == len(self.start.complete):
            return "start-up / replay"
        return "between trials"


def read_store(run_dir: Path) -> Snapshot:
    """The run's store, opened read-only."""
    path = run_dir / STORE_NAME
    if not path.is_file():
        return Snapshot(store="none")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        rows = [(f"error: {exc}",)]
    finally:
        db.close()
    integrity = "ok" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows)
    try:
        with RunStore.open(run_dir) as store:
            state = store.state["state"]
            trials = store.trials()
    except IncompleteStore:
        return Snapshot(store="no settings", integrity=integrity)
    except sqlite3.DatabaseError as exc:
        return Snapshot(store=f"unreadable: {exc}", integrity=integrity)
    snap = Snapshot(store=state, integrity=integrity)
    pairs: dict[tuple[str, int], int] = {}
    for t in trials:
        if t.status == "complete":
            snap.complete[(t.stage, t.stage_index, json.dumps(t.config, sort_keys=True))] = t.objective
            snap.complete_rows += 1
            pairs[(t.stage, t.stage_index)] = pairs.get((t.stage, t.stage_index), 0) + 1
        elif t.status == "running":
            snap.running[t.trial_id] = f"{t.stage} #{t.stage_index}"
        elif t.status == "interrupted":
            snap.interrupted += 1
    snap.duplicates = sum(1 for n in pairs.values() if n > 1)
    return snap


class Bench:
    """The processes, run directories and findings of one benchmark."""

    def __init__(self, root: Path, args: argparse.Namespace):
        self.root = root
        self.space = root / "space.yaml"
        self.space.write_text(SPACE)
        self.args = args
        self.processes = 0
        self.notes: list[str] = []
        self.errors = 0

    def search_command(self, run_dir: Path, *, overwrite: bool = False) -> list[str]:
        a = self.args
        command = [str(DNC), "search", "--data", "digits", "--network", "mlp", "--penalty", "params", "--wc", "0.1",
                   "--seed", str(a.seed), "--prior-points", "4", "--bo-steps", "3", "--epochs", str(a.epochs),
                   "--threads", "1", "--space", str(self.space), "--quiet", "--out", str(run_dir)]  # fmt: skip
        return command + ["--overwrite"] if overwrite else command

    def start(self, command: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        self.processes += 1
        log = self.root / f"process{self.processes}.stderr"
        with open(self.root / f"process{self.processes}.stdout", "wb") as out, open(log, "wb") as err:
            return subprocess.Popen(command, stdout=out, stderr=err), log

    def run_to_end(self, command: list[str]) -> tuple[int, str]:
        """Run a process without killing it (unless it hangs); its exit status and stderr."""
        process, log = self.start(command)
        try:
            process.wait(timeout=PROCESS_LIMIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return process.returncode, log.read_text(errors="replace").strip()


@dataclass(frozen=True)
class RunCheck:
    """A finished run against the reference."""

    run: int
    same_best: bool  # best.json config
    same_trials: bool  # complete trials: (stage, stage_index, config, objective), no more rows
    duplicates: int  # (stage, stage_index) pairs with several complete rows
    rerun: int  # trials marked `interrupted` (trained again because a kill hit them)


@dataclass
class Reference:
    wall_s: float
    best_config: dict
    complete: dict[TrialKey, float | None]


def check_finished(run: int, run_dir: Path, ref: Reference, bench: Bench) -> RunCheck:
    """Compare a finished run with the reference (problems go to the notes)."""
    snap = read_store(run_dir)
    best_file = run_dir / "best.json"
    best = json.loads(best_file.read_text())["config"] if best_file.is_file() else None
    same_best = best == ref.best_config
    same_trials = snap.complete == ref.complete and snap.complete_rows == len(ref.complete)
    if snap.store != "finished":
        bench.notes.append(f"run {run}: finished process but store state is {snap.store!r}")
    if not same_best:
        bench.notes.append(f"run {run}: best.json config {best} differs from the reference's {ref.best_config}")
    if not same_trials:
        missing = sorted(set(ref.complete) - set(snap.complete))
        extra = sorted(set(snap.complete) - set(ref.complete))
        changed = sorted(k for k in set(ref.complete) & set(snap.complete) if ref.complete[k] != snap.complete[k])
        bench.notes.append(
            f"run {run}: complete trials differ from the reference ({snap.complete_rows} rows vs "
            f"{len(ref.complete)}; missing {missing}, extra {extra}, other objective {changed})"
        )
    if snap.duplicates:
        bench.notes.append(f"run {run}: {snap.duplicates} (stage, stage_index) pairs with several complete rows")
    return RunCheck(run, same_best, same_trials, snap.duplicates, snap.interrupted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments and of the searches")
    parser.add_argument("--epochs", type=int, default=40, help="epochs per trial (sets a search's length)")
    parser.add_argument("--quick", action="store_true", help="5 kills, written to results/kill_resume_quick.md")
    args = parser.parse_args()
    if args.quick:
        args.kills = 5
    started = time.perf_counter()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp), args)
        # --- the reference: one uninterrupted search ---
        ref_dir = Path(tmp) / "reference"
        t0 = time.perf_counter()
        rc, err = bench.run_to_end(bench.search_command(ref_dir))
        if rc != 0:
            sys.exit(f"the reference search failed (exit {rc}):\n{err}")
        ref_snap = read_store(ref_dir)
        ref = Reference(
            wall_s=time.perf_counter() - t0,
            best_config=json.loads((ref_dir / "best.json").read_text())["config"],
            complete=ref_snap.complete,
        )
        print(f"reference search: {ref.wall_s:.1f} s, {len(ref.complete)} complete trials", flush=True)

        kills: list[Kill] = []
        pending: Kill | None = None  # the last kill, until the process after it has ended
        run, run_dir, command, process_kind = 0, Path(), [], ""
        finished_runs: list[RunCheck] = []
        corrupt: set[int] = set()

        def new_run() -> None:
            nonlocal run, run_dir, command, process_kind
            run += 1
            run_dir = Path(tmp) / f"run{run}"
            command, process_kind = bench.search_command(run_dir), "search"

        def settle(snap: Snapshot) -> None:
            """The process after the pending kill has ended: did it lose any trial complete at the kill?"""
            nonlocal pending
            if pending is not None:
                pending.after = snap
                pending.lost = sorted(set(pending.killed.complete) - set(snap.complete))
                if pending.lost:
                    bench.notes.append(
                        f"kill {pending.number} (run {pending.run}): trials complete at the kill are not complete "
                        f"after the next process: {pending.lost}; store now {snap}"
                    )
                pending = None

        def finish(rc: int, err: str) -> None:
            """The current process ended on its own: the run is finished (or broken); go to a new run."""
            snap = read_store(run_dir)
            settle(snap)
            if snap.integrity != "ok":
                corrupt.add(run)
            if rc == 0:
                finished_runs.append(check_finished(run, run_dir, ref, bench))
            else:
                bench.errors += 1
                bench.notes.append(f"run {run}: `{process_kind}` exited {rc} on its own; stderr: {err[-2000:]}")
            new_run()

        def after_kill(kill: Kill) -> None:
            """Choose the next process: resume, or start again if the store holds no settings yet."""
            nonlocal command, process_kind
            if kill.killed.integrity != "ok":
                corrupt.add(kill.run)
                bench.notes.append(f"kill {kill.number} (run {kill.run}): integrity_check: {kill.killed.integrity}")
            if kill.killed.resumable:
                command, process_kind = [str(DNC), "resume", str(run_dir), "--quiet"], "resume"
                return
            rc, err = bench.run_to_end([str(DNC), "resume", str(run_dir), "--quiet"])
            settle(read_store(run_dir))
            if rc != 2:
                bench.errors += 1
                bench.notes.append(f"kill {kill.number}: resume of a run without settings exited {rc}: {err[-2000:]}")
            else:
                bench.notes.append(f"kill {kill.number}: `dnc resume` refused as expected: {err}")
            command = bench.search_command(run_dir, overwrite=kill.killed.store != "none")
            process_kind = "search"

        new_run()
        while len(kills) < args.kills:
            start_snap = read_store(run_dir)
            delay = rng.uniform(0, ref.wall_s)
            process, log = bench.start(command)
            t0 = time.perf_counter()
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            at = time.perf_counter() - t0
            if process.returncode != -signal.SIGKILL:  # it ended on its own before the kill
                finish(process.returncode, log.read_text(errors="replace").strip())
                continue
            snap = read_store(run_dir)
            settle(snap)
            kill = Kill(len(kills) + 1, run, process_kind, at, start_snap, snap)
            kills.append(kill)
            pending = kill
            print(f"kill {kill.number}: run {run} {process_kind} at {at:.2f} s, {kill.doing(len(ref.complete))}")
            after_kill(kill)

        # --- after the last kill: run the current run to its end ---
        finish(*bench.run_to_end(command))
        wall = time.perf_counter() - started

    # --- report ---
    header = (
        f"{'kill':>4} {'run':>3} {'process':<7} {'kill_s':>6} {'start':>5} {'at_kill':>7} {'after':>5} "
        f"{'lost':>4}  {'store':<12} at kill"
    )
    lines = [header]
    for k in kills:
        after = "-" if k.after is None else str(len(k.after.complete))
        lines.append(
            f"{k.number:>4} {k.run:>3} {k.process:<7} {k.at_s:>6.2f} {len(k.start.complete):>5} "
            f"{len(k.killed.complete):>7} {after:>5} {len(k.lost):>4}  {k.killed.store:<12} "
            f"{k.doing(len(ref.complete))}"
        )
    lines.append("")
    lines.append("start, at_kill, after: complete trials when the killed process started, right after the kill,")
    lines.append("  and once the next process ended; lost: complete at the kill, not after; store: stored run state")
    lines.append(
        f"reference: {len(ref.complete)} complete trials in {ref.wall_s:.1f} s; kill delays uniform in (0, "
        f"{ref.wall_s:.1f}) s; {bench.processes} dnc processes"
    )
    for c in finished_runs:
        lines.append(
            f"run {c.run} finished: best config {'=' if c.same_best else '!='} reference, complete trials "
            f"{'=' if c.same_trials else '!='} reference, {c.duplicates} duplicated, {c.rerun} trained again"
        )
    lines += [f"note: {n}" for n in bench.notes]
    lost = sum(len(k.lost) for k in kills)
    duplicates = sum(c.duplicates for c in finished_runs)
    identical = bool(finished_runs) and all(c.same_best for c in finished_runs)
    mismatched = sum(1 for c in finished_runs if not (c.same_best and c.same_trials))
    summary = (
        f"kills={len(kills)} lost_trials={lost} duplicate_trials={duplicates} "
        f"identical_best={'yes' if identical else 'no'} runs={len(finished_runs)} mismatched_runs={mismatched} "
        f"rerun_trials={sum(c.rerun for c in finished_runs)} corrupt_stores={len(corrupt)} errors={bench.errors} "
        f"reference_s={ref.wall_s:.1f} wall_s={wall:.0f}"
    )
    print()
    print("\n".join(lines))
    print(summary)

    command_line = " ".join(["benchmarks/kill_resume.py", *sys.argv[1:]])
    write_results(
        "kill_resume",
        f"# kill_resume.py\n\n`.venv/bin/python {command_line}` on {datetime.now():%Y-%m-%d %H:%M} "
        f"(2-core CPU, shared).\n\n```text\n" + "\n".join(lines) + f"\n```\n\n{summary}\n",
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
