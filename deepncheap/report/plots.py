"""The report's plots, drawn from a `RunSnapshot` with matplotlib's object API on the Agg canvas (no pyplot,
so no process-wide backend or figure state changes): the objective of every trial, validation score
against each cost, the best trials' learning curves, the objective against each searched hyperparameter,
and the search's cost over time. Each plot is one PNG."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deepncheap import search_cost
from deepncheap.progress import human_count
from deepncheap.report.features import Feature, searched_features
from deepncheap.report.snapshot import RunSnapshot
from deepncheap.store import STAGES, Trial
from deepncheap.tradeoff import pareto_front

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SIZE = (7.0, 4.5)  # inches
DPI = 110
STAGE_STYLES = {  # colour and marker: points of different stages stay visible where they coincide
    "joint": ("#1f77b4", "o"),
    "warm": ("#8c564b", "P"),
    "core": ("#1f77b4", "o"),
    "advanced": ("#ff7f0e", "s"),
    "training": ("#2ca02c", "^"),
    "transfer": ("#9467bd", "D"),
}
OBJECTIVE_LABEL = "objective log10(f_p + w_c·f_c)\n(lower is better)"
COSTS = (
    ("n_params", "parameters", "trainable parameters (count, log scale)"),
    ("flops", "flops", "FLOPs per sample, forward pass (log scale)"),
    ("time_per_epoch_s", "time", "training time per epoch (s, log scale)"),
    ("latency_ms", "latency", "inference latency (ms, log scale)"),
)
LIMITS = {"n_params": "max_params", "flops": "max_flops", "time_per_epoch_s": "max_epoch_time",
          "latency_ms": "max_latency_ms"}  # fmt: skip


@dataclass(frozen=True)
class Plot:
    """One figure of the report: its file name in plots/, heading, caption and PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


def make_plots(run: RunSnapshot) -> list[Plot]:
    """Every plot of the report, in the order it shows them."""
    import matplotlib

    sizes = {
        "font.size": 9.5,
        "axes.labelsize": 9.5,
        "legend.fontsize": 8.5,
        "xtick.labelsize": 9,
        "ytick.labelsize": 9,
    }
    with matplotlib.rc_context(sizes):  # type: ignore[arg-type]
        plots = [_objective_plot(run)]
        plots += [_cost_plot(run, *cost) for cost in COSTS if any(getattr(t, cost[0]) for t in run.scored)]
        plots.append(_curves_plot(run))
        features = searched_features(run.scored)
        if features:
            plots.append(_hyperparameter_plot(run, features))
        plots.append(_search_cost_plot(run))
    return plots


def _figure(size: tuple[float, float] = SIZE) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=DPI, layout="constrained")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _value(trial: Trial, name: str) -> float:
    """A measurement of a trial known to have it."""
    return float(getattr(trial, name))


def _score(run: RunSnapshot, trial: Trial) -> float:
    """Validation accuracy in percent, or validation MSE (regression)."""
    score = run.score(trial)
    assert score is not None
    return 100 * score if run.classification else score


def _score_label(run: RunSnapshot) -> str:
    return "validation accuracy (%)" if run.classification else "validation MSE (target units², log scale)"


STAGE_LABELS = {"joint": "random/Sobol", "warm": "warm start", "transfer": "transferred configs"}


def _stage_label(stage: str, count: int) -> str:
    return f"{STAGE_LABELS.get(stage, stage + ' stage')} ({count})"


def _scatter_by_stage(
    ax: Axes, trials: list[Trial], x: Callable[[Trial], float], y: Callable[[Trial], float], *, size: float = 28
) -> None:
    """The trials as points, one colour and marker per stage, labelled with the stage and its count."""
    for stage in STAGES:
        of_stage = [t for t in trials if t.stage == stage]
        if of_stage:
            colour, marker = STAGE_STYLES[stage]
            points = [x(t) for t in of_stage], [y(t) for t in of_stage]
            ax.scatter(*points, s=size, color=colour, marker=marker, alpha=0.8, zorder=3,
                       label=_stage_label(stage, len(of_stage)))  # fmt: skip


def _mark_best(ax: Axes, x: float, y: float, *, size: float = 240, label: str = "chosen (best objective)") -> None:
    ax.scatter([x], [y], marker="*", s=size, color="gold", edgecolor="black", linewidth=0.9, zorder=5, label=label)


def _legend_below(figure: Figure, *axes: Axes) -> None:
    """The axes' legend entries under the plot, where they hide no data."""
    handles, labels = [], []
    for ax in axes:
        more_handles, more_labels = ax.get_legend_handles_labels()
        handles += more_handles
        labels += more_labels
    columns = 2 if max(map(len, labels)) > 30 else 3
    figure.legend(handles, labels, loc="outside lower center", ncols=columns, frameon=False)


def _integer_ticks(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _objective_plot(run: RunSnapshot) -> Plot:
    figure = _figure()
    ax = figure.add_subplot()
    _scatter_by_stage(ax, run.scored, lambda t: t.trial_id, lambda t: _value(t, "objective"))
    pruned = [t for t in run.trials if t.status == "pruned" and t.objective is not None]
    if pruned:
        ax.scatter([t.trial_id for t in pruned], [_value(t, "objective") for t in pruned], s=28, facecolor="none",
                   edgecolor="grey", label=f"pruned: partial objective ({len(pruned)})")  # fmt: skip
    steps, best = [], math.inf
    for trial in run.scored:
        best = min(best, _value(trial, "objective"))
        steps.append((trial.trial_id, best))
    steps.append((max(t.trial_id for t in run.trials), best))
    ax.step(*zip(*steps, strict=True), where="post", color="black", linewidth=1.2, label="best so far")
    _mark_best(ax, run.best.trial_id, _value(run.best, "objective"))
    unscored = len(run.trials) - len(run.scored) - len(pruned)
    if unscored:
        ax.plot([], [], " ", label=f"not shown: {unscored} failed, running or interrupted")
    ax.set_xlabel("trial id (the order trials started)")
    ax.set_ylabel(OBJECTIVE_LABEL)
    _integer_ticks(ax.xaxis)
    ax.grid(alpha=0.3)
    _legend_below(figure, ax)
    return Plot(
        "objective",
        "Objective of every trial",
        f"Each point is one trial (w_c = {run.settings['wc']:g}, penalty {run.settings['penalty']}); the black "
        "line is the best objective found so far and the star the chosen trial.",
        _png(figure),
    )


def _cost_plot(run: RunSnapshot, cost: str, name: str, axis_label: str) -> Plot:
    trials = [t for t in run.scored if (getattr(t, cost) or 0) > 0 and run.score(t) is not None]
    front = pareto_front(trials, cost=cost)
    figure = _figure()
    ax = figure.add_subplot()
    _scatter_by_stage(ax, trials, lambda t: _value(t, cost), lambda t: _score(run, t))
    xs, ys = [_value(t, cost) for t in front], [_score(run, t) for t in front]
    ax.step(xs + [max(_value(t, cost) for t in trials)], ys + ys[-1:], where="post", color="crimson", linewidth=1.4)
    ax.scatter(xs, ys, s=80, facecolor="none", edgecolor="crimson", linewidth=1.4, zorder=4, label="Pareto front")
    violators = [t for t in run.trials if t.violation and t.status == "complete" and (getattr(t, cost) or 0) > 0]
    if violators:  # (trained, then found to violate a constraint: never chosen)
        ax.scatter([_value(t, cost) for t in violators], [_score(run, t) for t in violators], marker="x", s=30,
                   color="dimgrey", zorder=3, label="violates a constraint")  # fmt: skip
    limit = run.settings.get(LIMITS[cost])
    if limit:
        ax.axvline(limit, color="black", linestyle="--", linewidth=1.1, label=f"--{LIMITS[cost].replace('_', '-')}")
    if getattr(run.best, cost):
        _mark_best(ax, _value(run.best, cost), _score(run, run.best))
    costs = [_value(t, cost) for t in trials + violators] + ([limit] if limit else [])
    ax.set_xscale("log")
    _log_ticks(ax.xaxis, costs)
    ax.margins(x=0.06)
    if not run.classification:
        ax.set_yscale("log")
        _log_ticks(ax.yaxis, [_score(run, t) for t in trials])
    _focus_on_front(ax, run, [_score(run, t) for t in trials], ys, costs)
    _label_front(ax, front, xs, ys, run.best.trial_id)
    ax.set_xlabel(axis_label)
    ax.set_ylabel(_score_label(run))
    ax.grid(alpha=0.3)
    _legend_below(figure, ax)
    better = "more accurate" if run.classification else "lower in error"
    return Plot(
        f"score_vs_{name}",
        f"Validation {'accuracy' if run.classification else 'MSE'} against {axis_label.split(' (')[0]}",
        f"Each point is a complete trial; the red staircase is the Pareto front (no other trial is both cheaper "
        f"and {better}), labelled with trial ids; the star is the chosen trial. With constraints, the dashed "
        f"line is the limit and the front holds complying trials only (crosses: trials found to violate one).",
        _png(figure),
    )


def _focus_on_front(ax: Axes, run: RunSnapshot, scores: list[float], front: list[float], costs: list[float]) -> None:
    """Keep a few very poor trials from squashing the score axis: the axis ends at the front or at the usual
    outlier fence (1.5 interquartile ranges past the quartiles), whichever is farther; the trials beyond it
    are drawn as triangles on the edge."""
    import numpy as np

    values = np.array(scores) if run.classification else np.log10(scores)
    q1, q3 = np.percentile(values, [25, 75])
    if run.classification:
        edge = min(min(front), max(q1 - 1.5 * (q3 - q1), min(scores)))
        outside = [s < edge for s in scores]
        pad = max(0.04 * (max(scores) - edge), 0.2)
        ax.set_ylim(edge - pad, min(100.0, max(scores)) + pad)
        marker, where, at = "v", f"below {edge:.1f}%", edge - pad
    else:
        edge = max(max(front), min(10 ** (q3 + 1.5 * (q3 - q1)), max(scores)))
        outside = [s > edge for s in scores]
        ax.set_ylim(top=edge * 1.15)
        marker, where, at = "^", f"above {edge:,.0f}" if edge >= 1000 else f"above {edge:.3g}", edge * 1.15
    clipped = [c for c, out in zip(costs, outside, strict=True) if out]
    if clipped:
        ax.scatter(clipped, [at] * len(clipped), marker=marker, s=40, color="grey", clip_on=False, zorder=4,
                   label=f"{len(clipped)} trial(s) {where}, drawn on the edge")  # fmt: skip


def _log_ticks(axis: Any, values: list[float]) -> None:
    """Plain tick labels on a log axis (20k, 1.5M, 0.2, 1e-05): the more steps per decade, the fewer decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = math.log10(max(values) / min(values)) if min(values) > 0 else 0.0
    steps = {0.8: (1.0, 1.5, 2.0, 3.0, 5.0, 7.0), 1.5: (1.0, 2.0, 5.0), 3.0: (1.0, 3.0), math.inf: (1.0,)}
    subs = next(subs for most, subs in steps.items() if decades <= most)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda value, _: human_count(value) if value >= 1000 else f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _label_front(ax: Axes, front: list[Trial], xs: list[float], ys: list[float], best_id: int) -> None:
    """Trial ids next to the front's points (the chosen trial's first), leaving out any that would overlap one
    already written."""
    placed: list[tuple[float, float]] = []
    order = sorted(range(len(front)), key=lambda i: front[i].trial_id != best_id)
    for i in order:
        px, py = ax.transData.transform((xs[i], ys[i]))
        if all(abs(px - qx) > 30 or abs(py - qy) > 13 for qx, qy in placed):
            ax.annotate(f"#{front[i].trial_id}", (xs[i], ys[i]), xytext=(6, -12), textcoords="offset points",
                        fontsize=8)  # fmt: skip
            placed.append((px, py))


def _curves_plot(run: RunSnapshot) -> Plot:
    figure = _figure()
    ax = figure.add_subplot()
    by_id = {t.trial_id: t for t in run.trials}
    for rank, (trial_id, curve) in enumerate(run.curves.items()):
        trial = by_id[trial_id]
        values = [100 * v for v in curve] if run.classification else curve
        ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, linewidth=2.2 if rank == 0 else 1.2,
                label=f"#{trial_id} ({trial.stage}), objective {_value(trial, 'objective'):+.3f}")  # fmt: skip
    ax.set_xlabel("epoch")
    _integer_ticks(ax.xaxis)
    if run.classification:
        finals = [100 * c[-1] for c in run.curves.values() if c and not math.isnan(c[-1])]
        ax.set_ylim(max(0.0, min(finals, default=0.0) - 25.0), 100.5)  # (first epochs may be far lower)
        ax.set_ylabel("validation accuracy (%)")
    else:
        ax.set_yscale("log")
        _log_ticks(ax.yaxis, [v for c in run.curves.values() for v in c if v > 0])
        ax.set_ylabel("validation MSE (target units², log scale)")
    ax.grid(alpha=0.3)
    _legend_below(figure, ax)
    return Plot(
        "learning_curves",
        f"Learning curves of the best {len(run.curves)} trials",
        "Validation score after each epoch of the trials with the lowest objective (a trial scores its best "
        "epoch); the learning rate drops at half and three quarters of the epochs.",
        _png(figure),
    )


def _hyperparameter_plot(run: RunSnapshot, features: list[Feature]) -> Plot:
    columns = 2 if len(features) > 1 else 1
    rows = math.ceil(len(features) / columns)
    figure = _figure((7.0, 0.5 + 2.5 * rows))
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
    for ax, feature in zip(axes.flat, features, strict=False):
        _feature_axes(ax, run, feature)
    for ax in list(axes.flat)[len(features) :]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("objective\n(lower is better)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", ncols=len(handles), frameon=False)
    return Plot(
        "hyperparameters",
        "Objective against each searched hyperparameter",
        "One panel per hyperparameter that varied between trials (lists of layer widths as their depth and total "
        "width); each point is a complete trial. Within a stage only that stage's hyperparameters vary.",
        _png(figure),
    )


def _feature_axes(ax: Axes, run: RunSnapshot, feature: Feature) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    position: Callable[[Trial], float]
    if feature.categorical:
        order = sorted({v for v in feature.values.values()}, key=lambda v: (isinstance(v, str), v))
        position = lambda t: float(order.index(feature.values[t.trial_id]))  # noqa: E731
        ax.set_xticks(range(len(order)), [f"{v:g}" if isinstance(v, float) else str(v) for v in order])
        ax.set_xlim(-0.5, len(order) - 0.5)
    else:
        position = lambda t: float(feature.values[t.trial_id])  # noqa: E731
    trials = [t for t in run.scored if t.trial_id in feature.values]
    _scatter_by_stage(ax, trials, position, lambda t: _value(t, "objective"), size=20)
    if run.best.trial_id in feature.values:
        _mark_best(ax, position(run.best), _value(run.best, "objective"), size=130, label="chosen")
    if feature.scale == "log" and not feature.integer:
        ax.set_xscale("log")
        _log_ticks(ax.xaxis, list(map(float, feature.values.values())))
    elif feature.scale == "log":
        ax.set_xscale("log", base=2)
    elif feature.scale == "symlog":
        ax.set_xscale("symlog", linthresh=feature.linthresh)
    if feature.integer:
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        if feature.scale == "linear":
            _integer_ticks(ax.xaxis)
    ax.set_xlabel(feature.label)
    ax.grid(alpha=0.3)


def _search_cost_plot(run: RunSnapshot) -> Plot:
    timed = sorted((t for t in run.trials if t.wall_s is not None), key=lambda t: (t.finished_at or 0, t.trial_id))
    scored_ids = {t.trial_id for t in run.scored}
    start = run.search_cost["baselines_s"]
    spent, best_so_far, best, total = {}, [], math.inf, start
    for trial in timed:
        total += _value(trial, "wall_s")
        spent[trial.trial_id] = total
        if trial.trial_id in scored_ids:
            best = min(best, _value(trial, "objective"))
            best_so_far.append((total, best))
    figure = _figure()
    ax = figure.add_subplot()
    best_so_far.append((total, best))
    ax.step(*zip(*best_so_far, strict=True), where="post", color="black", linewidth=1.4,
            label="best objective so far")  # fmt: skip
    values = {t.trial_id: _value(t, "objective") for t in timed if t.objective is not None}
    shown = [t for t in timed if t.trial_id in values]
    _scatter_by_stage(ax, [t for t in shown if t.status == "complete"], lambda t: spent[t.trial_id],
                      lambda t: values[t.trial_id], size=18)  # fmt: skip
    pruned = [t for t in shown if t.status == "pruned"]
    if pruned:
        ax.scatter([spent[t.trial_id] for t in pruned], [values[t.trial_id] for t in pruned], s=22, facecolor="none",
                   edgecolor="grey", label=f"pruned: bound or objective when stopped ({len(pruned)})")  # fmt: skip
    ax.set_xlabel("device-seconds spent (every trial's training" + (" after the baselines)" if start else ")"))
    ax.set_ylabel("objective (lower is better)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    _legend_below(figure, ax)
    cost = run.search_cost
    caption = f"{len(timed)} trials took {search_cost.seconds(total - start)} device-seconds of training"
    if start:
        caption += f", after {search_cost.seconds(start)} s measuring the baselines (where the axis starts)"
    if cost["pruned_trials"]:
        caption += (
            f"; pruning stopped {cost['pruned_trials']} of them, saving about "
            f"{search_cost.seconds(cost['pruning_saved_s'])} s"
        )
    return Plot(
        "search_cost",
        "Best objective against search cost",
        caption + ". The black staircase is the best objective so far: where it flattens, more compute bought little.",
        _png(figure),
    )
