"""Helpers shared by the test modules: what a run's store holds, read back."""

import csv
import json

from deepncheap.store import RunStore


def stored_trials(run):
    """Every trial row of the run's store."""
    with RunStore.open(run) as store:
        return store.trials()


def signature(trials):
    """What a search found, trial by trial (stage, index, config, objective), without timings."""
    return sorted(
        (t.stage, t.stage_index, json.dumps(t.config, sort_keys=True), round(t.objective, 12))
        for t in trials
        if t.status == "complete"
    )


def write_csv(path, x, y=None, *, target=None):
    """A CSV of features f0, f1, ... (and the `target` column holding `y`), values written exactly; returns
    `path`."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"f{i}" for i in range(x.shape[1])] + ([] if y is None else [target]))
        labels = [] if y is None else y.tolist()
        writer.writerows(row + labels[i : i + 1] for i, row in enumerate(x.tolist()))
    return path


def write_final_model(run):
    """RUN/final/ as `dnc train` leaves it (model.safetensors, final.json), holding the best trial's config
    with its weights halved: a model that predicts differently from the best trial's."""
    from safetensors.torch import load_file, save_file

    best = json.loads((run / "best.json").read_text())
    (run / "final").mkdir()
    weights = {name: tensor * 0.5 for name, tensor in load_file(run / "best_model.safetensors").items()}
    save_file(weights, run / "final" / "model.safetensors")
    (run / "final" / "final.json").write_text(json.dumps({"trial_id": best["trial_id"], "config": best["config"]}))


def instant_trial(config, data, *, input_shape, num_outputs, epochs, seed, on_epoch=None, augment=False):
    """A stand-in for `trial.run_trial` that trains nothing: the config's model as built, a validation
    accuracy drawn from the seed, 0.1 s epochs (to monkeypatch where only the search's bookkeeping matters)."""
    import random

    from deepncheap.models import build_model
    from deepncheap.train import TrainResult
    from deepncheap.trial import TrialMeasurements

    model = build_model(config, input_shape, num_outputs)
    accuracy = random.Random(seed).uniform(0.8, 0.99)
    result = TrainResult(model, [accuracy] * epochs, 0, accuracy, 0.3, [0.1] * epochs)
    return TrialMeasurements(sum(p.numel() for p in model.parameters()), 1000, result, 0.1)


def kill_once_a_trial_is_stored(command, run, *, timeout=180):
    """Run `command` (a `dnc` subprocess, one torch thread) and SIGKILL it once the store in `run` holds a
    complete trial; fails when the process ends first or the deadline passes."""
    import contextlib
    import os
    import signal
    import subprocess
    import time

    from deepncheap.store import IncompleteStore

    env = dict(os.environ, OMP_NUM_THREADS="1")  # (one thread per trial: quicker on a busy machine; kept on resume)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + timeout
        stored = []
        while time.time() < deadline and process.poll() is None and not stored:
            with contextlib.suppress(FileNotFoundError, IncompleteStore), RunStore.open(run) as store:
                stored = store.trials(status="complete")  # (the store may not be created yet, or be in creation)
            time.sleep(0.02)
        assert stored and process.poll() is None, process.stderr.read()
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
        process.stderr.close()
