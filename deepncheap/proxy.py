"""`--proxy F --transfer-top K`: a cheap search on a stratified fraction F of the training rows (and, with
`--proxy-epochs`, fewer epochs per trial), then K of its configs trained on the whole data (`dnc transfer`),
in one command.

The K configs come from the proxy's accuracy-vs-cost Pareto front first (best objective first, distinct
networks), then from the rest by objective: on a fraction of the rows every network errs more, so the
objective log10(f_p + w_c·f_c) weighs the cost less than it will on the whole data, and the proxy's K best
can all be its biggest networks (digits 5–9 at 10 %, 58 rows: its 5 best were 200–260k parameters at
3–9 % error; on the whole data they all erred 0.3–0.7 % and the cost decided). The front keeps the
cheaper networks that were the best of their cost. Since the transfer is after the best config on the
whole data, not a side-by-side comparison, it trains them cheapest first with the proxy's pruning: once a
cheap config set the incumbent, the cost bound skips those whose cost alone cannot beat it.

The chain makes two runs: the proxy search in OUT (settings `subset`, `transfer_top`, `transfer_epochs`) and
the transfer in OUT-transfer-<data>, which is the answer on the whole data. The chain is stored with the proxy
search, so `dnc resume OUT` finishes whichever part is missing: the proxy search, then the transfer (started,
or resumed where it stopped). A time budget covers both; when the proxy search uses it up, the transfer waits
for `dnc resume OUT`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepncheap import rundir
from deepncheap.artifacts import SearchResult
from deepncheap.data import Dataset
from deepncheap.errors import OutputError, SettingsError
from deepncheap.progress import SearchProgress
from deepncheap.run_data import DATA_OPTIONS, source_of
from deepncheap.settings import DEFAULT_EPOCHS
from deepncheap.space import is_number
from deepncheap.transfer import DEFAULT_TOP, transfer


def proxy_options(options: dict[str, Any]) -> dict[str, Any]:
    """`search` options with `proxy` (the fraction), `transfer_top` and `proxy_epochs` made settings: the
    proxy search's `subset`, `transfer_top` (default 5) and `epochs`, and its transfer's `transfer_epochs`
    (the `epochs` given) when `proxy_epochs` is given."""
    options = dict(options)
    proxy, top, proxy_epochs = (options.pop(name, None) for name in ("proxy", "transfer_top", "proxy_epochs"))
    if proxy is None:
        if top is not None:
            raise SettingsError(
                "--transfer-top transfers a proxy search's best configs to the whole data; give --proxy F too, "
                f"e.g. --proxy 0.1 --transfer-top {DEFAULT_TOP}"
            )
        if proxy_epochs is not None:
            raise SettingsError("--proxy-epochs sets the epochs of a proxy search; give --proxy F too, or use --epochs")
        return options
    if not is_number(proxy) or not 0 < proxy < 1:
        raise SettingsError(f"--proxy must be a fraction between 0 and 1 (exclusive), got {proxy!r}; e.g. --proxy 0.1")
    if options.get("subset") is not None:
        raise SettingsError(
            "--proxy F is --subset F followed by the transfer of the best configs to the whole data; give one of them"
        )
    chained = {"subset": proxy, "transfer_top": DEFAULT_TOP if top is None else top}
    if proxy_epochs is not None:
        given = options.get("epochs")
        chained |= {"epochs": proxy_epochs, "transfer_epochs": DEFAULT_EPOCHS if given is None else given}
    return options | chained


def target_free(out: str | Path | None, overwrite: bool) -> Callable[[Dataset], None]:
    """The check, before the proxy search writes anything, that its transfer will have somewhere to go:
    OUT-transfer-<data> holds no run, or `overwrite` replaces it too. (Without `out` the proxy's directory
    is new, and so is its transfer's.)"""

    def check(dataset: Dataset) -> None:
        if out is None or overwrite:
            return
        target = rundir.transfer_run_name(Path(out).expanduser(), dataset.name)
        if rundir.is_run(target):
            raise OutputError(
                f"{target}, where this proxy search's transfer goes, already holds a run; pass --overwrite to "
                "replace both, or choose another --out"
            )

    return check


def transfer_chained(
    proxy: SearchResult,
    *,
    data: Any,
    fresh: bool,
    overwrite: bool,
    time_budget_s: float | None,
    started: float,
    **run_options: Any,
) -> SearchResult:
    """After the proxy search `proxy`: its configs trained on the whole `data` (`transfer(..., proxy=True)`:
    a new transfer; when not `fresh`, the one already there resumed), within what is left of `time_budget_s`
    since `started` (`time.monotonic()`); `run_options` (verbose, on_event, report) as in `search`. `proxy`
    itself when it is no proxy search or has not finished."""
    settings = proxy.settings
    top = settings.get("transfer_top")
    if not top or not proxy.finished:
        return proxy
    from deepncheap.search import resume

    target = rundir.transfer_run_name(proxy.run_dir, settings["data"]["name"])
    progress = SearchProgress(0, enabled=run_options.get("verbose", True))
    left = None if time_budget_s is None else time_budget_s - (time.monotonic() - started)
    if left is not None and left <= 0:
        progress.note(f"the time budget is spent; 'dnc resume {proxy.run_dir}' trains the transfer to the whole data")
        return proxy
    data = source_of(settings, proxy.run_dir, data)
    if not fresh and rundir.is_run(target):
        return resume(target, data=data, time_budget=left, **run_options)
    progress.note(
        f"proxy search done (on {settings['subset']:.0%} of the training rows); {top} of its configs (its "
        f"accuracy-vs-cost front first) now train on the whole data in {target}, cheapest first"
    )
    options: dict[str, Any] = {n: settings.get(n) for n in DATA_OPTIONS if n != "subset"} | {"task": settings["task"]}
    if options["image_shape"]:
        options["image_shape"] = tuple(options["image_shape"])
    return transfer(
        proxy.run_dir,
        data=data,
        top=top,
        epochs=settings.get("transfer_epochs") or settings["epochs"],
        out=target,
        overwrite=overwrite,
        time_budget=left,
        proxy=True,
        **run_options,
        **options,
    )
