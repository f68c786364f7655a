"""Training on several prepared caches at once, each dataset drawn with a stated weight.

A recipe lists its caches under ``data.sources`` (a name per source)::

    data:
      protocol: null          # each source names its own
      sources:
        utkface:     {cache: caches/utkface,     protocol: utkface,           weight: 0.5}
        allagefaces: {cache: caches/allagefaces, protocol: allagefaces_fixed, weight: 0.5}

Each source's own protocol and splits are used (its train split for training, its val split for
validation, its test split for testing), so no source's held-out faces are trained on. A training epoch
holds as many draws as there are training faces in all sources together; each draw picks source ``d``
with probability ``weight_d / sum(weights)`` and then one of its faces uniformly (or, with ``data.balance``
> 0, towards rare ages within that source, :func:`~agekit.training.datamodule.age_balance_weights`).
The draw order depends only on (seed, epoch), so ``--resume`` continues mid-epoch exactly as with one cache.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agekit.data.cache import PreparedCache
from agekit.preprocessing import PreprocessSpec
from agekit.training.datamodule import IN_MEMORY_LIMIT, AgeDataModule, CacheSplit, age_balance_weights, resolve_protocol


def source_weights(sizes: Mapping[str, int], weights: Mapping[str, float],
                   within: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Per-face draw probabilities of the concatenated sources (in ``sizes``' order), summing to 1.

    Source ``d`` gets ``weights[d] / sum(weights)`` of the mass, spread over its ``sizes[d]`` faces uniformly, or
    in proportion to ``within[d]`` (e.g. age-balance weights) when given. A source with no faces gets none
    (its weight is shared among the others).
    """
    names = [n for n in sizes if sizes[n] > 0]
    total = float(sum(float(weights[n]) for n in names))
    if total <= 0:
        raise ValueError("the sources' weights sum to 0")
    parts = []
    for n in sizes:
        k = int(sizes[n])
        if k == 0:
            continue
        w = np.ones(k) if within is None or n not in within else np.asarray(within[n], np.float64)
        if len(w) != k or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"source {n!r}: within-source weights must be {k} finite values >= 0, not all 0")
        parts.append(w / w.sum() * float(weights[n]) / total)
    return np.concatenate(parts) if parts else np.zeros(0)


def concat_splits(parts: list[CacheSplit]) -> CacheSplit:
    """One :class:`CacheSplit` holding the faces of ``parts`` one after the other, in RAM; ``index`` numbers them
    0..N-1 across the parts (so a teacher's per-row outputs of one cache do not apply)."""
    shapes = {p.images.shape[1:] for p in parts}
    if len(shapes) != 1:
        raise ValueError(f"the sources' crops differ in shape: {sorted(shapes)}")
    n = sum(len(p) for p in parts)
    nbytes = int(np.prod(next(iter(shapes)))) * n
    if nbytes > IN_MEMORY_LIMIT * 2:
        raise ValueError(f"{n} faces of {next(iter(shapes))} do not fit the in-memory limit of several sources")
    out = CacheSplit.__new__(CacheSplit)
    out.rows = np.arange(n, dtype=np.int64)
    out.in_memory = True
    out.images = np.concatenate([p.images if p.in_memory else np.asarray(p.images[p.rows]) for p in parts])
    out.labels = {k: torch.cat([p.labels[k] for p in parts]) for k in parts[0].labels}
    out.labels["source"] = torch.cat([torch.full((len(p),), i, dtype=torch.int64) for i, p in enumerate(parts)])
    return out


class MultiCacheDataModule(AgeDataModule):
    """:class:`AgeDataModule` over several caches (``sources``: name -> cache, protocol, weight, splits).

    ``sources`` values are mappings (or objects) with ``cache``, ``protocol`` (None: the cache's only one),
    ``weight`` and optional ``train_split`` / ``val_split`` / ``test_split`` (None: the data section's).
    Batches carry a ``source`` label (the source's position in ``sources``).
    """

    def __init__(self, sources: Mapping[str, Any], spec: PreprocessSpec, **kwargs: Any) -> None:
        if not sources:
            raise ValueError("no sources")
        super().__init__(cache=None, spec=spec, protocol=None, **kwargs)
        self.sources = {str(k): _as_dict(v) for k, v in sources.items()}
        for name, s in self.sources.items():
            if not s.get("cache"):
                raise ValueError(f"data.sources.{name}: no cache")
            if float(s.get("weight", 1.0)) <= 0:
                raise ValueError(f"data.sources.{name}: weight must be > 0")
        self.children: dict[str, AgeDataModule] = {}
        self.source_rows: dict[str, dict[str, int]] = {}  # role -> source -> faces

    def _open(self) -> None:
        if self.children:
            return

        datasets = []
        for name, s in self.sources.items():
            child = AgeDataModule(s["cache"], self.spec, protocol=s.get("protocol"), require=self.require)
            child.cache = PreparedCache(s["cache"])
            child.protocol = resolve_protocol(child.cache, s.get("protocol"))
            self.children[name] = child
            datasets.append((child.cache.info or {}).get("dataset") or name)
        self.protocol = "+".join(f"{n}:{c.protocol}" for n, c in self.children.items())
        self.cache = SimpleNamespace(root=Path("+".join(str(s["cache"]) for s in self.sources.values())),
                                     info={"dataset": "+".join(datasets)}, sources=self.children)

    def _split_of(self, name: str, role: str) -> str | None:
        own = self.sources[name].get(f"{role}_split")
        return own if own is not None else self.split_names[role]

    def joined_rows(self, role: str) -> dict[str, np.ndarray]:
        """Each source's cache rows of ``role`` ("train", "val", "test"), in the order the joined split holds them."""
        out = {}
        for name, child in self.children.items():
            split = self._split_of(name, role)
            if split:
                out[name] = child.rows(split)
        return out

    def rows(self, split: str) -> np.ndarray:  # one cache's rows make no sense here
        raise TypeError("MultiCacheDataModule has several caches: use children[name].rows(split)")

    def setup(self, stage: str | None = None) -> None:
        self._open()
        key = self.spec.view_key
        for child in self.children.values():
            if key not in child.cache.views:
                raise KeyError(f"{child.cache.root}: no view {key!r} for this model's crops; the cache has "
                               f"{child.cache.views}. Run `agekit prepare` with this model's preprocessing.")
        for role in self.split_names:
            if role in self.splits or not self.split_names[role] or (role == "test" and stage not in (None, "test")):
                continue
            parts, counts = [], {}
            for name, child in self.children.items():
                split = self._split_of(name, role)
                if not split:
                    continue
                part = CacheSplit(child.cache.view(key), child.cache.meta, child.rows(split))
                parts.append(part)
                counts[name] = len(part)
            if parts:
                self.splits[role] = concat_splits(parts)
                self.source_rows[role] = counts
        train = self.source_rows.get("train", {})
        empty = [n for n, k in train.items() if k == 0]
        if empty or not train:
            raise ValueError(f"source(s) {', '.join(empty) or 'all'}: no usable training rows")

    def train_weights(self, ds: CacheSplit) -> Tensor:
        """Per-face draw probabilities (:func:`source_weights`), age-balanced within each source when asked."""
        sizes = self.source_rows["train"]
        within = None
        if self.balance:
            age = ds.labels["age"].numpy()
            src = ds.labels["source"].numpy()
            within = {n: age_balance_weights(age[src == i], self.balance) for i, n in enumerate(sizes)}
        weights = {n: float(self.sources[n].get("weight", 1.0)) for n in sizes}
        return torch.from_numpy(source_weights(sizes, weights, within))


def _as_dict(v: Any) -> dict[str, Any]:
    if isinstance(v, Mapping):
        return dict(v)
    if hasattr(v, "model_dump"):
        return v.model_dump()
    return dict(vars(v))
