"""The public API and the life of a run: `search` starts one (`start_run`, which `transfer` uses too),
`resume` continues one, and both drive it the same way: check the options, start the executor, load the
data, open the run's store, measure the baselines, then let the runner drive the method (`methods/`) until
it is done, a budget is reached or a stop is requested, and record how the run ended.

Nothing process-wide is left changed: torch's thread count and the global random generators are restored
when a search returns, and each search has its own stop event (`stopping.py`), so two searches in one
process never stop each other.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepncheap import artifacts, rundir, side_by_side
from deepncheap.artifacts import SearchResult, load_run
from deepncheap.constraints import Constraints, check_achievable, latency_probe
from deepncheap.data import Dataset, load_dataset
from deepncheap.errors import SearchFailedError, SearchInterrupted, SearchStopped, SettingsError
from deepncheap.executors import Executor, create_executor, opened
from deepncheap.history import History, every_trial_failed
from deepncheap.latency import LatencyProbe
from deepncheap.methods import MethodContext, method_for, planned_trials
from deepncheap.progress import EventSink, SearchProgress
from deepncheap.pruning import Pruner, memoized
from deepncheap.report.noted import write_report_noted
from deepncheap.run_costs import costed_context, run_scorer
from deepncheap.run_data import data_options, reload_dataset, source_name
from deepncheap.runner import BudgetReached, Runner
from deepncheap.search_cost import SlotClock
from deepncheap.settings import TRANSFER, SearchSettings, parse_duration
from deepncheap.space import SearchSpace
from deepncheap.stopping import active_stop_event
from deepncheap.store import RunStore
from deepncheap.train import process_state_kept, uses_augmentation
from deepncheap.trial import resolve_device

__all__ = ["SearchResult", "load_run", "resume", "search", "start_run"]

log = logging.getLogger("deepncheap")
SMALL_VALIDATION = 100  # fewer validation rows than this: the run warns that its accuracies are coarse
SCRATCH = ".data"  # the run's scratch folder (data files of worker processes), removed when the driver ends
AUGMENT_NOTE = (
    "augmentation: every training batch is randomly cropped (images padded by 4 pixels) and flipped "
    "left-right; --augment off turns it off"
)


def search(
    *,
    data: Any = "digits",
    out: str | Path | None = None,
    overwrite: bool = False,
    time_budget: str | float | None = None,
    verbose: bool = True,
    on_event: EventSink | None = None,
    report: bool = True,
    **options: Any,
) -> SearchResult:
    """Search configs on `data`, minimizing log10(f_p + wc * f_c); `options` are `SearchSettings` fields
    (network, wc, penalty, method, max_trials, epochs, seed, ...). Writes the run directory `out`
    (`overwrite` replaces a run already there). `time_budget` (seconds, or '30m', '2h') stops the search
    once spent, after the trials in progress; a stopped search is continued by `resume`. `verbose` shows
    progress on stderr; `on_event` receives every event of the search as a JSON-safe dict (`progress.EVENTS`:
    search_started, stage_changed, trial_started, epoch, trial_ended, search_ended); with `report`, the run's
    report is written at the end (`report.write_report`). `warm_start` (a run directory or several) starts
    the search from those runs' best configs (`warm_start.py`). `proxy` (a fraction of the training rows),
    `transfer_top` and `proxy_epochs` make it a proxy search followed by the transfer of its best configs to
    the whole data, whose result is returned (`proxy.py`)."""
    from deepncheap import proxy

    started = time.monotonic()
    warm_runs = options.pop("warm_start", None)
    settings = SearchSettings.from_options(**proxy.proxy_options(options))
    checks = [proxy.target_free(out, overwrite)] if settings.transfer_top else []
    if warm_runs is not None:
        from deepncheap.warm_start import warm_started

        settings, check_task = warm_started(settings, warm_runs)
        checks.append(check_task)

    def check_data(dataset: Dataset) -> None:
        for check in checks:
            check(dataset)

    run_options: dict[str, Any] = {"verbose": verbose, "on_event": on_event, "report": report}
    result = start_run(
        settings, data=data, out=out, overwrite=overwrite, time_budget=time_budget, check_data=check_data, **run_options
    )
    return proxy.transfer_chained(
        result, data=data, fresh=True, overwrite=overwrite, time_budget_s=parse_duration(time_budget), started=started,
        **run_options,
    )  # fmt: skip


def start_run(
    settings: SearchSettings,
    *,
    data: Any,
    out: str | Path | None,
    overwrite: bool,
    time_budget: str | float | None,
    verbose: bool,
    on_event: EventSink | None,
    report: bool,
    default_out: Callable[[Dataset], Path] | None = None,
    check_data: Callable[[Dataset], None] | None = None,
) -> SearchResult:
    """`search` with its settings made: load the data, check them (`check_data` raises a DNCError to refuse
    them) and the constraints, then create the run directory (`out`, or `default_out` of the data, by
    default `runs/<data>-<network>-<timestamp>`) and drive the run."""
    time_budget_s = parse_duration(time_budget)
    device = _check_device(settings.device)
    space = SearchSpace.create(settings.network, settings.space)
    with _process_state() as stop, opened(create_executor(settings, device, stop)) as executor:
        dataset = load_dataset(data, **data_options(settings))  # (the executor's workers start meanwhile)
        if check_data is not None:
            check_data(dataset)
        augmented = uses_augmentation(settings.augment, dataset.input_shape)
        space, bounded = space.bounded_by_training_set(len(dataset.y_train))
        latency = latency_probe(settings, device)
        check_achievable(Constraints.of(settings), space, dataset, latency)  # (before the run directory exists)
        default = default_out(dataset) if default_out else rundir.default_run_name(dataset.name, settings.network)
        with rundir.new_run(out, default, overwrite=overwrite) as run_dir:
            if settings.threads:
                torch.set_num_threads(settings.threads)
            stored = settings.to_dict() | {
                "data": dataset.summary(),
                "data_source": source_name(data),
                "task": dataset.task,
                "augmented": augmented,  # (what --augment meant for these data: kept on resume)
                "slots": executor.slots,  # trials at once: kept on resume, wherever it runs
                "threads": executor.threads,  # each trial's torch threads: kept on resume
                "space": space.to_dict(),
            }
            with RunStore.create(run_dir, stored) as store:
                store.put("preprocessing", dataset.preprocessing().to_dict())
                notes = [*dataset.notes, *([bounded] if bounded else []), *([AUGMENT_NOTE] if augmented else [])]
                for note in [*notes, *data_lines(dataset)[1:]]:  # (and the small-validation warning)
                    store.log(note)
                run = OpenRun(store, run_dir, settings, space, dataset, executor, stop, latency)
                return _drive(run, time_budget_s, verbose, notes=notes, on_event=on_event, report=report)


def resume(
    run_dir: str | Path,
    *,
    data: Any = None,
    max_trials: int | None = None,
    time_budget: str | float | None = None,
    verbose: bool = True,
    on_event: EventSink | None = None,
    report: bool = True,
) -> SearchResult:
    """Continue the search stored in `run_dir` with its settings and seed, training no finished trial again;
    trials that were running when it stopped are run again. `data` is needed only when the search ran on
    in-memory arrays (or its file moved); `max_trials` replaces the stored cap, and extends a finished
    search that made fewer trainings (`dnc`: more BO steps in its training stage; random/Sobol: more points);
    `time_budget`, `verbose`, `on_event` and `report` as in `search`. A finished search is otherwise
    returned as it is. A proxy search (`proxy.py`) goes on with its transfer to the whole data (started, or
    resumed), whose result is returned."""
    from deepncheap import proxy

    started = time.monotonic()
    time_budget_s = parse_duration(time_budget)
    result = _resumed(run_dir, data, max_trials, time_budget_s, verbose=verbose, on_event=on_event, report=report)
    return proxy.transfer_chained(
        result, data=data, fresh=False, overwrite=False, time_budget_s=time_budget_s, started=started,
        verbose=verbose, on_event=on_event, report=report,
    )  # fmt: skip


def _resumed(
    run_dir: str | Path,
    data: Any,
    max_trials: int | None,
    time_budget_s: float | None,
    *,
    verbose: bool,
    on_event: EventSink | None,
    report: bool,
) -> SearchResult:
    """`resume` of the run itself."""
    with rundir.existing_run(run_dir) as path, RunStore.open(path, readonly=False) as store:
        stored = store.settings
        if store.state["state"] == "finished" and max_trials is None:
            progress = SearchProgress(0, enabled=verbose, on_event=on_event)
            progress.note(f"the search in {path} has already finished; nothing to resume")
            result = load_run(path)
            best = {"trial_id": result.trial_id, "stage": result.stage, "config": result.best_config}
            progress.search_ended(
                run_dir=str(path), state="finished", reason=None, best=best | {"metrics": result.metrics}
            )
            return result
        changes: dict[str, Any] = {"workers": stored.get("slots", stored.get("workers"))}
        if max_trials is not None:
            changes["max_trials"] = max_trials
            trainings = History.of(store.trials()).trainings
            if store.state["state"] == "finished" and stored["method"] == "dnc" and max_trials > trainings:
                changes["extra_training_steps"] = stored.get("extra_training_steps", 0) + max_trials - trainings
            store.put("settings", stored | {k: v for k, v in changes.items() if k != "workers"})
        settings = SearchSettings.from_stored(stored, **changes)
        space = SearchSpace.from_dict(stored["space"])
        device = _check_device(settings.device)
        with _process_state() as stop, opened(create_executor(settings, device, stop)) as executor:
            dataset = reload_dataset(stored, settings, path, data)
            if store.get("preprocessing") is None:  # (a run of a version before step 7)
                store.put("preprocessing", dataset.preprocessing().to_dict())
            torch.set_num_threads(int(stored["threads"]))
            store.mark_interrupted()
            run = OpenRun(store, path, settings, space, dataset, executor, stop, latency_probe(settings, device))
            return _drive(run, time_budget_s, verbose, on_event=on_event, report=report)


@contextmanager
def _process_state() -> Iterator[Any]:
    """The search's own stop event; torch's thread count and the global generators restored at its end."""
    with process_state_kept(), active_stop_event() as stop:
        yield stop


@dataclass(frozen=True)
class OpenRun:
    """A run being driven: its open store and directory, what the search works on, and its stop event."""

    store: RunStore
    run_dir: Path
    settings: SearchSettings
    space: SearchSpace
    dataset: Dataset
    executor: Executor  # (closed by the caller)
    stop: Any  # threading.Event
    latency: LatencyProbe | None = None  # the latency measure, when the run needs one


def _drive(
    run: OpenRun,
    time_budget_s: float | None,
    verbose: bool,
    notes: list[str] | None = None,
    on_event: EventSink | None = None,
    report: bool = True,
) -> SearchResult:
    """Run (or go on with) the method on an open store, record how it ended and write the outputs, then
    (with `report`) the report. Any exception leaves the run in a state that says what happened (never
    `running`)."""
    context = MethodContext(run.settings, run.space, run.dataset.input_shape)
    with SearchProgress(planned_trials(context), enabled=verbose, on_event=on_event) as progress:
        try:
            _run_method(run, context, progress, time_budget_s, notes or [])
            if report:
                write_report_noted(run.run_dir, progress.note)
        finally:
            _report_end(run, progress)
    return load_run(run.run_dir)


def _report_end(run: OpenRun, progress: SearchProgress) -> None:
    """The search_ended event: how the run stands now, and its best trial so far (best.json)."""
    with contextlib.suppress(Exception):  # (a report never hides the error that ended the search)
        best_path = run.run_dir / artifacts.BEST_JSON
        best = json.loads(best_path.read_text()) if best_path.is_file() else None
        state = run.store.state
        progress.search_ended(
            run_dir=str(run.run_dir),
            state=state["state"],
            reason=state.get("reason"),
            best={k: best[k] for k in ("trial_id", "stage", "config", "metrics")} if best else None,
        )


def data_lines(dataset: Dataset) -> list[str]:
    """What the run says of its data at its start: the split sizes, and a warning when the validation split
    is too small for its accuracies to rank configs finely."""
    summary = dataset.summary()
    n_val = summary["n_val"]
    lines = [f"data: {dataset.name}, {summary['n_train']} train / {n_val} val / {summary['n_test']} test rows"]
    if n_val < SMALL_VALIDATION:
        what = (
            f"validation accuracies are coarse (steps of 1/{n_val} = {1 / n_val:.3f})"
            if dataset.task == "classification"
            else "validation losses are noisy"
        )
        lines.append(
            f"warning: the validation split has only {n_val} rows, so {what}; a larger --val-split or more "
            "data make them finer"
        )
    return lines


def _run_method(
    run: OpenRun, context: MethodContext, progress: SearchProgress, time_budget_s: float | None, notes: list[str]
) -> None:
    """The run's life between its start and its end state (`_drive`): the executor gets the data, the
    baselines are measured (or read), the runner drives the method; raises what stopped it early."""
    store, run_dir, settings = run.store, run.run_dir, run.settings
    started = time.monotonic()
    clock = SlotClock.start(store, run.executor.slots)
    store.set_state("running")
    progress.note(f"run directory: {run_dir}")
    for note in [*data_lines(run.dataset), *notes]:
        progress.note(note)
    runner: Runner | None = None
    try:
        run.executor.load(run.dataset, run_dir / SCRATCH)
        if run.executor.slots > 1:
            progress.note(
                f"{run.executor.slots} trials at once ({settings.executor}, {run.executor.threads} thread(s) each)"
            )
        scorer = run_scorer(run, progress)
        pruner = Pruner(settings.prune, scorer, settings.epochs)
        costs = memoized(scorer.cost_of)
        constraints = Constraints.of(settings)
        if constraints:
            progress.note(f"constraints: {constraints.describe()}")
        context = costed_context(context, settings, scorer, costs, pruning=pruner.active)
        runner = Runner(
            augment=bool(store.settings.get("augmented", False)),  # (runs before step 7 never augmented)
            store=store,
            executor=run.executor,
            context=context,
            scorer=scorer,
            run_dir=run_dir,
            progress=progress,
            stop=run.stop,
            clock=clock,
            deadline=None if time_budget_s is None else started + time_budget_s,
            pruner=pruner,
            constraints=constraints,
            costs=costs,
        )
        progress.resumed(store.trials())
        progress.started(run_dir=str(run_dir), data=run.dataset.summary())
        runner.run(method_for(settings.method))
        state, reason = "finished", None
    except BudgetReached as stop:
        state, reason = "stopped", str(stop)
    except KeyboardInterrupt:
        if runner is not None:
            runner.abandon_running()
            clock.save(store)
            _write_outputs(run, runner, retrain_weights=False)
        store.set_state("interrupted", "Ctrl-C or SIGTERM")
        raise SearchInterrupted(run_dir) from None
    except SearchFailedError as exc:
        artifacts.write_trials_csv(store, run_dir)
        store.set_state("failed", str(exc))
        raise
    except BaseException as exc:
        store.set_state("failed", f"internal error ({type(exc).__name__}: {exc})")
        raise
    finally:
        clock.save(store)
    assert runner is not None
    best = runner.best
    if best is None:
        if state == "stopped":
            store.set_state(state, reason)
            raise SearchStopped(f"stopped by {reason} before any trial completed; continue with: dnc resume {run_dir}")
        message = every_trial_failed("every trial", store.trials())
        store.set_state("failed", message)
        raise SearchFailedError(message)
    _write_outputs(run, runner, retrain_weights=True)
    store.set_state(state, reason)
    if state == "stopped":
        progress.note(f"stopped by {reason}; continue with: dnc resume {run_dir}")


def _write_outputs(run: OpenRun, runner: Runner, *, retrain_weights: bool) -> None:
    """trials.csv, and best.json with the best model's weights. Weights that do not belong to the best trial
    (the driver died between recording it and saving them) are made again by retraining it with its seed;
    without `retrain_weights` best.json is then left for a later resume to write."""
    store, run_dir, best = run.store, run.run_dir, runner.best
    artifacts.write_trials_csv(store, run_dir)
    if run.settings.method == TRANSFER:
        side_by_side.write_transfer_json(store, run_dir)
    if best is None:
        return
    if artifacts.weights_trial_id(run_dir) != best.trial_id:
        if not retrain_weights:
            return
        runner.progress.note(f"retraining trial #{best.trial_id} for its weights (they were not saved)")
        artifacts.save_weights(runner.train_again(best).model, run_dir, trial_id=best.trial_id)
    artifacts.write_best_json(store, best, run_dir)


def _check_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SettingsError("--device cuda was asked for but CUDA is not available; use --device cpu or auto")
    return resolve_device(device)
