"""`dnc export`: a run's model, with its preprocessing inside, as one ONNX or TorchScript file.

The file holds `inference.RawInputModel`, so it takes raw float32 inputs `(N, *input_shape)` (any batch
size N) and gives class probabilities `(N, K)` or regression predictions `(N, 1)` in the targets' units,
with nothing of deepncheap needed to run it. What maps its outputs to labels (task, class names, input
shape, the trial) goes inside it: ONNX `metadata_props`, or the TorchScript extra file `deepncheap.json`.
ONNX export needs the `export` extra (onnx, onnxscript; onnxruntime to run the file).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from deepncheap.artifacts import SearchResult, load_run, weights_trial_id, write_output
from deepncheap.errors import SettingsError
from deepncheap.inference import RawInputModel
from deepncheap.preprocessing import Preprocessing
from deepncheap.store import RunStore

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
EXPORT_DIR = "export"  # default place: RUN/export/best_model.onnx, RUN/export/final_model.pt, ...
METADATA_FILE = "deepncheap.json"  # the TorchScript extra file holding the metadata
EXAMPLE_BATCH = 2  # the example's batch size (not 1: the exporter would take a size of 1 for a constant)


def export_run(
    run_dir: str | Path,
    *,
    format: str = "onnx",
    out: str | Path | None = None,
    final: bool = False,
    trial_id: int | None = None,
    verbose: bool = False,
) -> Path:
    """Write the run's best model (or trial `trial_id`'s, which must be the best; or with `final` the model
    `dnc train` wrote) as a `format` file at `out` (default: RUN/export/best_model.onnx, .pt for
    torchscript, final_model.* with `final`) and return its path. `verbose` shows the exporter's output."""
    if format not in FORMATS:
        raise SettingsError(f"unknown export format '{format}'; use one of: {', '.join(FORMATS)}")
    if final and trial_id is not None:
        raise SettingsError("give --trial or --final, not both; the final model is trained from one trial")
    if format == "onnx":
        _require_onnx()
    run_dir = Path(run_dir)
    result = load_run(run_dir, final=True) if final else _best_model(run_dir, trial_id)
    preprocessing = result._preprocessing()
    model = RawInputModel(result.model, preprocessing).eval()
    metadata = model_metadata(preprocessing, trial_id=result.trial_id, final=final)
    example = torch.zeros(EXAMPLE_BATCH, *preprocessing.input_shape)
    with _exporter_output(verbose):
        data = _onnx(model, example, metadata, verbose) if format == "onnx" else _torchscript(model, example, metadata)
    default = run_dir / EXPORT_DIR / f"{'final' if final else 'best'}_model{SUFFIXES[format]}"
    path = Path(out).expanduser() if out is not None else default
    write_output(path, data)
    return path


def _best_model(run_dir: Path, trial_id: int | None) -> SearchResult:
    """The run's best model; `trial_id` must name the trial whose weights the run keeps (the best one)."""
    result = load_run(run_dir)
    kept = weights_trial_id(run_dir) or result.trial_id  # (weights of old runs are untagged: the best trial's)
    if trial_id is None or trial_id == kept:
        return result
    with RunStore.open(run_dir) as store:
        ids = [t.trial_id for t in store.trials()]
    if trial_id not in ids:
        raise SettingsError(f"{run_dir} has no trial {trial_id}; its trials are {min(ids)}..{max(ids)}")
    raise SettingsError(
        f"trial {trial_id}'s weights are not kept (a run keeps only its best trial's, #{kept}); "
        f"train it with 'dnc train {run_dir} --trial {trial_id}', then export with --final"
    )


def model_metadata(preprocessing: Preprocessing, *, trial_id: int, final: bool) -> dict[str, Any]:
    """What a user needs to read the file's outputs: task, class names (the columns of the probabilities),
    the sample shape, the input and output names, the trial."""
    classification = preprocessing.task == "classification"
    return {
        "task": preprocessing.task,
        "classes": list(preprocessing.classes),
        "input_shape": list(preprocessing.input_shape),
        "input": "input",
        "output": "probabilities" if classification else "predictions",
        "model": "final" if final else "best",
        "trial_id": trial_id,
    }


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise SettingsError(
            "--format onnx needs onnx and onnxscript; install them with: pip install 'deepncheap[export]'"
        ) from None


def _onnx(model: RawInputModel, example: torch.Tensor, metadata: dict[str, Any], verbose: bool) -> bytes:
    """The ONNX file of `model` with a dynamic batch axis, by the torch.export-based exporter; the metadata
    in `metadata_props` (strings: lists as JSON text)."""
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=["input"],
        output_names=[metadata["output"]],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=verbose,
    )
    assert program is not None  # (None only when given a file to write)
    proto = program.model_proto
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    data: bytes = proto.SerializeToString()
    return data


def _torchscript(model: RawInputModel, example: torch.Tensor, metadata: dict[str, Any]) -> bytes:
    """The TorchScript file of `model`, traced (the networks have no data-dependent control flow, so any
    batch size runs); the metadata as the extra file `deepncheap.json`."""
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={METADATA_FILE: json.dumps(metadata)})
    return buffer.getvalue()


@contextlib.contextmanager
def _exporter_output(verbose: bool) -> Iterator[None]:
    """Hide the exporters' warnings and log lines (deprecations, skipped torchvision ops) unless `verbose`."""
    if verbose:
        yield
        return
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
