"""Helpers shared by the test modules: what a run's store holds, read back."""

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
