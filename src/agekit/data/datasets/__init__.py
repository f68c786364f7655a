"""Dataset adapters: each reads one dataset from its published layout into :class:`Sample` records.

``get_adapter(name)`` returns the adapter class; ``list_adapters()`` the registered names.
"""
from __future__ import annotations

import difflib

from agekit.data.datasets.adience import Adience
from agekit.data.datasets.allagefaces import AllAgeFaces
from agekit.data.datasets.base import BadRecord, DatasetAdapter, Sample
from agekit.data.datasets.chalearn import ChaLearn2015
from agekit.data.datasets.fgnet import FGNet
from agekit.data.datasets.generic import CSVList, Folder
from agekit.data.datasets.imdb_wiki import IMDB, Wiki
from agekit.data.datasets.megaage import MegaAge, MegaAgeAsian
from agekit.data.datasets.morph import Morph2
from agekit.data.datasets.utkface import UTKFace

_ADAPTERS: dict[str, type[DatasetAdapter]] = {}
_ALIASES = {"morph2": "morph", "morph_ii": "morph", "chalearn": "chalearn2015", "aaf": "allagefaces",
            "fg-net": "fgnet", "megaage-asian": "megaage_asian", "utk": "utkface"}


def register_adapter(cls: type[DatasetAdapter]) -> type[DatasetAdapter]:
    """Add an adapter class under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _ADAPTERS[cls.name] = cls
    return cls


for _cls in (IMDB, Wiki, Morph2, MegaAge, MegaAgeAsian, FGNet, ChaLearn2015, Adience, UTKFace, AllAgeFaces,
             Folder, CSVList):
    register_adapter(_cls)


class UnknownDatasetError(KeyError):
    """No adapter has that name; ``str()`` is the one-line message (without KeyError's quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def get_adapter(name: str) -> type[DatasetAdapter]:
    """The adapter class registered as ``name`` (case-insensitive; a few aliases such as morph2)."""
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in _ADAPTERS:

        close = difflib.get_close_matches(key, list_adapters(), n=1, cutoff=0.6)
        raise UnknownDatasetError(f"unknown dataset {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                                  + f"; available: {', '.join(list_adapters())}")
    return _ADAPTERS[key]


def list_adapters() -> list[str]:
    """Names of all registered dataset adapters, sorted."""
    return sorted(_ADAPTERS)


__all__ = ["BadRecord", "DatasetAdapter", "Sample", "get_adapter", "list_adapters", "register_adapter"]
