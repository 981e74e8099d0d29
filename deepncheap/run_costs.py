"""What a run's costs are to its search: the scorer (with the baselines stored in the run, or measured now on
the run's executor), and the method context's views of cost and constraints: the cheapest-first rank and
the cost bound (`pruning.py`), the known cost of BO with `--penalty params` (`bo.known_cost_ei`), the exact
constraints a config violates and the predicted epoch-time limit (`constraints.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from deepncheap.constraints import Constraints, EpochTimeLimit
from deepncheap.errors import SearchFailedError
from deepncheap.methods import MethodContext
from deepncheap.objective import BASELINE_EPOCHS, BaselineFailed, Baselines, KnownCost, Scorer, measure_baselines
from deepncheap.pruning import memoized
from deepncheap.settings import SearchSettings

if TYPE_CHECKING:
    from deepncheap.progress import SearchProgress
    from deepncheap.search import OpenRun


def run_scorer(run: OpenRun, progress: SearchProgress) -> Scorer:
    """The scorer of the run, with the baselines stored, or measured now on the run's executor."""
    store, settings = run.store, run.settings
    baselines = store.get("baselines")
    if baselines is None:
        timed = settings.penalty == "time" or settings.max_epoch_time is not None
        if timed:
            progress.note(f"measuring the time baseline ({BASELINE_EPOCHS} epochs of the space's reference config)")
        start = time.perf_counter()
        try:
            measured = measure_baselines(
                run.space,
                run.dataset,
                run.executor,
                penalty=settings.penalty,
                seed=settings.seed,
                augment=bool(store.settings.get("augmented", False)),
                timed=timed,
                smallest=settings.max_epoch_time is not None,
                latency=run.latency,
            )
        except BaselineFailed as exc:
            raise SearchFailedError(
                f"the time baseline (the space's reference config) failed to train: {exc}; "
                "use --penalty params, or a space whose reference config fits"
            ) from None
        store.put("baseline_wall_s", time.perf_counter() - start)  # kept apart from the search's own overhead
        store.put("baselines", measured.to_dict())
        progress.note(f"baselines: {measured.describe()}")
        baselines = measured.to_dict()
    return Scorer(
        dataset=run.dataset,
        penalty=settings.penalty,
        wc=float(settings.wc),
        baselines=Baselines.from_dict(baselines),
        latency=run.latency,
    )


def costed_context(
    context: MethodContext,
    settings: SearchSettings,
    scorer: Scorer,
    costs: Callable[[dict[str, Any]], KnownCost],
    *,
    pruning: bool,
) -> MethodContext:
    """`context` with the run's views of cost: with pruning on and w_c > 0, cheap configs first and (params)
    BO candidates ruled out by their size alone; with `--penalty params` and w_c > 0, each config's known
    f_c; and the constraints of `settings`."""
    if pruning and settings.wc > 0:
        context = replace(
            context,
            cost_rank=memoized(scorer.cost_rank),
            cost_bound=scorer.params_bound if settings.penalty == "params" else None,
        )
    if settings.penalty == "params" and settings.wc > 0:
        context = replace(context, known_cost=scorer.params_cost)
    constraints = Constraints.of(settings)
    if constraints:
        context = replace(context, **_constraint_views(constraints, scorer, costs))
    return context


def _constraint_views(
    constraints: Constraints, scorer: Scorer, costs: Callable[[dict[str, Any]], KnownCost]
) -> dict[str, Any]:
    """The method context's view of the constraints: the exact ones a config violates (parameters first,
    the cheapest to count), and the predicted epoch-time limit."""

    def violations(config: dict[str, Any]) -> list[str]:
        found = constraints.violations(n_params=scorer.n_params(config))
        if found or (constraints.max_flops is None and constraints.max_latency_ms is None):
            return found
        cost = costs(config)
        return constraints.violations(n_params=cost.n_params, flops=cost.flops, latency_ms=cost.latency_ms)

    epoch_time = None
    if constraints.max_epoch_time is not None:
        points = scorer.baselines.epoch_points()
        assert points
        epoch_time = EpochTimeLimit(
            float(constraints.max_epoch_time), lambda config: costs(config).modelled_epoch_s, tuple(points)
        )
    return {"violations": memoized(violations) if constraints.exact else None, "epoch_time": epoch_time}
