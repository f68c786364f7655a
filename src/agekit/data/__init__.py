"""Datasets, prepared caches and protocols: from raw photos with labels to cached face crops and splits."""
from agekit.data.cache import META_COLUMNS, PreparedCache, write_cache
from agekit.data.datasets import BadRecord, DatasetAdapter, Sample, get_adapter, list_adapters
from agekit.data.protocols import PRETRAINING_CHAINS, PROTOCOLS, Stage, make_splits, protocols_for

__all__ = [
    "BadRecord", "DatasetAdapter", "META_COLUMNS", "PRETRAINING_CHAINS", "PROTOCOLS", "PreparedCache", "Sample",
    "Stage", "get_adapter", "list_adapters", "make_splits", "protocols_for", "write_cache",
]
