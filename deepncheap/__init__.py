"""deepncheap: search neural-network architectures and training hyperparameters together, trading
accuracy against cost (the Deep-n-Cheap method)."""

from typing import Any

from deepncheap.errors import DataError, DNCError, OutputError, SearchFailedError, SettingsError, SpaceError
from deepncheap.export import export_run
from deepncheap.final import train_final
from deepncheap.search import SearchResult, load_run, resume, search
from deepncheap.space import SearchSpace
from deepncheap.transfer import transfer

__all__ = [
    "DNCClassifier",
    "DNCError",
    "DNCRegressor",
    "DataError",
    "OutputError",
    "SearchFailedError",
    "SearchResult",
    "SearchSpace",
    "SettingsError",
    "SpaceError",
    "export_run",
    "load_run",
    "resume",
    "search",
    "train_final",
    "transfer",
]
__version__ = "0.1.0"
_ESTIMATORS = ("DNCClassifier", "DNCRegressor")


def __getattr__(name: str) -> Any:
    """The scikit-learn estimators (`deepncheap.sklearn`), imported on first use: `import deepncheap` stays light."""
    if name in _ESTIMATORS:
        from deepncheap import sklearn

        return getattr(sklearn, name)
    raise AttributeError(f"module 'deepncheap' has no attribute {name!r}")
