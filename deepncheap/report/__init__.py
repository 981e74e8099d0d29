"""`dnc report`: what a run found, for people, from its store alone (and RUN/final/final.json when `dnc train`
wrote it); it never trains. Writes RUN/report.html (one self-contained page: every plot embedded as a
`data:` URI, no external CSS or JS), one PNG per plot in RUN/plots/, and RUN/MODEL_CARD.md.

`snapshot` reads the run, `features` turns its configs into plottable hyperparameters, `plots` draws
(matplotlib, imported when a report is made), `page` writes the HTML, `model_card` the Markdown card.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deepncheap.artifacts import write_atomic
from deepncheap.errors import OutputError
from deepncheap.tradeoff import DEFAULT_WEIGHTS

REPORT_HTML = "report.html"
MODEL_CARD = "MODEL_CARD.md"
PLOTS_DIR = "plots"


@dataclass(frozen=True)
class ReportFiles:
    """What `write_report` wrote."""

    html: Path
    model_card: Path
    plots: list[Path]


def write_report(run_dir: str | Path, *, weights: tuple[float, ...] = DEFAULT_WEIGHTS) -> ReportFiles:
    """Write the report, its plots and the model card of `run_dir`; `weights` are the w_c of the trade-off
    table. OutputError when `run_dir` is not a run, has no complete trial yet, or cannot be written."""
    from deepncheap.report.model_card import model_card
    from deepncheap.report.page import render_page
    from deepncheap.report.plots import make_plots
    from deepncheap.report.snapshot import read_run

    run = read_run(run_dir)
    plots = make_plots(run)
    folder = run.run_dir / PLOTS_DIR
    try:
        folder.mkdir(exist_ok=True)
        paths = []
        for plot in plots:
            paths.append(folder / f"{plot.name}.png")
            write_atomic(paths[-1], plot.png)
        for stale in set(folder.glob("*.png")) - set(paths):  # plots of an earlier report that this one has not
            stale.unlink()
        html = run.run_dir / REPORT_HTML
        write_atomic(html, render_page(run, plots, weights=weights).encode())
        card = run.run_dir / MODEL_CARD
        write_atomic(card, model_card(run).encode())
    except OSError as exc:
        raise OutputError(
            f"cannot write the report in {run.run_dir} ({exc.strerror or exc}); check the folder's permissions"
        ) from None
    return ReportFiles(html=html, model_card=card, plots=paths)
