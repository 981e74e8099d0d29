"""`dnc transfer`: the best configs of a finished (or stopped) search trained on other data, as a run of
its own made by the search machinery (method `transfer`), so that every command that takes a run takes it.

The source run is read from a copy of its store (`rundir.untouched_run`) and never written. Its best
complete trials that violate no constraint (`store.ranked`), one per network (`models.network_key`: the
training stage's variants of one architecture count once), are stored with the new run's settings together
with where they came from, so resuming never needs the source again. The source's search settings carry
over (network family, w_c, penalty, constraints, space, seed, epochs unless given; no pruning: every config
trains, but in a proxy search's transfer, `proxy.py`); the data options are the new data's, and the baselines
are measured on them, as in any search.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepncheap import rundir
from deepncheap.artifacts import SearchResult
from deepncheap.data import Dataset
from deepncheap.errors import DataError, OutputError, SettingsError
from deepncheap.models import network_key
from deepncheap.progress import EventSink
from deepncheap.run_data import DATA_OPTIONS
from deepncheap.search import start_run
from deepncheap.settings import TRANSFER, SearchSettings
from deepncheap.space import is_int
from deepncheap.store import Trial, ranked
from deepncheap.tradeoff import pareto_front

DEFAULT_TOP = 5
# The source's settings that a transfer keeps (the space too); the data options and the machine's are its own,
# and it never prunes (but a proxy's): every transferred config trains, whatever its cost, to be compared with
# its source.
CARRIED = (
    "network", "wc", "penalty", "seed", "augment", "latency_batch", "max_params", "max_flops",
    "max_latency_ms", "max_epoch_time",
)  # fmt: skip


def transfer(
    run: str | Path,
    *,
    data: Any,
    top: int = DEFAULT_TOP,
    epochs: int | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    time_budget: str | float | None = None,
    verbose: bool = True,
    on_event: EventSink | None = None,
    report: bool = True,
    proxy: bool = False,
    **data_options: Any,
) -> SearchResult:
    """Train the `top` best configs of the run in `run` (distinct networks, `best_configs`) on `data`, each
    for `epochs` epochs (default: the source's), as a new run in `out` (default: `<run>-transfer-<data name>`
    beside the source; `overwrite` as in `search`). `data_options` read the new data as in `search` (task,
    val_split, image_shape, target, delimiter, drop, impute, data_dir); everything else is the source's.
    `RUN/transfer.json` holds each config's source trial and objective next to its result on `data`.
    `time_budget`, `verbose`, `on_event` and `report` as in `search`; `resume` continues a stopped transfer.
    With `proxy` (the transfer of a proxy search, `proxy.py`), what matters is the best config on `data`,
    not the side-by-side: the configs come from the source's accuracy-vs-cost front first (`best_configs`),
    train cheapest first, and the source's pruning applies (the cost bound never stops the winner)."""
    if not is_int(top) or top < 1:
        raise SettingsError(f"--top must be an integer >= 1, got {top!r}; e.g. --top {DEFAULT_TOP}")
    unknown = sorted(set(data_options) - set(DATA_OPTIONS))
    if unknown:
        raise SettingsError(
            f"unknown option '{unknown[0]}'; a transfer takes the data options ({', '.join(DATA_OPTIONS)}) and "
            "keeps every other setting of the source run"
        )
    source = Path(run).expanduser()
    if out is not None and Path(out).expanduser().resolve() == source.resolve():
        raise OutputError(f"--out {out} is the source run itself, which a transfer never writes; choose another --out")
    with rundir.untouched_run(source) as store:
        stored, trials = store.settings, store.trials()
    configs = best_configs(trials, top, input_shape=stored["data"]["input_shape"], front_first=proxy)
    if not configs:
        raise OutputError(
            f"{source} has no complete trial to transfer; wait for its search to complete one, or continue it: "
            f"dnc resume {source}"
        )
    carried = {"prune": stored.get("prune", "none") if proxy else "none"}
    carried |= {name: stored[name] for name in CARRIED if name in stored}
    if proxy:  # (cheapest first: the bound rules out more once a cheap config set the incumbent)
        cost = {t.trial_id: t.f_c for t in trials}
        configs.sort(key=lambda c: cost[c["source_trial_id"]] or 0.0)
    settings = SearchSettings.from_options(
        **carried,
        space={k: v for k, v in stored["space"].items() if k != "network"},
        epochs=stored["epochs"] if epochs is None else epochs,
        method=TRANSFER,
        transfer_from=str(source.resolve()),
        transfer_configs=configs,
        **data_options,
    )

    def check_task(dataset: Dataset) -> None:
        refuse_other_task(source, stored["data"]["task"], dataset, given_task=settings.task)

    return start_run(
        settings,
        data=data,
        out=out,
        overwrite=overwrite,
        time_budget=time_budget,
        verbose=verbose,
        on_event=on_event,
        report=report,
        default_out=lambda dataset: rundir.transfer_run_name(source, dataset.name),
        check_data=check_task,
    )


def refuse_other_task(source: Path, task: str, dataset: Dataset, *, given_task: str | None) -> None:
    """DataError when `dataset` is not of the `task` of the run in `source` (`given_task`: the --task given)."""
    if dataset.task == task:
        return
    really = "classes" if task == "classification" else "quantities"
    hint = "" if given_task else f", or give --task {task} if its targets are {really}"
    raise DataError(
        f"the run in {source} is a {task} search but {dataset.name} is {dataset.task} data; use {task} data{hint}"
    )


def best_configs(
    trials: list[Trial], top: int, *, input_shape: list[int], front_first: bool = False
) -> list[dict[str, Any]]:
    """The configs of the `top` best trials (`store.ranked`: complete, violating no constraint, ties in
    search order) that build distinct networks on the source's inputs (the best trial of each network),
    with their source trial ids and objectives (`settings.transfer_configs`). With `front_first`, the
    trials of the accuracy-vs-cost Pareto front (f_p against f_c) come first, best first, then the rest."""
    order = ranked(trials)
    if front_first:
        front = {t.trial_id for t in pareto_front(order)}
        order = [t for t in order if t.trial_id in front] + [t for t in order if t.trial_id not in front]
    picked: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for trial in order:
        key = network_key(trial.config, input_shape)
        if key in seen:
            continue
        seen.add(key)
        picked.append({"source_trial_id": trial.trial_id, "source_objective": trial.objective, "config": trial.config})
        if len(picked) == top:
            break
    return picked
