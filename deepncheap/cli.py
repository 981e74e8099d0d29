"""The `dnc` command: `dnc search`, `dnc resume`, `dnc transfer`, `dnc train`, `dnc show`, `dnc report`,
`dnc export` and `dnc predict`.

Exit status: 0 finished or stopped by a budget (resumable), 2 bad input (one line on stderr:
`dnc: error: <what is wrong>; <how to fix it>`), 1 an unexpected internal error (traceback only with
--debug), 130 stopped by Ctrl-C or SIGTERM (resumable). The first Ctrl-C/SIGTERM stops the search at the
end of the current epoch, after recording its state; a second one stops at once (the store stays intact).
A closed stdout or stderr (`dnc search ... | head`) never stops a search.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

from deepncheap.arguments import build_parser
from deepncheap.errors import DNCError


def _run_search(args: argparse.Namespace) -> None:
    from deepncheap.search import search
    from deepncheap.space import read_space_file

    result = search(
        data=args.data,
        network=args.network,
        wc=args.wc,
        penalty=args.penalty,
        method=args.method,
        max_trials=args.max_trials,
        epochs=args.epochs,
        augment=args.augment,
        seed=args.seed,
        space=read_space_file(args.space) if args.space else None,
        device=args.device,
        threads=args.threads,
        prior_points=args.prior_points,
        bo_steps=args.bo_steps,
        candidates=args.candidates,
        bo_mode=args.bo_mode,
        prune=args.prune,
        latency_batch=args.latency_batch,
        max_params=args.max_params,
        max_flops=args.max_flops,
        max_latency_ms=args.max_latency_ms,
        max_epoch_time=args.max_epoch_time,
        warm_start=args.warm_start,
        proxy=args.proxy,
        transfer_top=args.transfer_top,
        proxy_epochs=args.proxy_epochs,
        executor=args.executor,
        workers=args.workers,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        ray_address=args.ray_address,
        out=args.out,
        overwrite=args.overwrite,
        **_data_options(args),
        **_run_options(args),
    )
    _print_result(args, result)


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The data options `dnc search` and `dnc transfer` share (`run_data.DATA_OPTIONS`)."""
    from deepncheap.run_data import DATA_OPTIONS

    return {name: getattr(args, name) for name in DATA_OPTIONS}


def _run_transfer(args: argparse.Namespace) -> None:
    from deepncheap.transfer import transfer

    result = transfer(
        args.run,
        data=args.data,
        top=args.top,
        epochs=args.epochs,
        out=args.out,
        overwrite=args.overwrite,
        **_data_options(args),
        **_run_options(args),
    )
    _print_result(args, result)


def _run_resume(args: argparse.Namespace) -> None:
    from deepncheap.search import resume

    result = resume(args.run, data=args.data, max_trials=args.max_trials, **_run_options(args))
    _print_result(args, result)


def _print_event(event: dict[str, Any]) -> None:
    _print(json.dumps(event, allow_nan=False))


def _print_result(args: argparse.Namespace, result: Any) -> None:
    """The closing summary on stdout, which --json keeps for its events alone (the last: search_ended); a
    transfer run's ends with its side-by-side table."""
    from deepncheap.settings import TRANSFER
    from deepncheap.show import format_transfer

    if not args.json:
        _print(format_result(result))
        if result.settings["method"] == TRANSFER:
            _print(format_transfer(result.run_dir))


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options `dnc search`, `dnc resume` and `dnc transfer` share: time budget, report, progress for
    people on stderr unless --quiet, and with --json every event as a line of JSON on stdout."""
    return {
        "time_budget": args.time_budget,
        "report": not args.no_report,
        "verbose": not args.quiet,
        "on_event": _print_event if args.json else None,
    }


def _run_train(args: argparse.Namespace) -> None:
    from deepncheap.final import train_final

    result = train_final(
        args.run,
        trial_id=args.trial,
        epochs=args.epochs,
        data=args.data,
        verbose=not args.quiet,
        report=not args.no_report,
    )
    final = result.final
    assert final is not None
    tests = ", ".join(f"{k.removeprefix('test_')} {v:.4f}" for k, v in final.items() if k.startswith("test_"))
    _print(
        f"final model (trial #{final['trial_id']}, {final['epochs']} epochs on {final['n_train']} samples): "
        f"test {tests} on {final['n_test']} samples\nwritten to {result.run_dir / 'final'}"
    )


def _run_export(args: argparse.Namespace) -> None:
    from deepncheap.export import export_run

    path = export_run(
        args.run, format=args.format, out=args.out, final=args.final, trial_id=args.trial, verbose=args.debug
    )
    _print(f"wrote {path}")


def _run_predict(args: argparse.Namespace) -> None:
    from pathlib import Path

    from deepncheap.artifacts import write_output
    from deepncheap.predict import predict_file

    table = predict_file(args.run, data=args.data, final=args.final, proba=args.proba)
    if args.out == "-":
        _print(table.rstrip("\n"))
        return
    write_output(Path(args.out).expanduser(), table.encode())
    _print(f"wrote {args.out}")


def _run_show(args: argparse.Namespace) -> None:
    from deepncheap.show import show_run, show_tradeoff

    show_run(args.run, debug=args.debug)
    if args.wc:
        show_tradeoff(args.run, args.wc)


def _run_report(args: argparse.Namespace) -> None:
    from deepncheap.report import write_report

    files = write_report(args.run)
    plots = files.html.parent / "plots"
    _print(f"report: {files.html}\nplots: {plots}/ ({len(files.plots)} PNG)\nmodel card: {files.model_card}")


COMMANDS = {
    "search": _run_search,
    "resume": _run_resume,
    "transfer": _run_transfer,
    "train": _run_train,
    "show": _run_show,
    "report": _run_report,
    "export": _run_export,
    "predict": _run_predict,
}
STOPPABLE = ("search", "resume", "transfer", "train")


def _print(text: str) -> None:
    """Print to stdout; a reader that went away (`| head`) is not an error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no second error at exit)


def format_result(result: Any) -> str:
    """The closing summary of a search."""
    from deepncheap.progress import human_count
    from deepncheap.report import REPORT_HTML

    m = result.metrics
    score = (
        f"validation accuracy: {m['val_accuracy']:.4f}"
        if "val_accuracy" in m
        else f"validation loss (MSE): {m['val_loss']:.4g}"
    )
    return "\n".join(
        [
            f"best config (trial #{result.trial_id}, stage {result.stage}):",
            json.dumps(result.best_config, indent=2),
            score,
            f"parameters: {m['n_params']:,} ({human_count(m['n_params'])})",
            f"FLOPs per sample: {human_count(m['flops'])}",
            f"time per epoch: {m['time_per_epoch_s']:.3f} s",
            f"objective: {m['objective']:+.4f} (f_p {m['f_p']:.4g}, f_c {m['f_c']:.4g})",
            f"run directory: {result.run_dir}  (best.json, trials.csv, best_model.safetensors, store.sqlite"
            + (", report.html, plots/, MODEL_CARD.md)" if (result.run_dir / REPORT_HTML).is_file() else ")"),
        ]
        + ([] if result.finished else [f"stopped by {result.reason}; continue with: dnc resume {result.run_dir}"])
    )


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _request_stop(signum: int, frame: object) -> None:
    """First Ctrl-C/SIGTERM: ask the search to stop at the next epoch end (the trainer and the runner check
    the flag); a second one: stop at once."""
    from deepncheap.stopping import request_stop

    if request_stop():
        raise KeyboardInterrupt
    with contextlib.suppress(OSError):
        os.write(
            2,
            b"dnc: stopping at the end of this epoch (the running trial runs again on resume); "
            b"press Ctrl-C again to stop at once\n",
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (already printed) and --help
        return int(exc.code or 0)
    if args.debug:
        logging.basicConfig(format="%(name)s: %(message)s")
        logging.getLogger("deepncheap").setLevel(logging.DEBUG)
    else:
        warnings.simplefilter("ignore")
    previous_handlers = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    try:
        if args.command in STOPPABLE:  # (long commands stop at an epoch end on the first Ctrl-C/SIGTERM)
            for stop_signal in STOP_SIGNALS:
                signal.signal(stop_signal, _request_stop)
        COMMANDS[args.command](args)
    except DNCError as exc:
        _error(f"dnc: {'error: ' if exc.exit_status else ''}{exc}")
        return exc.exit_status
    except KeyboardInterrupt as exc:
        from deepncheap.final import TrainingInterrupted

        if isinstance(exc, TrainingInterrupted):
            _error(f"dnc: {exc}")
            return 130
        run_dir = getattr(exc, "run_dir", None)
        resumable = f"; continue with: dnc resume {run_dir}" if run_dir else ""
        _error(f"dnc: interrupted; every finished trial is stored{resumable}")
        return 130
    except Exception as exc:
        if args.debug:
            with contextlib.suppress(OSError):
                traceback.print_exc()
        _error(f"dnc: error: internal error ({type(exc).__name__}: {exc}); rerun with --debug and report it")
        return 1
    finally:
        for stop_signal, handler in previous_handlers.items():
            signal.signal(stop_signal, handler)
    return 0


def _error(line: str) -> None:
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr)


def entry_point() -> None:
    sys.exit(main())
