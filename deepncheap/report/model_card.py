"""RUN/MODEL_CARD.md: what the chosen model is, in words a reader can check, what it scored, what the search
cost, how to load and use it, and how to run the same search again (the command rebuilt from the stored
settings)."""

from __future__ import annotations

import shlex
import time
from dataclasses import fields
from typing import Any

import yaml

from deepncheap import __version__, search_cost
from deepncheap.constraints import Constraints
from deepncheap.models import cnn_layout
from deepncheap.progress import human_count
from deepncheap.report.snapshot import RunSnapshot
from deepncheap.run_data import DATA_OPTIONS
from deepncheap.settings import TRANSFER, SearchSettings
from deepncheap.space import SearchSpace
from deepncheap.store import Trial
from deepncheap.train import LR_DROP_FACTOR, lr_milestones

# Settings that are no `dnc search` option (the space is given as a file, the extension by `dnc resume`).
# Given even at their default, so that the command means the same if a default changes.
ALWAYS_GIVEN = ("network", "wc", "penalty", "method", "epochs", "seed", "task")
NOT_OPTIONS = (
    "space", "extra_training_steps", "threads", "transfer_from", "transfer_configs", "warm_configs", "transfer_top",
    "transfer_epochs",
)  # fmt: skip
# (threads: what the executor ran with, not the option; transfer_from/_configs: `dnc transfer` makes them;
# warm_configs: --warm-start, and transfer_top/_epochs: --proxy, below)


def model_card(run: RunSnapshot) -> str:
    """The card's Markdown: of the final model when `dnc train` wrote one, else of the search's best trial."""
    best, data, settings, final = run.best, run.data, run.settings, run.final
    model = next((t for t in run.trials if final and t.trial_id == final.get("trial_id")), best)
    epochs = int(final["epochs"]) if final else int(best.epochs or settings["epochs"])
    chosen = (
        f"Trial #{best.trial_id} ({best.stage} stage) has the lowest objective log10(f_p + w_c·f_c) "
        f"(w_c = {settings['wc']:g}, {settings['penalty']} penalty) of the {len(run.scored)} complete trials."
    )
    if final:
        chosen += (
            f" The final model (`dnc train`) is trial #{model.trial_id}'s config trained again for {epochs} epochs "
            f"on {final.get('n_train', '?'):,} training and validation rows."
        )
    lines = [
        f"# Model card: {data['name']} · {settings['network'].upper()} (deepncheap {__version__})",
        "",
        f"Written from the run in `{run.run_dir}` on {time.strftime('%Y-%m-%d %H:%M')}; the search: "
        f"{run.describe_state()}. Everything below comes from the run's store"
        + (" and `final/final.json`." if final else "."),
        "",
        "## Data",
        "",
        *describe_data(run),
        "",
        "## Model",
        "",
        chosen,
        "",
        f"- Architecture: {describe_architecture(final['config'] if final else model.config, data)}.",
        f"- Training: {describe_training(final['config'] if final else model.config, epochs)}.",
        f"- Size and speed: {model.n_params:,} parameters ({human_count(model.n_params)}), "
        f"{human_count(model.flops)} FLOPs per sample (forward pass), {model.time_per_epoch_s or 0:.3f} s per "
        f"training epoch on {model.device or 'the search device'}"
        + (f" with {model.threads} CPU thread(s)." if model.threads and (model.device or "cpu") == "cpu" else "."),
        *describe_constraints(settings, model),
        "",
        "## Metrics",
        "",
        *describe_metrics(run, model),
        "",
        "## Search cost",
        "",
        describe_cost(run),
        "",
        "## Use it",
        "",
        "```python",
        "import deepncheap",
        f'model = deepncheap.load_run("{run.run_dir}"{", final=True" if final else ""})'
        + ("  # the final model" if final else "  # the best search trial"),
        "predictions = model.predict(X)  # raw inputs, as given to the search; predict_proba(X) for classes",
        "```",
        "",
        f"From a shell: `dnc predict {shlex.quote(str(run.run_dir))}{' --final' if final else ''} --data FILE "
        "--out preds.csv`.",
        "",
        "## Reproduce",
        "",
        *reproduce(run),
        "",
    ]
    return "\n".join(lines)


def describe_data(run: RunSnapshot) -> list[str]:
    """The data set, its task, input shape, classes and split sizes, as Markdown bullets."""
    data = run.data
    source = run.settings.get("data_source", data["name"])
    named = data["name"] if source == data["name"] else f"{data['name']} ({source})"
    lines = [f"- {named}: {data['task']}, inputs {describe_inputs(data)}"]
    classes = [str(c) for c in data.get("classes") or []]
    if classes:
        shown = ", ".join(classes[:20]) + (f", … ({len(classes)} in all)" if len(classes) > 20 else "")
        lines.append(f"- Classes ({len(classes)}): {shown}")
    lines.append(
        f"- Split sizes: {data['n_train']:,} training, {data['n_val']:,} validation (the search ranks on it), "
        f"{data['n_test']:,} test rows (the search never sees them)"
    )
    warning = run.small_validation()
    if warning:
        lines.append(f"- **Note**: {warning}.")
    return lines


def describe_inputs(data: dict[str, Any]) -> str:
    """'images 1×8×8 (C×H×W)' or '30 features'."""
    shape = [int(d) for d in data["input_shape"]]
    return f"images {'×'.join(map(str, shape))} (C×H×W)" if len(shape) == 3 else f"{shape[0]} features"


def describe_architecture(config: dict[str, Any], data: dict[str, Any]) -> str:
    """A config's network in words (the layout the model builder derives from it)."""
    outputs = f"a linear layer to {_count(int(data['num_outputs']), 'output')}"
    if config["network"] == "mlp":
        return _describe_mlp(config, outputs)
    return _describe_cnn(config, data["input_shape"], outputs)


def _describe_mlp(config: dict[str, Any], outputs: str) -> str:
    widths = [int(w) for w in config["hidden_nodes"]]
    if not widths:
        return f"no hidden layer: {outputs} (a linear model)"
    dropout = f"dropout {config['drop_prob']:g} after each" if config["drop_prob"] > 0 else "no dropout"
    return (
        f"{_count(len(widths), 'hidden layer')} of {'-'.join(map(str, widths))} ReLU units, {dropout}; then {outputs}"
    )


def _describe_cnn(config: dict[str, Any], input_shape: list[int], outputs: str) -> str:
    layout = cnn_layout(config, input_shape)
    depth = len(layout.channels)
    parts = [f"{_count(depth, 'conv layer')} (3×3, ReLU) with {'-'.join(map(str, layout.channels))} channels"]
    downsampled = [i + 1 for i, on in enumerate(layout.downsample) if on]
    kind = "max-pool" if config["downsampling"] == "maxpool" else "stride-2"
    parts.append(f"{kind} downsampling before layer{_plural_list(downsampled)}" if downsampled else "no downsampling")
    normed = [i + 1 for i, on in enumerate(layout.batch_norm) if on]
    parts.append(f"batch norm on {_layers(normed, depth)}" if normed else "no batch norm")
    dropout = [f"dropout {layout.dropout[0]:g} on the input"] if layout.dropout[0] > 0 else []
    dropped = [i + 1 for i, p in enumerate(layout.dropout) if p > 0 and i > 0]
    if dropped:
        dropout.append(f"dropout {config['drop_prob']:g} before {_layers(dropped, depth)}")
    parts.append(" and ".join(dropout) or "no dropout")
    groups = ", ".join(f"{a + 1}–{b + 1}" for a, b in layout.shortcut_groups)
    parts.append(f"residual shortcuts around layers {groups}" if groups else "no residual shortcuts")
    return "; ".join(parts) + f"; then global average pooling and {outputs}"


def describe_training(config: dict[str, Any], epochs: int) -> str:
    """The optimizer, its hyperparameters and schedule, in words."""
    drops = lr_milestones(epochs)
    schedule = f", ×{LR_DROP_FACTOR:g} after epoch{_plural_list(drops)}" if drops else ""
    return (
        f"Adam, learning rate {config['lr']:.2g}{schedule}, weight decay {config['weight_decay']:.2g}, "
        f"batch size {config['batch_size']}, {epochs} epochs"
    )


def describe_constraints(settings: dict[str, Any], trial: Trial) -> list[str]:
    """The search's hard constraints and the trial's margin below each (nothing without constraints)."""
    constraints = Constraints.of(settings)
    if not constraints:
        return []
    margins = constraints.margins(
        {"n_params": trial.n_params, "flops": trial.flops, "latency_ms": trial.latency_ms,
         "time_per_epoch_s": trial.time_per_epoch_s}
    )  # fmt: skip
    left = ", ".join(f"{name.replace('_', '-')} {value:,.4g}" for name, value in margins.items())
    latency = f" Latency {trial.latency_ms:.3g} ms." if trial.latency_ms is not None else ""
    return [f"- Constraints: {constraints.describe()}; margins (limit minus value): {left}.{latency}"]


def describe_metrics(run: RunSnapshot, trial: Trial) -> list[str]:
    """A Markdown table of the validation (and, after `dnc train`, test) metrics."""
    n_val = f"{run.data['n_val']:,} validation rows"
    rows = [("objective", f"{trial.objective:+.4f} (f_p {trial.f_p:.4g}, f_c {trial.f_c:.4g})", "search")]
    if run.classification:
        rows.insert(0, ("validation accuracy", f"{trial.val_accuracy:.4f}{run.rows_right(trial)}", n_val))
    else:
        rows.insert(0, ("validation MSE (target units²)", f"{trial.val_loss:.4g}", n_val))
    final = run.final
    if final:
        for key, value in final_metrics(final).items():
            rows.append((key, f"{value:.4g}", f"{final.get('n_test', '?'):,} test rows, final model"))
    lines = ["| metric | value | measured on |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]
    if not final:
        lines += [
            "",
            f"Not tested yet: the search never looks at the test split. `dnc train {run.run_dir}` retrains this "
            f"config on the training and validation data and measures it once on the {run.data['n_test']:,} test rows.",
        ]
    return lines


def final_metrics(final: dict[str, Any]) -> dict[str, float]:
    """The test metrics of final.json: its numeric keys that start with `test`."""
    return {
        k: float(v)
        for k, v in final.items()
        if k.startswith("test") and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def describe_cost(run: RunSnapshot) -> str:
    """What the search spent (`search_cost.describe`)."""
    statuses: dict[str, int] = {}
    for trial in run.trials:
        statuses[trial.status] = statuses.get(trial.status, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    return (
        f"{len(run.trials)} trials ({counts}) of up to {run.settings['epochs']} epochs each, method "
        f"{describe_method(run.settings)}, pruning {run.settings.get('prune', 'none')}: "
        f"{search_cost.describe(run.search_cost)}."
    )


def describe_method(settings: dict[str, Any]) -> str:
    """The method, and for a transfer run where its configs came from."""
    if settings["method"] != TRANSFER:
        return str(settings["method"])
    return f"transfer of {len(settings['transfer_configs'])} configs from {settings['transfer_from']}"


def reproduce(run: RunSnapshot) -> list[str]:
    """The `dnc search` command that runs this search again (from the stored settings), and its space file;
    for a transfer run, the `dnc transfer` command."""
    settings = run.settings
    if settings["method"] == TRANSFER:
        return _reproduce_transfer(run)
    command = ["dnc", "search", "--data", str(settings.get("data_source", run.data["name"]))]
    extension = int(settings.get("extra_training_steps") or 0)
    names = [f.name for f in fields(SearchSettings) if f.name not in NOT_OPTIONS]
    command += _options(settings, [n for n in names if not (n == "max_trials" and extension)])  # (extension below)
    command = _as_proxy(command, settings)
    warm_runs = list(dict.fromkeys(c["source_run"] for c in settings.get("warm_configs") or []))
    if warm_runs:
        command += ["--warm-start", *warm_runs]
    overrides = space_overrides(settings)
    if overrides:
        command += ["--space", "space.yaml"]
    out = f"{run.run_dir}-again"
    lines = ["```", shlex.join([*command, "--out", out])]
    if extension:
        lines.append(shlex.join(["dnc", "resume", out, "--max-trials", str(settings["max_trials"])]))
    lines.append("```")
    if overrides:
        lines += [
            "",
            "with `space.yaml`:",
            "",
            "```yaml",
            yaml.safe_dump(overrides, sort_keys=False, default_flow_style=None).strip(),
            "```",
        ]
    if settings.get("data_source") == "arrays":
        lines += [
            "",
            "The search ran on in-memory arrays: give the same arrays, `deepncheap.search(data=(X, y), ...)`.",
        ]
    lines += [
        "",
        "On a CPU with `--penalty params` (or time ranked by the cost model) the search repeats exactly; with "
        "measured time per epoch, timing noise can change which trials win.",
    ]
    return lines


def _reproduce_transfer(run: RunSnapshot) -> list[str]:
    """The `dnc transfer` command that trains the source's configs on these data again (the source's best may
    have changed since, if its search went on)."""
    settings = run.settings
    command = ["dnc", "transfer", settings["transfer_from"], "--data", str(settings.get("data_source"))]
    command += ["--top", str(len(settings["transfer_configs"]))]
    command += _options(settings, ["epochs", *DATA_OPTIONS])
    lines = ["```", shlex.join([*command, "--out", f"{run.run_dir}-again"]), "```"]
    if settings.get("data_source") == "arrays":
        lines += [
            "",
            "The transfer ran on in-memory arrays: give the same arrays, `deepncheap.transfer(RUN, data=(X, y))`.",
        ]
    return lines


def _as_proxy(command: list[str], settings: dict[str, Any]) -> list[str]:
    """A proxy search's command as given (`proxy.py`): --proxy F --transfer-top K in place of --subset F, and
    --proxy-epochs E --epochs N when its transfer trains N epochs."""
    if not settings.get("transfer_top"):
        return command
    renamed = {"--subset": "--proxy"} | ({"--epochs": "--proxy-epochs"} if settings.get("transfer_epochs") else {})
    command = [renamed.get(word, word) for word in command] + ["--transfer-top", str(settings["transfer_top"])]
    return command + (["--epochs", str(settings["transfer_epochs"])] if settings.get("transfer_epochs") else [])


def _options(settings: dict[str, Any], names: list[str]) -> list[str]:
    """The command-line options that give the stored settings `names` (those at their default left out,
    but for ALWAYS_GIVEN; lists, stored for tuples, comma-separated)."""
    defaults = {f.name: f.default for f in fields(SearchSettings)}
    options = []
    for name in names:
        value, default = settings.get(name), defaults[name]
        at_default = value == (list(default) if isinstance(default, tuple) else default)
        if value is None or (at_default and name not in ALWAYS_GIVEN):
            continue
        options += [f"--{name.replace('_', '-')}", ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return options


def space_overrides(settings: dict[str, Any]) -> dict[str, Any]:
    """The stored space's values that differ from the network's default space (what `--space` gave)."""
    stored = dict(settings["space"])
    default, _ = SearchSpace.create(stored["network"]).bounded_by_training_set(int(settings["data"]["n_train"]))
    return {k: v for k, v in stored.items() if default.to_dict().get(k) != v}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _plural_list(numbers: list[int]) -> str:
    return f" {numbers[0]}" if len(numbers) == 1 else f"s {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"


def _layers(numbers: list[int], depth: int) -> str:
    """Consecutive layer numbers in words: 'every layer', 'layer 5', 'layers 2–5'."""
    if numbers == list(range(1, depth + 1)):
        return "every layer"
    return f"layer {numbers[0]}" if len(numbers) == 1 else f"layers {numbers[0]}–{numbers[-1]}"
