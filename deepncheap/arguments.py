"""The `dnc` command's arguments: one subparser per command, with the options each takes, and argparse's
errors in the project's one-line format (`dnc: error: <what is wrong>; see 'dnc <command> --help'`)."""

from __future__ import annotations

import argparse
import math
from typing import Any, NoReturn


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


def _count(text: str) -> int:
    """A positive whole number, also written as 2e6."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1 and value == int(value)):
        raise argparse.ArgumentTypeError(f"invalid count '{text}' (expected a whole number >= 1 such as 100000 or 2e6)")
    return int(value)


def _delimiter(text: str) -> str:
    return "\t" if text.lower() in ("tab", "\\t") else text


def build_parser() -> argparse.ArgumentParser:
    from deepncheap.export import FORMATS
    from deepncheap.objective import PENALTIES
    from deepncheap.pruning import DEFAULT_PRUNE, PRUNE_MODES
    from deepncheap.settings import AUGMENT, DEFAULT_EPOCHS, DEFAULT_MAX_TRIALS, METHODS
    from deepncheap.sources import BUILTIN_DATASETS, FILE_DATASETS
    from deepncheap.space import NETWORKS
    from deepncheap.transfer import DEFAULT_TOP

    data_help = (
        f"built-in ({', '.join(BUILTIN_DATASETS)}), local image set ({', '.join(FILE_DATASETS)}) or a .npz/.csv file"
    )

    parser = _Parser(prog="dnc", description="Deep-n-Cheap: search small, fast-to-train networks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = commands.add_parser("search", help="run a search", description="Run a search and write a run directory.")
    s.add_argument("--data", default="digits", help=f"{data_help} (default: digits)")
    s.add_argument("--network", default="cnn", help=f"{' | '.join(NETWORKS)} (default: cnn)")
    _data_options(s)
    s.add_argument("--wc", type=float, default=0.1, help="complexity weight w_c >= 0 (default: 0.1)")
    s.add_argument(
        "--penalty",
        default="time",
        help=f"{' | '.join(PENALTIES)}: the cost f_c, relative to the space's baseline: time per epoch, "
        "parameters, FLOPs per sample, inference latency (default: time)",
    )
    s.add_argument("--latency-batch", type=int, default=1, help="batch of the latency measure (default: 1)")
    s.add_argument(
        "--max-params", type=_count, help="hard limit on trainable parameters (exact: never trained when over)"
    )
    s.add_argument("--max-flops", type=_count, help="hard limit on forward FLOPs per sample (exact, e.g. 2e6)")
    s.add_argument(
        "--max-latency-ms", type=float, help="hard limit on the inference latency in ms (measured before training)"
    )
    s.add_argument(
        "--max-epoch-time",
        type=float,
        help="hard limit on the seconds per training epoch (predicted before training, checked while it trains)",
    )
    s.add_argument("--method", default="dnc", help=f"{' | '.join(METHODS)} (default: dnc, Deep-n-Cheap's three stages)")
    s.add_argument(
        "--warm-start",
        nargs="+",
        metavar="RUN",
        help="start from the best config of each earlier run: trained first, then the core stage's first prior "
        "points (--method dnc, the same --network)",
    )
    s.add_argument(
        "--proxy",
        type=float,
        metavar="F",
        help="search on a stratified fraction F of the training rows, then train its best configs on the whole "
        "data (a run of its own beside --out, like dnc transfer)",
    )
    s.add_argument(
        "--transfer-top",
        type=int,
        metavar="K",
        help=f"with --proxy: how many of its best configs train on the whole data (default: {DEFAULT_TOP})",
    )
    s.add_argument(
        "--proxy-epochs",
        type=int,
        metavar="N",
        help="with --proxy: epochs per trial of the proxy search (--epochs: of the configs on the whole data)",
    )
    _budget_options(
        s, f"cap on trainings over the whole search (default: stage budgets for dnc, {DEFAULT_MAX_TRIALS} otherwise)"
    )
    s.add_argument("--prior-points", type=int, default=15, help="Sobol prior points per BO stage (default: 15)")
    s.add_argument("--bo-steps", type=int, default=15, help="BO steps per BO stage (default: 15)")
    s.add_argument(
        "--candidates", type=int, default=1000, help="random candidates scored by EI per step (default: 1000)"
    )
    s.add_argument(
        "--prune",
        default=DEFAULT_PRUNE,
        help=f"{' | '.join(PRUNE_MODES)}: never finish trials whose cost alone cannot beat the best (bound), also "
        "stop those whose most optimistic projection cannot (projection), or those that trail their stage at 1/4 "
        f"and 1/2 of their epochs (median, asha) (default: {DEFAULT_PRUNE})",
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
    _overwrite_option(s)
    _output_options(s)

    tr = commands.add_parser(
        "transfer",
        help="train a run's best configs on other data, side by side with the source",
        description="Train the --top best configs of a finished (or stopped) run (its best complete trials, one "
        "per network) on other data, as a run of its own (show, report, train, export and resume take it) with "
        "the source's settings (network, w_c, penalty, pruning, constraints, space, seed, epochs) and the new "
        "data's options; the baselines are measured on the new data. Prints each config's source objective next "
        "to its result and writes OUT/transfer.json. The source run is never written.",
    )
    tr.add_argument("run", help="the source run directory")
    tr.add_argument("--data", required=True, help=data_help)
    _data_options(tr)
    tr.add_argument(
        "--top", type=int, default=DEFAULT_TOP, help=f"how many of the source's best configs (default: {DEFAULT_TOP})"
    )
    tr.add_argument("--epochs", type=int, help="epochs per trial (default: the source's)")
    tr.add_argument("--out", help="run directory (default: <RUN>-transfer-<data> beside the source run)")
    _overwrite_option(tr)
    _time_budget_option(tr)
    _output_options(tr)

    r = commands.add_parser(
        "resume",
        help="continue a stopped or killed search",
        description="Continue the search of a run directory with its stored settings; no finished trial is retrained.",
    )
    r.add_argument("run", help="run directory")
    r.add_argument("--data", help="the same data again, where the search ran on arrays or its file moved")
    _budget_options(r, "new cap on trainings over the whole search (default: the stored one)")
    _output_options(r)

    t = commands.add_parser(
        "train",
        help="train the best config longer on train + validation data and test it once",
        description="Train a run's best config (or --trial's) for longer on its training + validation data, "
        "evaluate it once on the test split the search never saw, and write RUN/final/ (model.safetensors, "
        "final.json with the test metrics and the training curve).",
    )
    t.add_argument("run", help="run directory")
    t.add_argument("--trial", type=int, help="the trial whose config to train (default: the best trial)")
    t.add_argument("--epochs", type=int, help="epochs (default: 4 times the search's epochs per trial)")
    t.add_argument("--data", help="the same data again, where the search ran on arrays or its file moved")
    _output_options(t, events=False)

    show = commands.add_parser("show", help="show a run's trials, best config and state (also while it runs)")
    show.add_argument("run", help="run directory")
    show.add_argument("--debug", action="store_true", help="show the tracebacks of failed trials")
    tradeoff = "also list the stored trial each weight w_c would choose, and the Pareto front (e.g. 0,0.1,1,10)"
    show.add_argument("--wc", type=_weights, metavar="W1,W2,...", help=tradeoff)

    report = commands.add_parser(
        "report",
        help="write a run's report (report.html, plots/, MODEL_CARD.md)",
        description="Write RUN/report.html (self-contained, plots embedded), RUN/plots/*.png and RUN/MODEL_CARD.md "
        "from the run's store; nothing is trained. dnc search writes them at its end too.",
    )
    report.add_argument("run", help="run directory")
    report.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")

    e = _model_command(
        commands,
        "export",
        "write the model, preprocessing inside, as an ONNX or TorchScript file",
        "Write the best trial's model (or the final one) as a file that predicts from raw inputs without "
        "deepncheap: float32 input 'input' (N, *input shape), output 'probabilities' (N, classes) or "
        "'predictions' (N, 1) in the targets' units. The task, class names and input shape are in the file "
        "(ONNX metadata_props; TorchScript extra file deepncheap.json). ONNX needs: pip install 'deepncheap[export]'.",
    )
    e.add_argument("--format", required=True, choices=FORMATS, help="file format")
    e.add_argument("--trial", type=int, help="trial id (default: the best; only its weights are kept)")
    e.add_argument(
        "--out", help="file to write (default: RUN/export/best_model.onnx or .pt; final_model.* with --final)"
    )

    p = _model_command(
        commands,
        "predict",
        "predict from raw samples in a file, as CSV",
        "Predict with the best trial's model (or the final one) for the raw samples of a .npy, .npz (array x, "
        "xte or its only one) or .csv file (header row; the training CSV's feature columns, its target column "
        "left out). Writes one row per sample: prediction, then p_<class> with --proba.",
    )
    p.add_argument("--data", required=True, help="file of raw samples (.npy, .npz or .csv)")
    p.add_argument("--out", required=True, help="CSV file to write, or - for stdout")
    p.add_argument("--proba", action="store_true", help="add one p_<class> probability column per class")
    return parser


def _model_command(commands: Any, name: str, help_text: str, description: str) -> argparse.ArgumentParser:
    """A command on a run's model (the best trial's, or with --final the one `dnc train` wrote)."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=description)
    parser.add_argument("run", help="run directory")
    parser.add_argument("--final", action="store_true", help="the final model 'dnc train' wrote (RUN/final/)")
    parser.add_argument("--debug", action="store_true", help="show library warnings and tracebacks")
    return parser


def _weights(text: str) -> list[float]:
    from deepncheap.errors import SettingsError
    from deepncheap.tradeoff import parse_weights

    try:
        return parse_weights(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _data_options(parser: argparse.ArgumentParser) -> None:
    """The options that read and split the data (`run_data.DATA_OPTIONS`), besides --data."""
    from deepncheap.data import TASKS
    from deepncheap.sources import IMPUTE

    parser.add_argument("--task", choices=TASKS, help="default: inferred from the targets")
    parser.add_argument("--target", help="label column of a .csv file")
    parser.add_argument(
        "--drop", metavar="COLS", help="comma-separated columns of a .csv file to leave out (an id, a name)"
    )
    parser.add_argument(
        "--impute",
        choices=IMPUTE,
        help="missing feature values: fill with the training rows' mean or median, or drop their rows "
        "(default: refuse them)",
    )
    parser.add_argument(
        "--delimiter", type=_delimiter, help="delimiter of a .csv file: one character, or tab (default: sniffed)"
    )
    parser.add_argument(
        "--data-dir", help="folder of the mnist/fashion_mnist/cifar10/cifar100 files (default: $DNC_DATA_DIR or ./data)"
    )
    parser.add_argument("--val-split", type=float, default=0.2, help="validation fraction of the training data")
    parser.add_argument(
        "--subset",
        type=float,
        metavar="F",
        help="train on a stratified fraction F of the training rows: a cheap proxy search (validation stays whole)",
    )
    parser.add_argument("--image-shape", type=_image_shape, help="C,H,W to reshape flat features for a CNN")


def _overwrite_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the run already in --out (its trials are lost)"
    )


def _budget_options(parser: argparse.ArgumentParser, max_trials_help: str) -> None:
    parser.add_argument("--max-trials", type=int, help=max_trials_help)
    _time_budget_option(parser)


def _time_budget_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--time-budget",
        help="stop after the trial in progress once this much time is spent: seconds, or e.g. 30m, 2h "
        "(resumable; default: none)",
    )


def _output_options(parser: argparse.ArgumentParser, *, events: bool = True) -> None:
    if events:
        parser.add_argument(
            "--json",
            action="store_true",
            help="print one JSON object per event on stdout (search_started, stage_changed, trial_started, "
            "epoch, trial_ended, search_ended) and nothing else there; progress for people stays on stderr",
        )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument("--debug", action="store_true", help="show library warnings and tracebacks")
    parser.add_argument("--no-report", action="store_true", help="write no report.html, plots/ or MODEL_CARD.md")
