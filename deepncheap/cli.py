"""The `dnc` command: `dnc search` and `dnc show`.

Errors are one line on stderr (`dnc: error: <what is wrong>; <how to fix it>`) with exit status 2 for bad
input, 1 for an unexpected internal error (traceback only with --debug) and 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
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


def build_parser() -> argparse.ArgumentParser:
    from deepncheap.data import TASKS
    from deepncheap.objective import PENALTIES
    from deepncheap.settings import DEFAULT_EPOCHS, DEFAULT_MAX_TRIALS, METHODS
    from deepncheap.sources import BUILTIN_DATASETS, FILE_DATASETS
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
    s.add_argument(
        "--data-dir", help="folder of the mnist/fashion_mnist/cifar10/cifar100 files (default: $DNC_DATA_DIR or ./data)"
    )
    s.add_argument("--val-split", type=float, default=0.2, help="validation fraction of the training data")
    s.add_argument("--image-shape", type=_image_shape, help="C,H,W to reshape flat features for a CNN")
    s.add_argument("--wc", type=float, default=0.1, help="complexity weight w_c >= 0 (default: 0.1)")
    s.add_argument("--penalty", default="time", help=f"{' | '.join(PENALTIES)} (default: time)")
    s.add_argument("--method", default="dnc", help=f"{' | '.join(METHODS)} (default: dnc, Deep-n-Cheap's three stages)")
    s.add_argument(
        "--max-trials",
        type=int,
        help=f"cap on trainings over the whole search (default: stage budgets for dnc, {DEFAULT_MAX_TRIALS} otherwise)",
    )
    s.add_argument("--prior-points", type=int, default=15, help="Sobol prior points per BO stage (default: 15)")
    s.add_argument("--bo-steps", type=int, default=15, help="BO steps per BO stage (default: 15)")
    s.add_argument(
        "--candidates", type=int, default=1000, help="random candidates scored by EI per step (default: 1000)"
    )
    s.add_argument("--bo-mode", default="default", help="default | reference (the reference's exact GP, SPEC §5)")
    s.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"epochs per trial (default: {DEFAULT_EPOCHS})")
    s.add_argument("--seed", type=int, default=0, help="search seed (default: 0)")
    s.add_argument("--space", help="YAML/JSON file of search-space overrides")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    s.add_argument("--threads", type=int, help="torch CPU threads (default: torch's default)")
    s.add_argument("--out", help="run directory (default: runs/<data>-<network>-<timestamp>)")
    s.add_argument("--quiet", action="store_true", help="no progress display")
    s.add_argument("--debug", action="store_true", help="show library warnings and tracebacks")

    show = commands.add_parser("show", help="show a run's trials and best config")
    show.add_argument("run", help="run directory")
    show.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


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
        seed=args.seed,
        task=args.task,
        val_split=args.val_split,
        image_shape=args.image_shape,
        target=args.target,
        data_dir=args.data_dir,
        space=read_space_file(args.space) if args.space else None,
        device=args.device,
        threads=args.threads,
        prior_points=args.prior_points,
        bo_steps=args.bo_steps,
        candidates=args.candidates,
        bo_mode=args.bo_mode,
        out=args.out,
        verbose=not args.quiet,
    )
    print(format_result(result))


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
    )


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C: ask the search to stop (the trainer checks at each epoch end) and interrupt at once."""
    from deepncheap.train import STOP_REQUESTED

    STOP_REQUESTED.set()
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (already printed) and --help
        return int(exc.code or 0)
    if not args.debug:
        warnings.simplefilter("ignore")
    previous_handler = signal.getsignal(signal.SIGINT)
    try:
        if args.command == "search":
            signal.signal(signal.SIGINT, _interrupt)
            _run_search(args)
        else:
            from deepncheap.report import show_run

            show_run(args.run)
    except DNCError as exc:
        print(f"dnc: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("dnc: interrupted; the trials finished so far are in the run's store.sqlite", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(
            f"dnc: error: internal error ({type(exc).__name__}: {exc}); rerun with --debug and report it",
            file=sys.stderr,
        )
        return 1
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    return 0


def entry_point() -> None:
    sys.exit(main())
