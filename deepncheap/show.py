"""`dnc show`: a run for people, from the store only (also while the search runs): the settings line, the
state, the trials table, the epochs of the running trials, the run's log, and the best trial per stage;
with `--wc`, the trial each weight would choose and the Pareto front (the rows the report shows too)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from deepncheap import timing
from deepncheap.objective import Baselines, performance_floor
from deepncheap.progress import human_count
from deepncheap.rundir import check_run, holder_pid
from deepncheap.store import STAGES, RunStore, Trial, best_of
from deepncheap.tradeoff import Winner, pareto_front, winners


def open_run(run_dir: str | Path) -> RunStore:
    """The run's store, read-only; OutputError when `run_dir` is not a run."""
    check_run(Path(run_dir))
    return RunStore.open(Path(run_dir), readonly=True)


def summarize_config(config: dict[str, Any]) -> str:
    """A short human form of a config: layers, then the training hyperparameters."""
    if config.get("network") == "cnn":
        layers = f"conv {'-'.join(map(str, config['channels']))} {config['downsampling']}"
        layers += f" bn{config['bn_frac']:g} do{config['do_frac']:g} sc{config['shortcut_every']}"
    else:
        layers = f"mlp {'-'.join(map(str, config['hidden_nodes'])) or 'linear'} do{config['drop_prob']:g}"
    return f"{layers} lr {config['lr']:.2g} wd {config['weight_decay']:.2g} bs {config['batch_size']}"


def trials_table(trials: list[Trial], *, title: str = "trials") -> Table:
    table = Table(title=title, title_justify="left")
    for name in (
        "id",
        "stage",
        "status",
        "objective",
        "val acc",
        "val loss",
        "params",
        "FLOPs",
        "s/epoch",
        "noise",
        "wall s",
        "config",
    ):
        table.add_column(name, justify="left" if name in ("stage", "status", "config") else "right")

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for t in trials:
        table.add_row(
            str(t.trial_id),
            t.stage,
            t.status,
            fmt(t.objective, "+.4f"),
            fmt(t.val_accuracy, ".4f"),
            fmt(t.val_loss, ".4g"),
            human_count(t.n_params),
            human_count(t.flops),
            fmt(t.time_per_epoch_s, ".3f"),
            fmt(t.time_noise, ".0%"),
            fmt(t.wall_s, ".1f"),
            summarize_config(t.config) if t.status != "failed" else (t.error or "")[:80],
        )
    return table


def show_run(run_dir: str | Path, console: Console | None = None, *, debug: bool = False) -> None:
    """Print the run's settings line, its trials and its best trial; `debug`: failed trials' tracebacks."""
    # Piped output (a file, a pager, another program) gets whole lines and a table wide enough to read.
    console = console or Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 240)
    with open_run(run_dir) as store:
        settings = store.settings
        trials = store.trials()
        best = best_of(trials)
        state = store.state
        running = [t.trial_id for t in trials if t.status == "running"]
        epochs = store.epochs(running) if running else []
        log_lines = store.log_lines()
        baselines = store.get("baselines")
    counts = {s: sum(t.status == s for t in trials) for s in sorted({t.status for t in trials})}
    console.print(
        f"run {run_dir}: {settings['data']['name']} {settings['network']} w_c={settings['wc']} "
        f"penalty={settings['penalty']} method={settings['method']} epochs={settings['epochs']} "
        f"seed={settings['seed']}; trials: " + (", ".join(f"{n} {s}" for s, n in counts.items()) or "none yet")
    )
    console.print(f"state: {describe_state(state, holder_pid(Path(run_dir)), run_dir)}")
    if settings["penalty"] == "time" and baselines and baselines.get("time_per_epoch_s") is not None:
        console.print(describe_time_measure(Baselines.from_dict(baselines), trials))
    console.print(trials_table(trials))
    for trial_id in running:
        reported = [e for e in epochs if e.trial_id == trial_id]
        curve = ", ".join(f"{e.epoch}: {e.val_score or float('nan'):.4g} ({e.epoch_time_s:.3f} s)" for e in reported)
        console.print(f"running trial #{trial_id}, epochs so far (validation score, time): {curve or 'none yet'}")
    for line in log_lines:
        console.print(f"log: {line}")
    if debug:
        for t in trials:
            if t.traceback:
                console.print(f"trial #{t.trial_id} traceback:\n{t.traceback}", markup=False)
    if best is None:
        console.print("no complete trial yet")
        return
    for stage in STAGES:
        stage_best = best_of([t for t in trials if t.stage == stage])
        if stage_best is not None:
            console.print(f"best {stage}: {describe_best(stage_best)}")
    console.print(f"best overall: {describe_best(best)}")


def describe_state(state: dict[str, Any], pid: int | None, run_dir: str | Path) -> str:
    """Where the run stands: running (in which process), finished, or stopped and how to continue it."""
    name, reason = state["state"], state.get("reason")
    if pid is not None:
        return f"running (pid {pid})"
    resume = f"continue with: dnc resume {run_dir}"
    if name == "running":  # recorded as running, yet no process holds the run: its driver was killed
        return f"not running (its process ended without stopping; killed?); {resume}"
    if name in ("stopped", "interrupted"):
        return f"{name} by {reason}; {resume}"
    return f"{name} ({reason})" if reason else name


def describe_time_measure(baselines: Baselines, trials: list[Trial]) -> str:
    """How f_c is timed in this run, and how noisy the measured epochs were (the `noise` column: the
    relative spread between one trial's timed epochs)."""
    noise = sorted(t.time_noise for t in trials if t.time_noise is not None)
    spread = f"median {noise[len(noise) // 2]:.0%}, largest {noise[-1]:.0%}" if noise else "none measured yet"
    reference = f"{baselines.time_per_epoch_s:.4f} s"
    if baselines.time_measure == timing.COST_MODEL:
        return (
            f"time measure: cost model (the reference config's epoch took {reference}, under "
            f"{timing.TIMEABLE_EPOCH_S} s, too short to time reliably); f_c = modelled epoch / the reference's; "
            f"measured times are listed for reference, their noise between epochs: {spread}"
        )
    return (
        f"time measure: fastest timed epoch / the reference config's ({reference}); "
        f"noise between one trial's epochs: {spread}"
    )


def describe_best(trial: Trial) -> str:
    """One line: the trial, its config and its metrics."""
    score = (
        f"val accuracy {trial.val_accuracy:.4f}" if trial.val_accuracy is not None else f"val loss {trial.val_loss:.4g}"
    )
    return (
        f"trial #{trial.trial_id} ({trial.stage}) objective {trial.objective:+.4f}, {score}, "
        f"{human_count(trial.n_params)} params, {human_count(trial.flops)} FLOPs, "
        f"{trial.time_per_epoch_s:.3f} s/epoch; {summarize_config(trial.config)}"
    )


def score_text(trial: Trial) -> str:
    """Validation accuracy, or the validation MSE of a regression."""
    return f"{trial.val_accuracy:.4f}" if trial.val_accuracy is not None else f"{trial.val_loss or math.nan:.4g}"


TRADEOFF_HEADERS = ("w_c", "winning trial", "stage", "f_p", "f_c", "val score", "params", "objective at w_c")
PARETO_HEADERS = ("trial", "stage", "f_p", "f_c", "val score", "params", "FLOPs", "s/epoch", "objective")


def tradeoff_rows(winners: list[Winner]) -> list[tuple[str, ...]]:
    """One row per weight: the stored trial it would choose (TRADEOFF_HEADERS)."""
    return [
        (f"{w.wc:g}", f"#{w.trial.trial_id}", w.trial.stage, f"{w.trial.f_p:.4g}", f"{w.trial.f_c:.4g}",
         score_text(w.trial), human_count(w.trial.n_params), f"{w.objective:+.4f}")
        for w in winners
    ]  # fmt: skip


def pareto_rows(front: list[Trial]) -> list[tuple[str, ...]]:
    """One row per trial of a Pareto front (PARETO_HEADERS)."""
    return [
        (f"#{t.trial_id}", t.stage, f"{t.f_p:.4g}", f"{t.f_c:.4g}", score_text(t), human_count(t.n_params),
         human_count(t.flops), f"{t.time_per_epoch_s or math.nan:.3f}", f"{t.objective:+.4f}")
        for t in front
    ]  # fmt: skip


def show_tradeoff(run_dir: str | Path, weights: list[float], console: Console | None = None) -> None:
    """Print which stored trial each weight w_c would choose, and the accuracy-vs-cost Pareto front (f_p
    against f_c); nothing is trained again."""
    console = console or Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 240)
    with open_run(run_dir) as store:
        trials = store.trials(status="complete")
        data = store.settings["data"]
    if not trials:
        console.print("no complete trial yet: no trade-off to show")
        return
    floor = performance_floor(task=data["task"], n_val=int(data["n_val"]))
    console.print(_table("trade-off: the trial each w_c chooses", TRADEOFF_HEADERS,
                         tradeoff_rows(winners(trials, weights, floor=floor))))  # fmt: skip
    front = pareto_front(trials)
    console.print(_table(f"Pareto front of f_p against f_c ({len(front)} of {len(trials)} trials)", PARETO_HEADERS,
                         pareto_rows(front)))  # fmt: skip


def _table(title: str, headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in headers:
        table.add_column(name, justify="left" if name == "stage" else "right")
    for row in rows:
        table.add_row(*row)
    return table
