"""Model registry in the style of timm: ``register_model``, ``create_model``, ``list_models``.

Each architecture module ends with small factory functions, one per named configuration,
decorated with :func:`register_model`. A factory takes keyword overrides (``**config``) and
returns a plain ``nn.Module``. The registry lives in :mod:`agekit.models`: importing this module imports the
package, whose ``__init__`` imports every family module (one line per family), which registers its factories.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from agekit.preprocessing import PreprocessSpec


@dataclass(frozen=True)
class ModelEntry:
    """One registered configuration: its factory, family, paper and default input size."""

    name: str
    fn: Callable[..., nn.Module]
    family: str
    paper: str
    input_size: tuple[int, ...]  # (C, H, W) per crop; k crops are (k, C, H, W)
    tags: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""
    preprocess: PreprocessSpec | None = None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    *,
    family: str,
    paper: str,
    input_size: tuple[int, ...] = (3, 64, 64),
    tags: tuple[str, ...] = (),
    name: str | None = None,
    preprocess: PreprocessSpec | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a factory under ``name`` (default: the function's name)."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = ModelEntry(
            key, fn, family, paper, tuple(input_size), tuple(tags), doc[0] if doc else "", preprocess
        )
        return fn

    return deco


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Names of registered models matching a glob ``pattern`` (and ``family`` if given), sorted."""
    return sorted(
        n for n, e in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (family is None or e.family == family)
    )


def model_entry(name: str) -> ModelEntry:
    """The :class:`ModelEntry` of ``name``; raises ``KeyError`` listing close names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = [n for n in _REGISTRY if name.split("_")[0] in n][:10]
        raise KeyError(f"unknown model {name!r}; similar: {close}. See agekit.list_models().") from None


def create_model(name: str, **config: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword overrides of its configuration."""
    entry = model_entry(name)
    model = entry.fn(**config)
    model.agekit_name = name  # type: ignore[attr-defined]
    model.agekit_config = dict(config)  # type: ignore[attr-defined]
    if entry.preprocess is not None and not hasattr(model, "preprocess"):
        model.preprocess = entry.preprocess  # type: ignore[attr-defined]
    return model
