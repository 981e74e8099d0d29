"""What every method works with: its context (settings, space, input shape) and what it answers with."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deepncheap.constraints import LIKELY
from deepncheap.errors import SearchFailedError
from deepncheap.settings import SearchSettings
from deepncheap.space import SearchSpace

if TYPE_CHECKING:
    from deepncheap.constraints import EpochTimeLimit
    from deepncheap.history import History
    from deepncheap.store import Trial

MAX_DRAWS = 64  # prior points are the first complying ones among up to this many times as many draws


@dataclass(frozen=True)
class MethodContext:
    """Everything a method needs besides the history: the search's settings (seed, budgets, BO mode) and
    space, the data's input shape (grids skip configs that build the same network) and, when pruning is on,
    a config's cost before training (`cost_rank`: prior points and grids train cheapest first, so that the
    bound can rule out the expensive ones once a cheap one set the incumbent) and, when pruning knows it
    before training, its cost bound (`pruning.py`: BO drops candidates it rules out). With `--penalty params`
    and w_c > 0, a config's f_c from its parameter count (`known_cost`: the GP models f_p alone and expected
    improvement adds each candidate's exact cost, `bo.propose`). With constraints
    (`constraints.py`): the exact ones a config violates (`violations`) and the predicted epoch-time limit
    (`epoch_time`); methods propose complying configs only (`sample`, `complying`, `feasibility`)."""

    settings: SearchSettings
    space: SearchSpace
    input_shape: tuple[int, ...]
    cost_bound: Callable[[dict[str, Any]], float] | None = None  # a config's cost bound, when known before training
    known_cost: Callable[[dict[str, Any]], float] | None = None  # a config's f_c, when cheap to know (params)
    cost_rank: Callable[[dict[str, Any]], float] | None = None  # a config's cost before training (any unit)
    violations: Callable[[dict[str, Any]], list[str]] | None = None  # the exact constraints a config violates
    epoch_time: EpochTimeLimit | None = None  # --max-epoch-time, predicted

    def rank(self, config: dict[str, Any]) -> float:
        """The order in which configs known in advance (prior points, grids) start: `cost_rank`, cheapest
        first (0 for all without it: their own order)."""
        return 0.0 if self.cost_rank is None else self.cost_rank(config)

    def complying(
        self, configs: list[dict[str, Any]], measured: Iterable[Trial] = (), *, at_least: int = 0
    ) -> list[dict[str, Any]]:
        """The configs (in their order) that meet the exact constraints and, as predicted from the time
        baseline and the `measured` trials (those of the stages before, which no longer change: the answer
        must not change while a stage runs), `LIKELY` the epoch-time limit; topped up to `at_least` with
        the exact-complying configs most likely to meet it."""
        probability = self._probability(measured)
        if probability is None:
            return configs
        chances = [probability(c) for c in configs]
        chosen = {i for i, p in enumerate(chances) if p >= LIKELY}
        unlikely = sorted((i for i, p in enumerate(chances) if 0 < p < LIKELY), key=lambda i: -chances[i])
        chosen |= set(unlikely[: max(0, at_least - len(chosen))])
        return [configs[i] for i in sorted(chosen)]

    def sample(
        self,
        n: int,
        *,
        method: str,
        seed: int,
        stage: str,
        base: dict[str, Any] | None = None,
        measured: Iterable[Trial] = (),
    ) -> list[dict[str, Any]]:
        """The first `n` distinct complying configs of the seed's sequence (`space.sample`; `measured` as in
        `complying`, which tops up with unlikely ones at the last draw). A config the sequence decodes again
        is skipped: e.g. every point with no hidden layer is the same MLP whatever its widths (3-5 of the
        MLP core stage's 15 Sobol points, trained again for nothing). A space with fewer than `n` distinct
        complying configs repeats them; a SearchFailedError when fewer than `n` of `MAX_DRAWS * n` draws
        meet the exact constraints."""
        draws = n
        while True:
            configs = self.space.sample(draws, method=method, seed=seed, stage=stage, base=base)
            last = draws >= MAX_DRAWS * n
            kept = self.complying(configs, measured, at_least=n if last else 0)
            unique = list({json.dumps(c, sort_keys=True): c for c in kept}.values())
            if len(unique) >= n or (last and len(kept) >= n):
                return [unique[i % len(unique)] for i in range(n)]
            if last:
                raise SearchFailedError(
                    f"only {len(kept)} of {draws} configs of the {stage} stage meet the constraints "
                    f"({self.settings_constraints()}); loosen them, or narrow the space to configs that comply"
                )
            draws *= 2

    def feasibility(self, history: History) -> Callable[[dict[str, Any]], float] | None:
        """A config's probability of complying given what the run measured so far (0 or 1 for the exact
        constraints), or None without constraints."""
        return self._probability(history.trials)

    def _probability(self, measured: Iterable[Trial]) -> Callable[[dict[str, Any]], float] | None:
        """P(a config complies), the epoch-time limit predicted from `measured` (None: no constraints)."""
        if self.violations is None and self.epoch_time is None:
            return None
        violations = self.violations
        predicted = None if self.epoch_time is None else self.epoch_time.probability(measured)

        def probability(config: dict[str, Any]) -> float:
            if violations is not None and violations(config):
                return 0.0
            return 1.0 if predicted is None else predicted(config)

        return probability

    def settings_constraints(self) -> str:
        from deepncheap.constraints import Constraints

        return Constraints.of(self.settings).describe()


@dataclass(frozen=True)
class Proposal:
    """A trial to start: trial `index` of `stage` with `config`; `notes` are lines for the progress display
    and the run's log (a new sub-stage, a GP that needed jitter...)."""

    config: dict[str, Any]
    stage: str
    index: int
    notes: tuple[str, ...] = ()


def ask_stored(
    history: History, stage: str, configs: list[dict[str, Any]], free_slots: int, note: str
) -> list[Proposal] | None:
    """A stage that trains stored configs as they are (trial i is config i; `note` goes with the first): the
    next ones for the free slots, an empty list while its last ones run, None once every one has finished."""
    indices = next_indices(history, stage, len(configs), free_slots)
    if indices is None:
        return None
    proposals = [Proposal(configs[i], stage, i) for i in indices]
    if proposals and proposals[0].index == 0:
        proposals[0] = Proposal(proposals[0].config, stage, 0, (note,))
    return proposals


def next_indices(history: History, stage: str, total: int, free_slots: int) -> range | None:
    """The indices of the next trials of a stage of `total` trials, for up to `free_slots` free slots: an
    empty range while its last trials run, None once all have finished."""
    started = len(history.stage(stage))
    if started >= total:
        return range(0) if history.pending(stage) else None
    return range(started, started + max(0, min(free_slots, total - started)))
