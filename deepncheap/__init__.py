"""deepncheap: search neural-network architectures and training hyperparameters together, trading
accuracy against cost (the Deep-n-Cheap method)."""

from deepncheap.errors import DataError, DNCError, OutputError, SearchFailedError, SettingsError, SpaceError
from deepncheap.export import export_run
from deepncheap.search import SearchResult, load_run, resume, search
from deepncheap.space import SearchSpace

__all__ = [
    "DNCError",
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
]
__version__ = "0.1.0"
