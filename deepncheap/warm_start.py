"""`--warm-start RUN [RUN ...]`: a Deep-n-Cheap search that starts from earlier runs' best configs.

Each earlier run's best complete trial that violates no constraint (`transfer.best_configs`) is stored with
the new run's settings (`warm_configs`: its run, trial id, objective and complete config), so that resuming
never needs the earlier runs. The search first trains these configs as they are (architecture and training
hyperparameters together) on its own data, in the stage `warm`; then the core stage's first prior points
are their architectures (under the stage's training hyperparameters) in place of as many Sobol points, and
the advanced stage starts from the best of the core stage and the warm trials. The earlier trials' own
objectives do not enter the GP: they were measured on other data (other baselines, another difficulty),
so only what the warm configs score on these data counts. The earlier runs are read from copies of their
stores and never written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from deepncheap import rundir
from deepncheap.data import Dataset
from deepncheap.errors import OutputError, SettingsError
from deepncheap.settings import SearchSettings
from deepncheap.transfer import best_configs, refuse_other_task


def warm_started(
    settings: SearchSettings, runs: str | Path | Sequence[str | Path]
) -> tuple[SearchSettings, Callable[[Dataset], None]]:
    """`settings` with the best config of each run in `runs` (`warm_configs`), and the check that refuses data
    of another task than theirs; errors (before anything is written) for runs that cannot start the search."""
    paths = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    if not paths:
        raise SettingsError("--warm-start needs at least one run directory; e.g. --warm-start runs/earlier")
    configs: list[dict[str, Any]] = []
    tasks: dict[Path, str] = {}
    for path in (p.expanduser() for p in paths):
        with rundir.untouched_run(path) as store:
            stored, trials = store.settings, store.trials()
        if stored["network"] != settings.network:
            raise SettingsError(
                f"{path} searched {stored['network']} networks but this search is --network {settings.network}; "
                "warm-start from runs of the same network family"
            )
        best = best_configs(trials, 1, input_shape=stored["data"]["input_shape"])
        if not best:
            raise OutputError(
                f"{path} has no complete trial to start from; wait for its search to complete one, or continue "
                f"it: dnc resume {path}"
            )
        configs.append({"source_run": str(path.resolve()), **best[0]})
        tasks[path] = stored["data"]["task"]

    def check_task(dataset: Dataset) -> None:
        for path, task in tasks.items():
            refuse_other_task(path, task, dataset, given_task=settings.task)

    warm = replace(settings, warm_configs=tuple(configs))
    warm.check()
    return warm, check_task
