"""The trial runner: keeps the executor's slots busy with what the method proposes, and records every
trial. It knows no method: it asks `method(context, history, free_slots)` with the history read from the
store, starts the proposals (a `running` row, then the executor), takes the outcomes in any order, scores
and records them, keeps the best trial's weights and the run's files up to date after every trial, and
enforces the budgets (`--max-trials`, `--time-budget`) and stop requests.

The pruner (`pruning.py`) decides in the driver: a proposal whose cost alone rules it out is recorded
`pruned` without training; per-epoch reports of running trials come in through `on_epoch` (every executor
streams them while the trial runs), are stored, and the pruner may answer "stop this trial": the executor
passes that on, the trial ends early and is recorded `pruned` with the reason (a worker that ends the trial
before the answer arrives records it complete). The seconds the slots spend are accounted for
(`search_cost.py`). Trials interrupted by a previous
driver are run again (same stage, index and config) before anything new; a trial whose worker died is run
again once, then recorded `failed`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deepncheap import artifacts, timing
from deepncheap.constraints import Constraints
from deepncheap.errors import SearchFailedError
from deepncheap.executors import Executor
from deepncheap.history import History
from deepncheap.methods import Method, MethodContext, Proposal
from deepncheap.objective import KnownCost, Scorer
from deepncheap.progress import SearchProgress
from deepncheap.pruning import BOUND_REASON, TIME_SLACK, Pruner, Verdict
from deepncheap.search_cost import SlotClock
from deepncheap.store import EpochRecord, RunStore, Trial, best_of
from deepncheap.train import EpochReport
from deepncheap.trial import TrialMeasurements, TrialOutcome, TrialTask, trial_seed

log = logging.getLogger("deepncheap")


class BudgetReached(Exception):
    """`--max-trials` trainings have run, or `--time-budget` is spent; the message names which."""


@dataclass
class _Running:
    """A trial handed to the executor."""

    task: TrialTask
    stage: str
    started: float
    cost: KnownCost | None = None  # what it costs, when found before training
    epochs: list[EpochReport] = field(default_factory=list)
    losses: int = 0  # how often its worker died under it
    verdict: Verdict | None = None  # set when the pruner stopped it


@dataclass
class Runner:
    """Runs a method's trials on an executor until the method is done, a budget is reached (BudgetReached)
    or a stop is requested (KeyboardInterrupt, once the running trials are recorded)."""

    store: RunStore
    executor: Executor
    context: MethodContext
    scorer: Scorer
    run_dir: Path
    progress: SearchProgress
    stop: threading.Event
    clock: SlotClock
    deadline: float | None = None  # time.monotonic() after which no trial starts
    pruner: Pruner | None = None
    constraints: Constraints = field(default_factory=Constraints)
    costs: Callable[[dict[str, Any]], KnownCost] | None = None  # a config's cost before training (memoized)
    augment: bool = False  # trials augment their training batches (`train.augment_batch`)
    running: dict[int, _Running] = field(default_factory=dict)
    best: Trial | None = None

    def __post_init__(self) -> None:
        self.best = self.store.best_trial()

    def run(self, method: Method) -> None:
        """Drive `method` to its end; raises BudgetReached or KeyboardInterrupt when stopped before."""
        while True:
            if self.stop.is_set():
                self._finish_running()
                raise KeyboardInterrupt
            history = History.of(self.store.trials())
            free = self.executor.slots - len(self.running)
            budget = self._budget_left(history)
            if not self._out_of_time():
                for trial in history.interrupted()[:free]:  # trials a previous driver left running
                    self._start(Proposal(trial.config, trial.stage, trial.stage_index))
                    free -= 1
            with self.clock.proposing():
                proposals = method(self.context, history, min(free, budget) if budget is not None else free)
            if proposals is None and not self.running:
                return
            if proposals and (budget is None or budget > 0):
                for proposal in proposals[:free]:
                    self._start(proposal)
            elif not self.running:
                if proposals is None:
                    return
                assert budget is not None and budget <= 0, "the method waits for trials, but none is running"
                raise BudgetReached(self._budget_name())
            if self.running:  # (else every proposal was pruned before training: ask again)
                self._record(self._next_outcome())

    def _out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _budget_left(self, history: History) -> int | None:
        """Trials that may still start (None: no limit); 0 once a budget is reached."""
        if self._out_of_time():
            return 0
        budget = self.context.settings.trial_budget
        return None if budget is None else max(0, budget - history.trainings)

    def _budget_name(self) -> str:
        if self._out_of_time():
            return "--time-budget"
        return f"--max-trials {self.context.settings.trial_budget}"

    def _start(self, proposal: Proposal) -> None:
        """Start a proposed trial, or record it pruned when it violates an exact constraint (methods propose
        none such: this is the last line of defence) or its cost alone rules it out."""
        for note in proposal.notes:
            self.progress.note(note)
            if "advanced stage" not in note:
                self.store.log(note)
        started = time.perf_counter()
        cost = self._cost_before_training(proposal.config)
        violations = self.context.violations(proposal.config) if self.context.violations else []
        if violations:
            assert cost is not None
            bound = self.scorer.bound(cost.f_c) if cost.f_c is not None else None
            verdict: Verdict | None = Verdict("; ".join(violations), bound, violation=True)
        elif cost is not None and self.pruner is not None and self.scorer.cost_known_before_training:
            verdict = self.pruner.before_training(cost.f_c, self.best.objective if self.best is not None else None)
        else:
            verdict = None
        if verdict is not None:
            assert cost is not None
            self._record_unstarted(proposal, verdict, cost, time.perf_counter() - started)
            return
        trial_id = self.store.start_trial(
            stage=proposal.stage,
            stage_index=proposal.index,
            config=proposal.config,
            concurrent=len(self.running) + 1,
            threads=self.executor.threads,
        )
        epochs = self.context.settings.epochs
        seed = trial_seed(self.context.settings.seed, proposal.stage, proposal.index)
        task = TrialTask(trial_id, proposal.config, seed, epochs, self.augment)
        self.progress.trial_started(
            trial_id, stage=proposal.stage, index=proposal.index, config=proposal.config, epochs=epochs
        )
        self.running[trial_id] = _Running(task, proposal.stage, started, cost=cost)
        self.executor.submit(task)

    def _cost_before_training(self, config: dict[str, Any]) -> KnownCost | None:
        """What `config` costs, when the run needs it before training: for its latency, its constraints or
        the cost bound."""
        pruning = self.pruner is not None and self.pruner.active and self.scorer.cost_known_before_training
        if self.costs is None or not (pruning or self.scorer.latency is not None or self.context.violations):
            return None
        return self.costs(config)

    def _record_unstarted(self, proposal: Proposal, verdict: Verdict, cost: KnownCost, wall_s: float) -> None:
        """A proposal the cost bound (or a constraint) rules out: a `pruned` row with its bound as objective,
        never trained."""
        trial_id = self.store.start_trial(
            stage=proposal.stage, stage_index=proposal.index, config=proposal.config, concurrent=len(self.running)
        )
        self.progress.trial_started(
            trial_id, stage=proposal.stage, index=proposal.index, config=proposal.config, epochs=0
        )
        metrics = {
            "objective": verdict.objective,
            "f_c": cost.f_c,
            "n_params": cost.n_params,
            "flops": cost.flops,
            "epochs": 0,
            "modelled_epoch_s": cost.modelled_epoch_s,
            "latency_ms": cost.latency_ms,
        }
        self.store.finish_trial(
            trial_id,
            status="pruned",
            metrics=metrics,
            wall_s=wall_s,
            reason=verdict.reason,
            violation=verdict.reason if verdict.violation else None,
        )
        self._trial_recorded(self.store.trial(trial_id))

    def on_epoch(self, trial_id: int, report: EpochReport) -> bool:
        """A running trial's epoch report: store it; True when the pruner stops the trial here."""
        running = self.running.get(trial_id)
        if running is None:  # a baseline measurement or a retraining
            return False
        running.epochs.append(report)
        self.progress.trial_epoch(
            trial_id,
            epoch=report.epoch,
            val_score=report.val_score,
            val_loss=report.val_loss,
            epoch_time_s=report.epoch_time_s,
        )
        self.store.add_epoch(
            EpochRecord(trial_id, report.epoch, report.val_score, report.val_loss, report.epoch_time_s)
        )
        if running.verdict is not None:
            return True
        f_c = running.cost.f_c if running.cost is not None else None
        running.verdict = self._epoch_time_violation(running.epochs, f_c)
        if running.verdict is None and self.pruner is not None:
            running.verdict = self.pruner.at_epoch(
                stage=running.stage,
                f_c=f_c,
                reports=running.epochs,
                incumbent=self.best.objective if self.best is not None else None,
                peers=self._peer_epochs,
            )
        return running.verdict is not None

    def _epoch_time_violation(self, reports: list[EpochReport], f_c: float | None) -> Verdict | None:
        """Stop a trial whose timed epochs show it violates `--max-epoch-time` (its fastest timed epoch
        beyond the limit by more than the timing slack), with its objective so far."""
        limit = self.constraints.max_epoch_time
        if limit is None or len(reports) < 2:
            return None
        times = [r.epoch_time_s for r in reports]
        fastest = timing.epoch_time(times)[0]
        if fastest * (1 - TIME_SLACK) <= limit:
            return None
        scores = [r.val_score for r in reports]
        objective = self.scorer.partial(scores, times, f_c) if all(math.isfinite(v) for v in scores) else None
        (text,) = self.constraints.violations(epoch_time_s=fastest)
        return Verdict(text, objective, violation=True)

    def _peer_epochs(self, stage: str) -> list[tuple[Trial, list[EpochRecord]]]:
        """The finished trials of `stage` that trained, with their epochs (the pruner's comparison)."""
        history = History.of(self.store.trials())
        peers = [t for t in history.finished(stage) if t.epochs]
        records = self.store.epochs([t.trial_id for t in peers])
        return [(t, [r for r in records if r.trial_id == t.trial_id]) for t in peers]

    def _next_outcome(self) -> TrialOutcome:
        """The next outcome of a running trial; a trial whose worker died is run again once (while stopping,
        it is interrupted: a worker still starting up dies of the stop signal before it can handle it)."""
        while True:
            outcome = self.executor.next_outcome(self.on_epoch)
            running = self.running[outcome.trial_id]
            if outcome.status == "lost" and self.stop.is_set():
                return replace(outcome, status="interrupted")
            if outcome.status != "lost" or running.losses > 0:
                return outcome
            running.losses += 1
            running.epochs.clear()
            running.verdict = None
            self.progress.note(f"trial #{outcome.trial_id}: {outcome.error}; running it again")
            self.executor.submit(running.task)

    def _finish_running(self) -> None:
        """Let the running trials end (a stop request ends them at their next epoch end) and record them."""
        while self.running:
            self._record(self._next_outcome())

    def abandon_running(self) -> None:
        """Record the trials still running as `interrupted` (the search stops at once; they run again on resume)."""
        for trial_id, running in self.running.items():
            self.store.finish_trial(trial_id, status="interrupted", wall_s=time.perf_counter() - running.started)
            self.progress.trial_interrupted(trial_id, running.stage)
        self.running.clear()

    def _record(self, outcome: TrialOutcome) -> None:
        """Record `outcome` in the store (scored when it trained), keep the best trial's weights, rewrite
        the run's files; an interrupted trial stops the search (the other running trials end too)."""
        running = self.running.pop(outcome.trial_id)
        wall_s = time.perf_counter() - running.started
        trial_id, device = outcome.trial_id, outcome.device
        if outcome.status == "interrupted":
            self.store.finish_trial(trial_id, status="interrupted", wall_s=wall_s, device=device)
            self.progress.trial_interrupted(trial_id, running.stage)
            self.stop.set()
            return
        if outcome.measured is None:
            error = outcome.error if outcome.status == "failed" else f"{outcome.error}, twice"
            self._fail(trial_id, wall_s, error, outcome.traceback, device)
        else:
            try:
                metrics = self.scorer.score(outcome.measured, running.cost)
            except Exception as exc:  # e.g. a NaN validation loss
                self._fail(trial_id, wall_s, f"cannot score the trial: {exc}", None, device)
            else:
                verdict = running.verdict
                pruned = outcome.status == "stopped" and verdict is not None
                if pruned and verdict.reason == BOUND_REASON:  # type: ignore[union-attr]
                    metrics["objective"] = verdict.objective  # type: ignore[union-attr]
                violation = self.constraints.violations(epoch_time_s=metrics["time_per_epoch_s"])
                self.store.finish_trial(
                    trial_id,
                    status="pruned" if pruned else "complete",
                    metrics=metrics,
                    val_curve=outcome.measured.training.val_curve,
                    wall_s=wall_s,
                    device=device,
                    reason=verdict.reason if pruned else None,  # type: ignore[union-attr]
                    violation="; ".join(violation) or None,
                )
                self._keep_if_best(self.store.trial(trial_id), outcome.measured)
        self._trial_recorded(self.store.trial(trial_id))

    def _trial_recorded(self, trial: Trial) -> None:
        """After each recorded trial: trials.csv, the slots' accounts, the progress display."""
        artifacts.write_trials_csv(self.store, self.run_dir)
        self.clock.save(self.store)
        self.progress.trial_finished(trial, self.best)

    def _fail(self, trial_id: int, wall_s: float, error: str | None, traceback: str | None, device: str | None) -> None:
        self.store.finish_trial(
            trial_id, status="failed", wall_s=wall_s, error=error, traceback=traceback, device=device
        )
        if traceback:
            log.debug("trial #%d failed:\n%s", trial_id, traceback)

    def _keep_if_best(self, trial: Trial, measured: TrialMeasurements) -> None:
        """Save the weights and best.json when `trial` is the new best (`store.best_of`'s rule)."""
        if best_of([t for t in (self.best, trial) if t is not None]) is trial:
            self.best = trial
            artifacts.save_weights(measured.model, self.run_dir, trial_id=trial.trial_id)
            artifacts.write_best_json(self.store, trial, self.run_dir)

    def train_again(self, trial: Trial) -> TrialMeasurements:
        """Train a recorded trial again with its seed (nothing else may be running): its weights."""
        seed = trial_seed(self.context.settings.seed, trial.stage, trial.stage_index)
        self.executor.submit(TrialTask(-1, trial.config, seed, self.context.settings.epochs, self.augment))
        outcome = self.executor.next_outcome(lambda *_: False)
        if outcome.measured is None:
            raise SearchFailedError(f"retraining trial #{trial.trial_id} failed: {outcome.error or outcome.status}")
        return outcome.measured
