"""The report page: one self-contained HTML file (inline CSS, every plot an embedded PNG `data:` URI, no
script, nothing fetched) with the run's summary, data, chosen and final model, plots and trade-off tables."""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Sequence

from deepncheap import __version__
from deepncheap.constraints import Constraints
from deepncheap.progress import human_count
from deepncheap.report.model_card import (
    describe_architecture,
    describe_cost,
    describe_inputs,
    describe_method,
    describe_training,
    final_metrics,
)
from deepncheap.report.plots import Plot
from deepncheap.report.snapshot import RunSnapshot
from deepncheap.show import (
    PARETO_HEADERS,
    TRADEOFF_HEADERS,
    pareto_rows,
    score_text,
    summarize_config,
    tradeoff_rows,
    transfer_table,
)
from deepncheap.tradeoff import pareto_front, winners

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0; }
main { max-width: 1000px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 32px 0 8px; border-bottom: 1px solid #ddd; }
h3 { font-size: 16px; margin: 20px 0 4px; }
.muted { color: #666; } .warning { background: #fff4e0; border-left: 4px solid #f0a020; padding: 8px 12px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e4e4e4; text-align: right; vertical-align: top; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; }
table.facts th { background: none; white-space: nowrap; font-weight: 600; padding-right: 18px; }
tr.chosen td { background: #fff8d6; font-weight: 600; }
figure { margin: 16px 0 28px; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 14px; max-width: 800px; }
code { background: #f4f4f4; padding: 1px 4px; border-radius: 3px; }
"""


def render_page(run: RunSnapshot, plots: list[Plot], *, weights: Sequence[float]) -> str:
    """The whole page."""
    data, settings = run.data, run.settings
    body = [
        f"<h1>Search report: {_e(data['name'])} · {_e(settings['network'].upper())}</h1>",
        f"<p class='muted'>{_e(str(run.run_dir))} · written {time.strftime('%Y-%m-%d %H:%M')} by deepncheap "
        f"{__version__} from the run's store (nothing was trained for it)</p>",
        _summary(run),
        _data(run),
        _chosen(run),
        _final(run),
        _transferred(run),
        "<h2>Plots</h2>",
        *(_figure(plot) for plot in plots),
        _tables(run, weights),
        _log(run),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>deepncheap report: {_e(data['name'])}</title><style>{CSS}</style></head>\n"
        "<body><main>\n" + "\n".join(part for part in body if part) + "\n</main></body></html>\n"
    )


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: Sequence[str] = (),
           highlight: int | None = None) -> str:  # fmt: skip
    """An HTML table; `text_columns` are left-aligned, row `highlight` is marked as the chosen one."""

    def cell(tag: str, name: str, value: str) -> str:
        return f"<{tag}{' class=text' if name in text_columns else ''}>{_e(value)}</{tag}>"

    head = "".join(cell("th", h, h) for h in headers)
    lines = [
        f"<tr{' class=chosen' if i == highlight else ''}>" + "".join(map(cell, ["td"] * len(row), headers, row))
        + "</tr>"
        for i, row in enumerate(rows)
    ]  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _facts(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table of named values."""
    body = "".join(f"<tr><th class=text>{_e(name)}</th><td class=text>{_e(value)}</td></tr>" for name, value in rows)
    return f"<table class=facts><tbody>{body}</tbody></table>"


def _summary(run: RunSnapshot) -> str:
    settings = run.settings
    best = run.best
    score = (
        f"{100 * (best.val_accuracy or 0):.2f}% validation accuracy"
        if run.classification
        else (f"validation MSE {best.val_loss:.4g}")
    )
    rows = [
        (
            "result",
            f"trial #{best.trial_id}: {score}, {human_count(best.n_params)} parameters, "
            f"{best.time_per_epoch_s or 0:.3f} s per epoch",
        ),
        ("state", run.describe_state()),
        ("method", f"{describe_method(settings)}, {settings['epochs']} epochs per trial, seed {settings['seed']}"),
        ("objective", f"log10(f_p + w_c·f_c), w_c = {settings['wc']:g}, penalty {settings['penalty']}"),
        ("search cost", describe_cost(run)),
    ]
    constraints = Constraints.of(settings)
    if constraints:
        violators = [f"#{t.trial_id}" for t in run.trials if t.violation and t.epochs]
        rows.append(
            (
                "constraints",
                f"{constraints.describe()}; trained trials that violate one: {', '.join(violators) or 'none'}",
            )
        )
    return "<h2>Summary</h2>" + _facts(rows)


def _data(run: RunSnapshot) -> str:
    data = run.data
    classes = data.get("classes") or []
    rows = [("task", data["task"]), ("inputs", describe_inputs(data))]
    if classes:
        rows.append(
            ("classes", f"{len(classes)}: " + ", ".join(map(str, classes[:20])) + (" …" if len(classes) > 20 else ""))
        )
    rows += [
        ("training rows", f"{data['n_train']:,}"),
        ("validation rows", f"{data['n_val']:,} (the search ranks trials on these)"),
        ("test rows", f"{data['n_test']:,} (never seen by the search; dnc train measures the final model on them)"),
    ]
    warning = run.small_validation()
    note = f"<p class='warning'><b>Small validation set</b>: {_e(warning)}.</p>" if warning else ""
    return "<h2>Data</h2>" + _facts(rows) + note


def _chosen(run: RunSnapshot) -> str:
    best = run.best
    score = "validation accuracy" if run.classification else "validation MSE (target units²)"
    rows = [
        ("trial", f"#{best.trial_id} ({best.stage} stage)"),
        ("architecture", describe_architecture(best.config, run.data)),
        ("training", describe_training(best.config, int(best.epochs or run.settings["epochs"]))),
        (score, score_text(best) + run.rows_right(best)),
        ("objective", f"{best.objective:+.4f} (f_p {best.f_p:.4g}, f_c {best.f_c:.4g})"),
        ("parameters", f"{best.n_params:,}"),
        ("FLOPs per sample", human_count(best.flops)),
        ("time per epoch", f"{best.time_per_epoch_s or 0:.3f} s"),
    ]
    return "<h2>Chosen trial</h2>" + _facts(rows)


def _final(run: RunSnapshot) -> str:
    final = run.final
    if not final:
        return (
            "<h2>Final model</h2><p>Not trained yet. <code>dnc train "
            f"{_e(str(run.run_dir))}</code> retrains the chosen config on the training and validation rows and "
            f"measures it once on the {run.data['n_test']:,} test rows.</p>"
        )
    rows = [(key, f"{value:.4g}") for key, value in final_metrics(final).items()]
    rows += [
        ("trial", f"#{final.get('trial_id')}"),
        ("epochs", str(final.get("epochs"))),
        ("training rows", f"{final.get('n_train', '?'):,}"),
        ("test rows", f"{final.get('n_test', '?'):,}"),
        ("training time", f"{float(final.get('wall_s') or 0):,.1f} s"),
    ]
    return "<h2>Final model (test metrics)</h2>" + _table(("metric", "value"), rows, text_columns=("metric",))


def _figure(plot: Plot) -> str:
    source = "data:image/png;base64," + base64.b64encode(plot.png).decode("ascii")
    return (
        f"<figure id='{plot.name}'><h3>{_e(plot.title)}</h3><img src='{source}' alt='{_e(plot.title)}'>"
        f"<figcaption>{_e(plot.caption)} (<code>plots/{plot.name}.png</code>)</figcaption></figure>"
    )


def _tables(run: RunSnapshot, weights: Sequence[float]) -> str:
    stage_rows = [
        (t.stage, f"#{t.trial_id}", f"{t.objective:+.4f}", score_text(t), human_count(t.n_params),
         human_count(t.flops), f"{t.time_per_epoch_s or 0:.3f}", summarize_config(t.config))
        for t in run.stage_bests()
    ]  # fmt: skip
    stage_headers = ("stage", "trial", "objective", "val score", "params", "FLOPs", "s/epoch", "config")
    front = pareto_front(run.scored)
    chosen = next((i for i, t in enumerate(front) if t.trial_id == run.best.trial_id), None)
    own = next((i for i, w in enumerate(weights) if w == run.settings["wc"]), None)
    return "\n".join(
        [
            "<h2>Best trial of each stage</h2>",
            _table(stage_headers, stage_rows, text_columns=("stage", "config")),
            _pruned(run),
            f"<h2>Pareto front: f_p against f_c ({len(front)} of {len(run.scored)} complete trials)</h2>",
            "<p>The trials no other trial beats on both error (f_p) and cost (f_c); the chosen one is marked."
            + (
                " Here one trial is both the most accurate and the cheapest: there is no trade-off to make."
                if len(front) == 1
                else ""
            )
            + "</p>",
            _table(PARETO_HEADERS, pareto_rows(front), text_columns=("stage",), highlight=chosen),
            "<h2>Trade-off: the trial each weight w_c would choose</h2>",
            "<p>Recomputed from the stored f_p and f_c, log10(f_p + w_c·f_c), without training anything again "
            f"(<code>dnc show {_e(str(run.run_dir))} --wc 0,0.1,1</code> for other weights); the search's own "
            "w_c is marked.</p>",
            _table(
                TRADEOFF_HEADERS,
                tradeoff_rows(winners(run.scored, weights, floor=run.floor)),
                text_columns=("stage",),
                highlight=own,
            ),
        ]
    )


def _transferred(run: RunSnapshot) -> str:
    """A transfer run's configs side by side with their source trials (`show.transfer_table`)."""
    settings = run.settings
    if not settings.get("transfer_from"):
        return ""
    headers, rows = transfer_table(settings, run.trials)
    return (
        f"<h2>Transferred configs ({len(rows)})</h2>"
        f"<p>The best configs of <code>{_e(settings['transfer_from'])}</code> (its best complete trial of each "
        f"network), trained on {_e(run.data['name'])}. Each source objective was measured on the source's data "
        "against its own baselines: compare the two columns' rankings rather than their values.</p>"
        + _table(headers, rows, text_columns=("status", "config"))
    )


def _pruned(run: RunSnapshot) -> str:
    """The trials pruning stopped: why, after how many epochs, and the objective they are recorded with."""
    pruned = [t for t in run.trials if t.status == "pruned"]
    if not pruned:
        return ""
    rows = [
        (f"#{t.trial_id}", t.stage, t.reason or "", str(t.epochs or 0),
         "" if t.objective is None else f"{t.objective:+.4f}",
         human_count(t.n_params), summarize_config(t.config))
        for t in pruned
    ]  # fmt: skip
    headers = ("trial", "stage", "reason", "epochs trained", "objective", "params", "config")
    return (
        f"<h2>Pruned trials ({len(pruned)}, --prune {_e(run.settings.get('prune', 'none'))})</h2>"
        "<p>A trial stopped by the cost bound is recorded with its bound (the lowest objective its cost allows: "
        "it could not beat the best trial); one stopped by a learning-curve rule with its objective when it "
        "stopped.</p>" + _table(headers, rows, text_columns=("stage", "reason", "config"))
    )


def _log(run: RunSnapshot) -> str:
    if not run.log_lines:
        return ""
    return "<h2>Notes of the search</h2><ul>" + "".join(f"<li>{_e(line)}</li>" for line in run.log_lines) + "</ul>"
