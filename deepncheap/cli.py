"""The `dnc` command: `dnc search`, `dnc resume` and `dnc show`.

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
from typing import Any, NoReturn

from deepncheap.errors import DNCError


class _Parser(argparse.ArgumentParser):
    """argparse with errors in the project's one-line format."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"dnc: error: {message}; see '{self.prog} --help'\n")


def _image_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        shape = []
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"invalid image shape '{text}' (expected C,H,W such as 1,8,8)")
    return shape[0], shape[1], shape[2]


def _delimiter(text: str) -> str:
    return "\t" if text.lower() in ("tab", "\\t") else text


def build_parser() -> argparse.ArgumentParser:
    from deepncheap.data import TASKS
    from deepncheap.objective import PENALTIES
    from deepncheap.settings import AUGMENT, DEFAULT_EPOCHS, DEFAULT_MAX_TRIALS, METHODS
    from deepncheap.sources import BUILTIN_DATASETS, FILE_DATASETS, IMPUTE
    from deepncheap.space import NETWORKS

    parser = _Parser(prog="dnc", description="Deep-n-Cheap: search small, fast-to-train networks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = commands.add_parser("search", help="run a search", description="Run a search and write a run directory.")
    s.add_argument(
        "--data",
        default="digits",
        help=f"built-in ({', '.join(BUILTIN_DATASETS)}), local image set ({', '.join(FILE_DATASETS)}) "
        "or a .npz/.csv file (default: digits)",
    )
    s.add_argument("--network", default="cnn", help=f"{' | '.join(NETWORKS)} (default: cnn)")
    s.add_argument("--task", choices=TASKS, help="default: inferred from the targets")
    s.add_argument("--target", help="label column of a .csv file")
    s.add_argument("--drop", metavar="COLS", help="comma-separated columns of a .csv file to leave out (an id, a name)")
    s.add_argument(
        "--impute",
        choices=IMPUTE,
        help="missing feature values: fill with the training rows' mean or median, or drop their rows "
        "(default: refuse them)",
    )
    s.add_argument(
        "--delimiter", type=_delimiter, help="delimiter of a .csv file: one character, or tab (default: sniffed)"
    )
    s.add_argument(
        "--data-dir", help="folder of the mnist/fashion_mnist/cifar10/cifar100 files (default: $DNC_DATA_DIR or ./data)"
    )
    s.add_argument("--val-split", type=float, default=0.2, help="validation fraction of the training data")
    s.add_argument("--image-shape", type=_image_shape, help="C,H,W to reshape flat features for a CNN")
    s.add_argument("--wc", type=float, default=0.1, help="complexity weight w_c >= 0 (default: 0.1)")
    s.add_argument("--penalty", default="time", help=f"{' | '.join(PENALTIES)} (default: time)")
    s.add_argument("--method", default="dnc", help=f"{' | '.join(METHODS)} (default: dnc, Deep-n-Cheap's three stages)")
    _budget_options(
        s, f"cap on trainings over the whole search (default: stage budgets for dnc, {DEFAULT_MAX_TRIALS} otherwise)"
    )
    s.add_argument("--prior-points", type=int, default=15, help="Sobol prior points per BO stage (default: 15)")
    s.add_argument("--bo-steps", type=int, default=15, help="BO steps per BO stage (default: 15)")
    s.add_argument(
        "--candidates", type=int, default=1000, help="random candidates scored by EI per step (default: 1000)"
    )
    s.add_argument(
        "--bo-mode",
        default="default",
        help="default | reference (the reference implementation's exact GP; see docs/method.md)",
    )
    s.add_argument(
        "--augment",
        choices=AUGMENT,
        default="auto",
        help="random crops (4-pixel padding) and flips of every training batch; auto: on for 3x32x32 images "
        "(default: auto)",
    )
    s.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"epochs per trial (default: {DEFAULT_EPOCHS})")
    s.add_argument("--seed", type=int, default=0, help="search seed (default: 0)")
    s.add_argument("--space", help="YAML/JSON file of search-space overrides")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    s.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads per trial (default: torch's default; with --executor processes: --cpus-per-trial)",
    )
    s.add_argument(
        "--executor",
        help="serial | processes | ray: where trials run (default: serial; processes when --workers > 1)",
    )
    s.add_argument("--workers", type=int, help="trials at once (default: 1 serial; CPUs / --cpus-per-trial otherwise)")
    s.add_argument("--cpus-per-trial", type=int, default=1, help="CPUs one trial asks of the executor (default: 1)")
    s.add_argument(
        "--gpus-per-trial", type=float, help="GPUs one Ray trial asks for (default: 1 where the cluster has GPUs)"
    )
    s.add_argument("--ray-address", help="address of a running Ray cluster (default: start a local one)")
    s.add_argument("--out", help="run directory (default: runs/<data>-<network>-<timestamp>)")
    s.add_argument("--overwrite", action="store_true", help="replace the run already in --out (its trials are lost)")
    _output_options(s)

    r = commands.add_parser(
        "resume",
        help="continue a stopped or killed search",
        description="Continue the search of a run directory with its stored settings; no finished trial is retrained.",
    )
    r.add_argument("run", help="run directory")
    r.add_argument("--data", help="the same data again, where the search ran on arrays or its file moved")
    _budget_options(r, "new cap on trainings over the whole search (default: the stored one)")
    _output_options(r)

    show = commands.add_parser("show", help="show a run's trials, best config and state (also while it runs)")
    show.add_argument("run", help="run directory")
    show.add_argument("--debug", action="store_true", help="show the tracebacks of failed trials")
    return parser


def _budget_options(parser: argparse.ArgumentParser, max_trials_help: str) -> None:
    parser.add_argument("--max-trials", type=int, help=max_trials_help)
    parser.add_argument(
        "--time-budget",
        help="stop after the trial in progress once this much time is spent: seconds, or e.g. 30m, 2h "
        "(resumable; default: none)",
    )


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per event on stdout (search_started, stage_changed, trial_started, epoch, "
        "trial_ended, search_ended) and nothing else there; progress for people stays on stderr",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument("--debug", action="store_true", help="show library warnings and tracebacks")


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
        task=args.task,
        val_split=args.val_split,
        image_shape=args.image_shape,
        target=args.target,
        delimiter=args.delimiter,
        drop=args.drop,
        impute=args.impute,
        data_dir=args.data_dir,
        space=read_space_file(args.space) if args.space else None,
        device=args.device,
        threads=args.threads,
        prior_points=args.prior_points,
        bo_steps=args.bo_steps,
        candidates=args.candidates,
        bo_mode=args.bo_mode,
        executor=args.executor,
        workers=args.workers,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        ray_address=args.ray_address,
        out=args.out,
        overwrite=args.overwrite,
        time_budget=args.time_budget,
        **_progress_options(args),
    )
    _print_result(args, result)


def _run_resume(args: argparse.Namespace) -> None:
    from deepncheap.search import resume

    result = resume(
        args.run, data=args.data, max_trials=args.max_trials, time_budget=args.time_budget, **_progress_options(args)
    )
    _print_result(args, result)


def _progress_options(args: argparse.Namespace) -> dict[str, Any]:
    """Progress for people on stderr unless --quiet; with --json, every event as a line of JSON on stdout."""
    return {"verbose": not args.quiet, "on_event": _print_event if args.json else None}


def _print_event(event: dict[str, Any]) -> None:
    _print(json.dumps(event, allow_nan=False))


def _print_result(args: argparse.Namespace, result: Any) -> None:
    """The closing summary on stdout, which --json keeps for its events alone (the last: search_ended)."""
    if not args.json:
        _print(format_result(result))


def _print(text: str) -> None:
    """Print to stdout; a reader that went away (`| head`) is not an error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no second error at exit)


def format_result(result: Any) -> str:
    """The closing summary of a search."""
    from deepncheap.progress import human_count

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
            f"run directory: {result.run_dir}  (best.json, trials.csv, best_model.safetensors, store.sqlite)",
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
        if args.command == "show":
            from deepncheap.show import show_run

            show_run(args.run, debug=args.debug)
            return 0
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, _request_stop)
        if args.command == "search":
            _run_search(args)
        else:
            _run_resume(args)
    except DNCError as exc:
        _error(f"dnc: {'error: ' if exc.exit_status else ''}{exc}")
        return exc.exit_status
    except KeyboardInterrupt as exc:
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
