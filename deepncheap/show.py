"""`dnc show`: a run for people, from the store only (also while the search runs): the settings line, the
state, the trials table, the epochs of the running trials, the run's log, and the best trial per stage;
with `--wc`, the trial each weight would choose and the Pareto front (the rows the report shows too). A
transfer run names its source, and each trial's source trial and objective; `format_transfer` is the
side-by-side table `dnc transfer` prints."""

from __future__ import annotations

import io
import itertools
import math
import shutil
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from deepncheap import search_cost, timing
from deepncheap.constraints import Constraints
from deepncheap.objective import Baselines, performance_floor
from deepncheap.progress import human_count
from deepncheap.pruning import BOUND_REASON
from deepncheap.rundir import check_run, holder_pid
from deepncheap.side_by_side import source_labels, transfer_rows
from deepncheap.store import STAGES, RunStore, Trial, best_of
from deepncheap.tradeoff import Winner, pareto_front, winners


def open_run(run_dir: str | Path) -> RunStore:
    """The run's store, read-only; OutputError when `run_dir` is not a run."""
    check_run(Path(run_dir))
    return RunStore.open(Path(run_dir), readonly=True)


def summarize_config(config: dict[str, Any]) -> str:
    """A short form of a config: layers, then the training hyperparameters; e.g. `L5 16-32x2-64x2 pool bn.75
    do.5 sc2 lr3e-3 wd1e-5 b64` (channels per layer, `x2`: two layers alike) or `H2 256-64 do.2 lr1e-3 wd0 b64`."""
    if config.get("network") == "cnn":
        do = f" do{_fraction(config['do_frac'])}" if config["do_frac"] else ""
        sc = f" sc{config['shortcut_every']}" if config["shortcut_every"] else ""
        pool = "pool" if config["downsampling"] == "maxpool" else config["downsampling"]
        layers = (
            f"L{len(config['channels'])} {_runs(config['channels'])} {pool} bn{_fraction(config['bn_frac'])}{do}{sc}"
        )
    else:
        nodes = config["hidden_nodes"]
        do = f" do{_fraction(config['drop_prob'])}" if nodes and config["drop_prob"] else ""
        layers = f"H{len(nodes)} {_runs(nodes) if nodes else 'linear'}{do}"
    training = f"lr{_number(config['lr'])} wd{_number(config['weight_decay'])} b{config['batch_size']}"
    return f"{layers} {training}"


def _runs(widths: list[int]) -> str:
    """[32, 64, 64, 128] -> '32-64x2-128'."""
    parts: list[str] = []
    for width, group in itertools.groupby(widths):
        count = len(list(group))
        parts.append(f"{width}x{count}" if count > 1 else str(width))
    return "-".join(parts)


def _fraction(value: float) -> str:
    """0.75 -> '.75', 1.0 -> '1'."""
    text = f"{value:g}"
    return text[1:] if text.startswith("0.") else text


def _number(value: float) -> str:
    """0.003 -> '3e-3', 0.0125 -> '1.2e-2', 0 -> '0'."""
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


# The table's columns, and how long each stays when the terminal is narrow (the lowest go first); the
# config column takes the rest of the width (at least CONFIG_MIN_WIDTH), wrapped over several lines.
COLUMN_PRIORITY = {
    "id": 9,
    "stage": 5,
    "status": 8,
    "objective": 9,
    "val acc": 7,
    "val loss": 7,
    "params": 4,
    "FLOPs": 1,
    "s/epoch": 4,
    "noise": 0,
    "wall s": 2,
}
CONFIG_MIN_WIDTH = 24
COLUMN_GAP = 2


def trials_table(
    trials: list[Trial],
    *,
    title: str = "trials",
    width: int = 100,
    penalty: str = "time",
    sources: dict[int, str] | None = None,
) -> Table:
    """The trials, one row each, in `width` columns: at narrow widths the columns that matter least go first
    (noise, FLOPs, wall time, the cross-entropy of a classification), and the config wraps. `sources`: the
    source trial and objective of each trial of a transfer run (`side_by_side.source_labels`)."""

    rows = [
        {
            "id": str(t.trial_id),
            "stage": t.stage,
            "status": t.status,
            "objective": _fmt(t.objective, "+.4f"),
            "val acc": _fmt(t.val_accuracy, ".4f"),
            "val loss": _fmt(t.val_loss, ".4g"),
            "params": human_count(t.n_params),
            "FLOPs": human_count(t.flops),
            "s/epoch": _fmt(t.time_per_epoch_s, ".3f"),
            "noise": _fmt(t.time_noise, ".0%"),
            "wall s": _fmt(t.wall_s, ".1f"),
            "source": (sources or {}).get(t.trial_id, "-"),
        }
        for t in trials
    ]
    priority = dict(COLUMN_PRIORITY) | ({"source": 7} if sources else {})
    priority["params" if penalty == "params" else "s/epoch"] = 6  # the cost the search weighs
    if any(t.val_accuracy is not None for t in trials):
        priority["val loss"] = 3  # (the cross-entropy, next to the accuracy)
    else:
        del priority["val acc"]  # (regression)
    natural = {name: max([len(name), *(len(row[name]) for row in rows)]) for name in priority}
    shown = list(priority)

    def config_width() -> int:
        return width - sum(natural[name] + COLUMN_GAP for name in shown)

    while len(shown) > 1 and config_width() < CONFIG_MIN_WIDTH:
        shown.remove(min(shown, key=lambda name: priority[name]))
    config_width_ = max(config_width(), CONFIG_MIN_WIDTH)

    table = Table(title=title, title_justify="left", box=None, pad_edge=False, padding=(0, COLUMN_GAP // 2))
    for name in shown:
        table.add_column(name, justify="left" if name in ("stage", "status") else "right", no_wrap=True)
    table.add_column("config", justify="left", overflow="fold", max_width=config_width_)
    for t, row in zip(trials, rows, strict=True):
        table.add_row(*(row[name] for name in shown), wrap_config(summarize_config(t.config), config_width_))
    return table


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


BREAKS = "-./:,_"  # where a word too long for its line may break (a list of channels, a dotted name)


def wrap_config(text: str, width: int) -> str:
    """`text` in lines of at most `width` characters, broken at spaces, or after one of `BREAKS` inside a
    word that does not fit (a long list of channels, an exception's module path)."""
    lines = [""]
    for word in text.split():
        while word:
            gap = 1 if lines[-1] else 0
            room = width - len(lines[-1]) - gap
            cut = len(word) if len(word) <= room else max(word.rfind(c, 0, room) for c in BREAKS) + 1
            if not cut and not lines[-1]:  # not even a piece fits on an empty line
                cut = width
            if cut:
                lines[-1] += " " * gap + word[:cut]
                word = word[cut:]
            if word:
                lines.append("")
    return "\n".join(lines)


def show_run(run_dir: str | Path, console: Console | None = None, *, debug: bool = False) -> None:
    """Print the run's settings line, its trials and its best trial; `debug`: failed trials' tracebacks."""
    # As wide as the terminal (or $COLUMNS; 100 when piped); long lines and configs wrap.
    console = console or Console(highlight=False, markup=False, width=shutil.get_terminal_size((100, 24)).columns)
    with open_run(run_dir) as store:
        settings = store.settings
        trials = store.trials()
        best = best_of(trials)
        state = store.state
        running = [t.trial_id for t in trials if t.status == "running"]
        epochs = store.epochs(running) if running else []
        log_lines = store.log_lines()
        baselines = store.get("baselines")
        cost = search_cost.summarize(store)
    counts = {s: sum(t.status == s for t in trials) for s in sorted({t.status for t in trials})}
    console.print(
        f"run {run_dir}: {settings['data']['name']} {settings['network']} w_c={settings['wc']} "
        f"penalty={settings['penalty']} method={settings['method']} epochs={settings['epochs']} "
        f"seed={settings['seed']} prune={settings.get('prune', 'none')}"
    )
    console.print("trials: " + (", ".join(f"{n} {s}" for s, n in counts.items()) or "none yet"))
    if settings.get("transfer_from"):
        console.print(
            f"transferred from {settings['transfer_from']}: its {len(settings['transfer_configs'])} best configs "
            "(distinct networks); the source column gives each one's trial and objective there",
            soft_wrap=True,
        )
    constraints = Constraints.of(settings)
    if constraints:
        violators = [t.trial_id for t in trials if t.violation is not None and t.epochs]
        console.print(
            f"constraints: {constraints.describe()}; trained trials that violate one (never the best): "
            + (", ".join(f"#{i}" for i in violators) or "none")
        )
    # (never wrapped: it may end with a command to copy)
    console.print(f"state: {describe_state(state, holder_pid(Path(run_dir)), run_dir)}", soft_wrap=True)
    if settings["penalty"] == "time" and baselines and baselines.get("time_per_epoch_s") is not None:
        console.print(describe_time_measure(Baselines.from_dict(baselines), trials))
    sources = source_labels(settings, trials)
    console.print(trials_table(trials, width=console.width, penalty=settings["penalty"], sources=sources))
    errors: dict[str, list[int]] = {}
    for t in trials:
        if t.status == "failed":
            errors.setdefault(t.error or "no error recorded", []).append(t.trial_id)
    for error, ids in errors.items():
        console.print(f"failed: {', '.join(f'#{i}' for i in ids)}: {error}")
    pruned: dict[str, list[int]] = {}
    trials_by_id = {t.trial_id: t for t in trials}
    for t in trials:
        if t.status == "pruned":
            pruned.setdefault(t.reason or "no reason recorded", []).append(t.trial_id)
    for reason, ids in pruned.items():
        what = (
            "its bound" if reason == BOUND_REASON or not trials_by_id[ids[0]].epochs else "its objective when stopped"
        )
        console.print(f"pruned ({reason}; the objective column holds {what}): {', '.join(f'#{i}' for i in ids)}")
    console.print(f"search cost: {search_cost.describe(cost)}")
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
    if constraints:
        margins = constraints.margins(
            {"n_params": best.n_params, "flops": best.flops, "latency_ms": best.latency_ms,
             "time_per_epoch_s": best.time_per_epoch_s}
        )  # fmt: skip
        console.print(
            "margins of the best (limit minus its value): "
            + ", ".join(f"--{k.replace('_', '-')} {v:,.4g}" for k, v in margins.items())
        )


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
        f"{trial.time_per_epoch_s:.3f} s/epoch"
        + (f", {trial.latency_ms:.3g} ms latency" if trial.latency_ms is not None else "")
        + f"; {summarize_config(trial.config)}"
    )


def score_text(trial: Trial) -> str:
    """Validation accuracy, or the validation MSE of a regression."""
    return f"{trial.val_accuracy:.4f}" if trial.val_accuracy is not None else f"{trial.val_loss or math.nan:.4g}"


TRADEOFF_HEADERS = ("w_c", "winning trial", "stage", "f_p", "f_c", "val score", "params", "objective at w_c")
PARETO_HEADERS = ("trial", "stage", "f_p", "f_c", "val score", "params", "FLOPs", "s/epoch", "objective")
TRANSFER_HEADERS = ("source trial", "source objective", "trial", "status", "objective", "params", "s/epoch", "config")


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


def transfer_table(settings: dict[str, Any], trials: list[Trial]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The headers and rows of a transfer run's side-by-side table (`side_by_side.transfer_rows`): each config's
    source trial and objective next to its trial on the run's data."""
    classification = settings["data"]["task"] == "classification"
    score, spec = ("val_accuracy", ".4f") if classification else ("val_loss", ".4g")
    rows: list[tuple[str, ...]] = [
        (f"#{r['source_trial_id']}", f"{r['source_objective']:+.4f}",
         "-" if r["trial_id"] is None else f"#{r['trial_id']}", r["status"], _fmt(r["objective"], "+.4f"),
         _fmt(r[score], spec), human_count(r["n_params"]), _fmt(r["time_per_epoch_s"], ".3f"),
         summarize_config(r["config"]))
        for r in transfer_rows(settings, trials)
    ]  # fmt: skip
    return (*TRANSFER_HEADERS[:5], "val acc" if classification else "val loss", *TRANSFER_HEADERS[5:]), rows


def format_transfer(run_dir: str | Path) -> str:
    """The side-by-side table of a transfer run (`transfer_table`), as text as wide as the terminal (240
    columns when piped)."""
    with open_run(run_dir) as store:
        settings, trials = store.settings, store.trials()
    headers, rows = transfer_table(settings, trials)
    title = f"transferred from {settings['transfer_from']} to {settings['data']['name']}"
    buffer = io.StringIO()
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 240
    Console(file=buffer, highlight=False, markup=False, width=width).print(
        _table(title, headers, rows, text=("status", "config"))
    )
    return buffer.getvalue().rstrip("\n")


def _table(
    title: str, headers: tuple[str, ...], rows: list[tuple[str, ...]], text: tuple[str, ...] = ("stage",)
) -> Table:
    table = Table(title=title, title_justify="left")
    for name in headers:
        table.add_column(name, justify="left" if name in text else "right")
    for row in rows:
        table.add_row(*row)
    return table
