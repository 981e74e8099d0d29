"""Deep-n-Cheap: core architecture (BO) -> advanced architecture (grid sub-stages) -> training
hyperparameters (BO), each stage starting from the best config of the one before. A warm-started search
(`warm_start.py`) first trains the earlier runs' best configs (stage `warm`); the core stage's first prior
points are their architectures, and the advanced stage starts from the best of the core and warm trials.

In the default mode the architecture stages train with lr 1e-2 and batch 64
(`SearchSpace.architecture_stage_training`); in the reference mode with the reference's defaults (lr 1e-3,
batch 256). A finished search is extended by more BO steps in the training stage
(`settings.extra_training_steps`, which `resume` raises when asked for more trials than the search made).
"""

from __future__ import annotations

from typing import Any

from deepncheap.history import History
from deepncheap.methods.base import MethodContext, Proposal, ask_stored
from deepncheap.methods.bo_stage import ask_bo_stage
from deepncheap.models import architecture_key
from deepncheap.space import GRID_SUB_STAGES
from deepncheap.store import WARM, Trial, best_of


def ask_dnc(context: MethodContext, history: History, free_slots: int) -> list[Proposal] | None:
    """The next trials of the first stage not finished, or None when the training stage has finished."""
    settings, space = context.settings, context.space
    if settings.warm_configs:
        runs = ", ".join(dict.fromkeys(c["source_run"] for c in settings.warm_configs))
        note = f"warm start: training the best configs of {runs} first"
        warm = ask_stored(history, WARM, [c["config"] for c in settings.warm_configs], free_slots, note)
        if warm is not None:
            return warm
    core_base = None if settings.bo_mode == "reference" else space.architecture_stage_training()
    core = ask_bo_stage(context, history, free_slots, stage="core", base=core_base, steps=settings.bo_steps)
    if core is not None:
        return core
    # (pruning stops trials only against a complete incumbent, so a core stage without a complete trial had
    # a warm one: e.g. a warm trial that erred on no validation sample, whose bound rules out every core config
    # at least as large; a core stage of failed trials alone raised in ask_bo_stage)
    incumbent = best_of([*history.stage("core"), *history.stage(WARM)])
    assert incumbent is not None
    advanced = ask_grids(context, history, free_slots, incumbent)
    if isinstance(advanced, list):
        return advanced
    steps = settings.bo_steps + settings.extra_training_steps
    return ask_bo_stage(context, history, free_slots, stage="training", base=advanced.config, steps=steps)


def ask_grids(context: MethodContext, history: History, free_slots: int, incumbent: Trial) -> list[Proposal] | Trial:
    """The advanced-architecture sub-stages one after another, each a grid on top of the best config so far
    (configs that build the same network as one already seen, or that violate a constraint, are skipped;
    started cheapest first when pruning is on, each keeping its index and seed): proposals of the first sub-stage
    not finished, or the best trial once all are."""
    space, input_shape = context.space, context.input_shape
    trials = {t.stage_index: t for t in history.stage("advanced")}
    before = [t for t in history.trials if t.stage != "advanced"]  # (fixed while the grids run)
    index = 0
    for sub_stage in GRID_SUB_STAGES[space.network]:
        seen = {architecture_key(incumbent.config, input_shape)}
        grid: list[dict[str, Any]] = []
        for config in space.grid(sub_stage, incumbent.config):
            key = architecture_key(config, input_shape)
            if key not in seen:
                seen.add(key)
                grid.append(config)
        grid = context.complying(grid, before)
        indices = range(index, index + len(grid))
        new = [Proposal(c, "advanced", i) for c, i in zip(grid, indices, strict=True) if i not in trials]
        if new:
            new.sort(key=lambda p: context.rank(p.config))  # (stable)
            if len(new) == len(grid):  # (the sub-stage starts)
                new[0] = Proposal(new[0].config, "advanced", new[0].index, (f"advanced stage: {sub_stage}",))
            return new[:free_slots]
        batch = [trials[i] for i in indices]
        if any(t.status not in ("complete", "failed", "pruned") for t in batch):
            return []  # wait for the sub-stage's last trials
        incumbent = best_of([incumbent, *batch]) or incumbent
        index += len(grid)
    return incumbent


def planned_dnc_trials(context: MethodContext) -> int:
    """The trainings the method plans: both BO stages and every grid (an upper bound: grids skip
    duplicates), at most `--max-trials`."""
    settings, space = context.settings, context.space
    anything: dict[str, Any] = space.largest_config()
    grids = sum(len(space.grid(sub_stage, anything)) - 1 for sub_stage in GRID_SUB_STAGES[space.network])
    total = 2 * (settings.prior_points + settings.bo_steps) + settings.extra_training_steps + grids
    total += len(settings.warm_configs)
    return min(total, settings.max_trials) if settings.max_trials else total
