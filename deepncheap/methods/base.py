"""What every method works with: its context (settings, space, input shape) and what it answers with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deepncheap.settings import SearchSettings
from deepncheap.space import SearchSpace


@dataclass(frozen=True)
class MethodContext:
    """Everything a method needs besides the history: the search's settings (seed, budgets, BO mode) and
    space, the data's input shape (grids skip configs that build the same network) and, when pruning is on,
    a config's cost before training (`cost_rank`: prior points and grids train cheapest first, so that the
    bound can rule out the expensive ones once a cheap one set the incumbent) and, when pruning knows it
    before training, its cost bound (`pruning.py`: BO drops candidates it rules out)."""

    settings: SearchSettings
    space: SearchSpace
    input_shape: tuple[int, ...]
    cost_bound: Callable[[dict[str, Any]], float] | None = None  # a config's cost bound, when known before training
    cost_rank: Callable[[dict[str, Any]], float] | None = None  # a config's cost before training (any unit)

    def cheapest_first(self, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`configs` by `cost_rank` (stable; as they are without it)."""
        return configs if self.cost_rank is None else sorted(configs, key=self.cost_rank)


@dataclass(frozen=True)
class Proposal:
    """A trial to start: trial `index` of `stage` with `config`; `notes` are lines for the progress display
    and the run's log (a new sub-stage, a GP that needed jitter...)."""

    config: dict[str, Any]
    stage: str
    index: int
    notes: tuple[str, ...] = ()
