"""The run's files besides the store (best.json, trials.csv, the best model's weights), and reading a run
back as a `SearchResult`.

The files are live: the driver rewrites trials.csv after every trial, and the weights then best.json
whenever the best trial changes, so they always hold the search so far. Each file is written to a
temporary name and renamed, so a reader never sees half a file. Weights are safetensors (loading them runs
no code).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from deepncheap import inference, search_cost
from deepncheap.constraints import Constraints
from deepncheap.errors import OutputError
from deepncheap.models import build_model
from deepncheap.preprocessing import Preprocessing
from deepncheap.rundir import check_run, holder_pid
from deepncheap.store import METRIC_COLUMNS, RunStore, Trial
from deepncheap.tradeoff import ParetoRow, pareto_front

BEST_JSON = "best.json"
TRIALS_CSV = "trials.csv"
WEIGHTS = "best_model.safetensors"
FINAL_DIR = "final"  # `dnc train`'s outputs: the final model's weights and final.json
FINAL_JSON = "final.json"
FINAL_WEIGHTS = "model.safetensors"
TRIALS_CSV_COLUMNS = (
    "trial_id",
    "stage",
    "status",
    *(c for c in METRIC_COLUMNS if c not in ("epochs", "time_noise", "modelled_epoch_s", "latency_ms")),
    "wall_s",
    "config",
    "reason",  # why a trial was pruned (its objective then holds its bound or its objective when stopped)
    "latency_ms",  # measured before training (latency penalty or constraint)
    "violation",  # the constraint a trained trial was found to violate (it is never the best)
)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes files private; run outputs are ordinary files
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def weights_bytes(model: nn.Module, *, trial_id: int) -> bytes:
    """The model's state dict as safetensors, tagged with the trial it comes from."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return safetensors_bytes(state, metadata={"trial_id": str(trial_id)})


def save_weights(model: nn.Module, run_dir: Path, *, trial_id: int) -> Path:
    """Save the model's weights in `run_dir` (`weights_bytes`)."""
    path = Path(run_dir) / WEIGHTS
    write_atomic(path, weights_bytes(model, trial_id=trial_id))
    return path


def weights_trial_id(run_dir: Path) -> int | None:
    """The trial whose weights `run_dir` holds (None when there are none)."""
    path = Path(run_dir) / WEIGHTS
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        trial_id = (handle.metadata() or {}).get("trial_id", "")
    return int(trial_id) if trial_id.isdigit() else None


def best_record(store: RunStore, trial: Trial) -> dict[str, Any]:
    """The content of best.json for `trial`: its complete config, metrics, the search's settings and
    baselines, what the search cost so far (`search_cost.summarize`) and, with constraints, their limits
    and the trial's margins (limit minus its value)."""
    settings = store.settings
    metrics: dict[str, Any] = {"objective": trial.objective}
    if settings["data"]["task"] == "classification":
        metrics["val_accuracy"] = trial.val_accuracy
    else:
        metrics["val_loss"] = trial.val_loss
    metrics.update(
        f_p=trial.f_p,
        f_c=trial.f_c,
        n_params=trial.n_params,
        flops=trial.flops,
        time_per_epoch_s=trial.time_per_epoch_s,
        epochs=trial.epochs,
    )
    if trial.latency_ms is not None:
        metrics["latency_ms"] = trial.latency_ms
    record = {
        "trial_id": trial.trial_id,
        "stage": trial.stage,
        "config": trial.config,
        "metrics": metrics,
        "settings": settings,
        "baselines": store.get("baselines", {}),
        "search_cost": search_cost.summarize(store),
    }
    constraints = Constraints.of(settings)
    if constraints:  # the limits, and how far below each the best trial is
        record["constraints"] = constraints.to_dict() | {"margins": constraints.margins(metrics)}
    return record


def write_best_json(store: RunStore, trial: Trial, run_dir: Path) -> Path:
    path = Path(run_dir) / BEST_JSON
    write_atomic(path, (json.dumps(best_record(store, trial), indent=2) + "\n").encode())
    return path


def write_trials_csv(store: RunStore, run_dir: Path) -> Path:
    """One row per trial, columns TRIALS_CSV_COLUMNS (config as a JSON string)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(TRIALS_CSV_COLUMNS)
    for trial in store.trials():
        row = {name: getattr(trial, name) for name in TRIALS_CSV_COLUMNS if name != "config"}
        row["config"] = json.dumps(trial.config, sort_keys=True)
        writer.writerow(["" if row[c] is None else row[c] for c in TRIALS_CSV_COLUMNS])
    path = Path(run_dir) / TRIALS_CSV
    write_atomic(path, buffer.getvalue().encode())
    return path


@dataclass
class SearchResult:
    """The outcome of a search: the best complete config, its metrics, its trained model, where it lives."""

    run_dir: Path
    trial_id: int
    stage: str
    best_config: dict[str, Any]
    metrics: dict[str, Any]
    model: nn.Module
    settings: dict[str, Any]
    baselines: dict[str, Any]
    state: str
    reason: str | None = None
    preprocessing: Preprocessing | None = None  # (None in runs made before deepncheap stored it)
    final: dict[str, Any] | None = None  # final.json when `model` is the final model (`dnc train`)

    @property
    def finished(self) -> bool:
        """False when the search is still running or stopped early (a budget, Ctrl-C, a kill);
        `deepncheap.resume` continues a stopped one."""
        return self.state == "finished"

    def predict(self, x: Any) -> np.ndarray:
        """Predictions for raw inputs `x` (as given to the search): class labels, or regression targets in
        their own units."""
        return inference.predict(self.model, self._preprocessing(), x)

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities for raw inputs `x`, columns in the order of `classes`."""
        return inference.predict_proba(self.model, self._preprocessing(), x)

    def pareto(self, *, cost: str = "f_c") -> list[ParetoRow]:
        """The accuracy-vs-cost Pareto front of the run's complete trials, read from its store (nothing is
        trained again): f_p against `cost` (`f_c`, `n_params`, `flops` or `time_per_epoch_s`), cheapest first."""
        with RunStore.open(self.run_dir) as store:
            trials = store.trials(status="complete")
        return [ParetoRow.of(t) for t in pareto_front(trials, cost=cost)]

    @property
    def classes(self) -> tuple[str, ...]:
        return self._preprocessing().classes

    def _preprocessing(self) -> Preprocessing:
        if self.preprocessing is None:
            raise OutputError(
                f"{self.run_dir} was made by a deepncheap that did not store its preprocessing; "
                f"run 'dnc resume {self.run_dir}' once (it adds it) or search again"
            )
        return self.preprocessing


def run_state(run_dir: Path, store: RunStore) -> dict[str, Any]:
    """Where a run stands: its recorded state, except `running` while a process drives it and `killed` when
    it is recorded running but no process drives it (its driver died without recording an end)."""
    state = store.state
    holder = holder_pid(run_dir)
    if holder == os.getpid():  # (this process drives it: the recorded state is right)
        return state
    if holder is not None:
        return state | {"state": "running"}
    if state["state"] == "running":
        return state | {"state": "killed", "reason": "its process ended without recording a stop"}
    return state


def load_run(run_dir: str | Path, *, final: bool = False) -> SearchResult:
    """The result of a run so far: best.json (the best trial so far, while the search runs too), the best
    model rebuilt with its saved weights, and where the run stands (`run_state`). With `final`, the model
    is the final model `dnc train` wrote (`RUN/final/`) and `final` holds its final.json."""
    run_dir = Path(run_dir)
    check_run(run_dir)
    path = run_dir / BEST_JSON
    with RunStore.open(run_dir) as store:
        state = run_state(run_dir, store)
        stored_preprocessing = store.get("preprocessing")
    if not path.is_file():
        raise OutputError(
            f"{run_dir} has no complete trial yet (the search is {state['state']}); wait for one, or resume the search"
        )
    final_record = read_final(run_dir) if final else None
    weights = run_dir / FINAL_DIR / FINAL_WEIGHTS if final_record else run_dir / WEIGHTS
    if not weights.is_file():
        raise OutputError(
            f"{run_dir} has no {WEIGHTS} (its best model's weights); retrain the best config with "
            f"'dnc train {run_dir}' and use the final model, or search again"
        )
    record, state_dict = _best_and_its_weights(run_dir, final_weights=weights if final_record else None)
    config = final_record["config"] if final_record else record["config"]
    return SearchResult(
        run_dir=run_dir,
        trial_id=final_record["trial_id"] if final_record else record["trial_id"],
        stage=record["stage"],
        best_config=config,
        metrics=record["metrics"],
        model=rebuild_model(config, record["settings"]["data"], state_dict),
        settings=record["settings"],
        baselines=record["baselines"],
        state=state["state"],
        reason=state["reason"],
        preprocessing=None if stored_preprocessing is None else Preprocessing.from_dict(stored_preprocessing),
        final=final_record,
    )


def _best_and_its_weights(
    run_dir: Path, *, final_weights: Path | None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """best.json and the weights of the trial it names (or `final_weights`). A running search saves a new
    best's weights, then its best.json: a reader that comes in between waits for the second file."""
    for _ in range(40):
        record: dict[str, Any] = json.loads((run_dir / BEST_JSON).read_text())
        if final_weights is not None:
            return record, load_file(final_weights)
        tagged = weights_trial_id(run_dir)
        state_dict = load_file(run_dir / WEIGHTS)
        if tagged == record["trial_id"] == weights_trial_id(run_dir):
            return record, state_dict
        time.sleep(0.05)
    raise OutputError(
        f"the best model's weights in {run_dir} belong to trial #{tagged}, not to best.json's #{record['trial_id']} "
        f"(its search died while saving a new best); repair it with 'dnc resume {run_dir}'"
    )


def rebuild_model(config: dict[str, Any], data: dict[str, Any], state: dict[str, torch.Tensor]) -> nn.Module:
    """The network of `config` for the run's data summary, holding `state`, in eval mode. Built on the meta
    device, then given the tensors: no random initialization, so loading draws nothing from torch's
    process-wide generator (a search in another thread may be training)."""
    with torch.device("meta"):
        model = build_model(config, tuple(data["input_shape"]), int(data["num_outputs"]))
    model.load_state_dict(state, assign=True)
    return model.eval()


def read_final(run_dir: Path) -> dict[str, Any]:
    """RUN/final/final.json, or a clear error when `dnc train` has not written it."""
    path = Path(run_dir) / FINAL_DIR / FINAL_JSON
    if not path.is_file() or not (path.parent / FINAL_WEIGHTS).is_file():
        raise OutputError(f"{run_dir} has no final model yet; train it first with: dnc train {run_dir}")
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def write_output(path: Path, data: bytes) -> None:
    """`write_atomic` to a file the user named (its folder made when missing), with an OutputError naming
    the path when it cannot be written: nothing is left half-written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    except OSError as exc:
        reason = f"{path.parent} is a file" if path.parent.is_file() else exc.strerror or str(exc)
        raise OutputError(f"cannot write {path} ({reason}); choose a writable --out") from None
