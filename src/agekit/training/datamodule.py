"""Batches from a prepared cache: uint8 rows -> device -> (augmentation) -> normalised input.

The data path has no per-sample Python: a split's uint8 crops are gathered from the cache
memmap into RAM once (small views) and each batch is one fancy-index of that array. The
uint8 batch is what crosses to the device; augmentation (:mod:`agekit.training.augment`)
and normalisation with the model's :class:`~agekit.preprocessing.PreprocessSpec` run there,
on the whole batch.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from agekit.data.cache import PreparedCache
from agekit.data.datasets.adience import nearest_age_group
from agekit.preprocessing import PreprocessSpec, network_input
from agekit.training.augment import build_augment
from agekit.training.recipes import Data

_DATA = Data()  # the recipe schema's defaults, stated there once

LABELS = {"age": np.float32, "age_std": np.float32, "gender": np.int64, "age_group": np.int64, "race": np.int64}
IN_MEMORY_LIMIT = 2 << 30  # gather a split into RAM below 2 GiB, else read batches from the memmap
AGE_GROUP_RULES = ("adience",)


def age_groups_from_age(age: np.ndarray | Tensor, age_group: np.ndarray | Tensor | None = None,
                        rule: str = "adience") -> np.ndarray | Tensor:
    """Adience group index (0..7) of each age where ``age_group`` is unknown (-1); -1 where the age is NaN.

    The rule of :func:`agekit.data.datasets.adience.nearest_age_group` (Adience's stray labels use it too): the
    group the age falls in, else the nearest group (ties to the younger group). Lets LMTCNN's 8-way
    age-group head train on a dataset with ages only (UTKFace). Known groups are kept.
    """
    if rule not in AGE_GROUP_RULES:
        raise ValueError(f"unknown age-group rule {rule!r}: one of {AGE_GROUP_RULES}")
    is_t = isinstance(age, Tensor)
    groups = nearest_age_group(age.detach().cpu().double().numpy() if is_t else np.asarray(age, dtype=np.float64))
    if age_group is not None:
        known = age_group.detach().cpu().numpy() if isinstance(age_group, Tensor) else np.asarray(age_group)
        groups = np.where(known >= 0, known, groups)
    if is_t:
        return torch.from_numpy(groups.astype(np.int64)).to(age.device)
    return groups.astype(np.int64)


class CacheSplit(Dataset):
    """One split of a cache view; ``__getitems__`` returns a whole batch as a dict of tensors."""

    def __init__(self, images: np.ndarray, meta: dict[str, np.ndarray], rows: np.ndarray) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        nbytes = int(np.prod(images.shape[1:])) * len(self.rows)
        self.in_memory = nbytes <= IN_MEMORY_LIMIT
        self.images = np.ascontiguousarray(images[np.sort(self.rows)][np.argsort(np.argsort(self.rows))]) \
            if self.in_memory else images
        self.labels = {}
        for k, dt in LABELS.items():
            if k in meta:
                self.labels[k] = torch.from_numpy(np.asarray(meta[k])[self.rows].astype(dt))
            else:
                fill = np.nan if np.issubdtype(dt, np.floating) else -1
                self.labels[k] = torch.full((len(self.rows),), fill, dtype=torch.from_numpy(np.zeros(1, dt)).dtype)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, idx: list[int]) -> dict[str, Tensor]:
        i = np.asarray(idx, dtype=np.int64)
        if self.in_memory:
            img = self.images[i]
        else:  # memmap: read in row order, then restore the batch order
            rows = self.rows[i]
            order = np.argsort(rows)
            img = np.empty((len(i),) + self.images.shape[1:], np.uint8)
            img[order] = self.images[rows[order]]
        ti = torch.from_numpy(i)
        batch = {"image": torch.from_numpy(img), "index": torch.from_numpy(self.rows[i])}
        batch.update({k: v[ti] for k, v in self.labels.items()})
        return batch

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


def _batch_identity(batch: Any) -> Any:
    return batch


class EpochShuffleSampler(Sampler[int]):
    """A permutation drawn from (seed, epoch), this rank's share of it under DDP.

    The order depends only on the seed and the epoch, so a run resumed from ``last.ckpt``
    sees exactly the batches an uninterrupted run would.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 weights: Tensor | None = None) -> None:
        self.n, self.seed, self.shuffle, self.rank, self.world_size = n, int(seed), shuffle, rank, world_size
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, indices) already trained on, from a checkpoint

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip_next(self, epoch: int, count: int) -> None:
        """The next iteration over ``epoch`` leaves out its first ``count`` indices (a resumed epoch)."""
        self._skip = (int(epoch), int(count))

    def __iter__(self) -> Iterator[int]:
        if self.shuffle and self.weights is not None:  # n draws with replacement, P(i) ~ weights[i]
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        elif self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.world_size > 1:  # pad to a multiple of world_size, like DistributedSampler
            order += order[: (-len(order)) % self.world_size]
            order = order[self.rank :: self.world_size]
        if self._skip is not None:
            epoch, count = self._skip
            self._skip = None
            if epoch == self.epoch:
                order = order[count:]
        return iter(order)

    def __len__(self) -> int:
        return -(-self.n // self.world_size)


class ResumableLoader(DataLoader):
    """A training loader whose place in the epoch travels in ``last.ckpt`` (Lightning's stateful-loader protocol).

    ``consumed`` counts the batches trained on in the current epoch (the data module counts them as they
    reach the device, so batches Lightning has only prefetched do not count); a run resumed from a
    mid-epoch checkpoint skips them, since the epoch's order depends only on (seed, epoch).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consumed, self._fresh, self._resumed = 0, True, None

    def __iter__(self) -> Any:
        self.consumed, self._fresh = 0, True
        return super().__iter__()

    def note_trained_batch(self) -> None:
        """Count one batch trained on (called once per training step, after the batch reaches the device)."""
        if self._fresh:  # the first batch of this iteration: a resumed epoch counts the batches it skipped
            self._fresh = False
            if self._resumed is not None and self._resumed[0] == self.sampler.epoch:
                self.consumed = self._resumed[1]
            self._resumed = None
        self.consumed += 1

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self.sampler.epoch), "batches": int(self.consumed),
                "samples": int(self.consumed) * int(self.batch_size)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batches = int(state["epoch"]), int(state["batches"])
        self.sampler.skip_next(epoch, int(state.get("samples", batches * int(self.batch_size))))
        self._resumed = (epoch, batches)


def age_balance_weights(age: np.ndarray, power: float, bin_years: float = 5.0) -> np.ndarray:
    """Sampling weight per face: (faces in its ``bin_years`` age bin) ** -power (0: uniform; 1: every bin equally often).

    Rebalances the epoch towards rare ages (children under 5 are common in UTKFace, the
    elderly rare); unknown ages get the mean weight.
    """
    age = np.asarray(age, dtype=np.float64)
    known = np.isfinite(age)
    w = np.ones(len(age))
    if power and known.any():
        b = np.floor(age[known] / bin_years).astype(np.int64)
        counts = np.bincount(b)
        w[known] = counts[b].astype(np.float64) ** -float(power)
        w[~known] = w[known].mean()
    return w / w.sum()


class AgeDataModule(L.LightningDataModule):
    """Train/val/test loaders over a :class:`PreparedCache` view (``spec.view_key``) and protocol.

    Options after ``cache`` and ``spec`` are keyword-only; their defaults are the recipe's ``data`` section's.
    ``protocol``: the cache's split file (None: its only one). ``augment``: a recipe's ``augment`` section (or
    preset name) for the training batches. ``require``: labels a row must have to be used. ``seed``: the
    epochs' order; ``reseed``: seed the global RNG per step, so a resumed run continues exactly.
    ``channels_last``: batches in channels_last memory format. ``balance`` > 0 draws each training epoch with
    replacement, a face's chance proportional to (faces in its 5-year age bin) ** -balance
    (:func:`age_balance_weights`).
    """

    def __init__(
        self,
        cache: str | Path | Any,
        spec: PreprocessSpec,
        *,
        protocol: str | None = None,
        train_split: str = _DATA.train_split,
        val_split: str | None = _DATA.val_split,
        test_split: str | None = _DATA.test_split,
        batch_size: int = _DATA.batch_size,
        eval_batch_size: int = _DATA.eval_batch_size,
        augment: dict[str, Any] | str | None = None,
        require: tuple[str, ...] = ("age",),
        seed: int = 0,
        drop_last: bool = _DATA.drop_last,
        channels_last: bool = False,
        reseed: bool = True,
        balance: float = _DATA.balance,
    ) -> None:
        super().__init__()
        self.reseed = reseed
        self.balance = float(balance or 0.0)
        self.cache_arg = cache
        self.spec = spec
        self.protocol = protocol
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.augment = build_augment(augment, spec.size)
        self.require = tuple(require or ())
        self.seed, self.drop_last, self.channels_last = seed, drop_last, channels_last
        self.cache = None
        self.splits: dict[str, CacheSplit] = {}
        self._train_loader: ResumableLoader | None = None

    def _open(self) -> None:
        if self.cache is not None:
            return

        self.cache = self.cache_arg if hasattr(self.cache_arg, "view") else PreparedCache(self.cache_arg)
        self.protocol = resolve_protocol(self.cache, self.protocol)

    def rows(self, split: str) -> np.ndarray:
        """Row indices of ``split`` that carry every required label; ``"train+val"`` joins splits (a final model)."""
        self._open()
        splits = self.cache.splits(self.protocol)
        parts = [x.strip() for x in split.split("+")]
        for part in parts:
            if part not in splits:
                raise KeyError(f"{self.cache.root}: protocol {self.protocol!r} has no split {part!r}; has {sorted(splits)}")
        rows = np.concatenate([np.asarray(splits[x], dtype=np.int64) for x in parts])
        keep = np.ones(len(rows), bool)
        for k in self.require:
            col = np.asarray(self.cache.meta[k])[rows]
            keep &= ~np.isnan(col) if np.issubdtype(col.dtype, np.floating) else col >= 0
        return rows[keep]

    def setup(self, stage: str | None = None) -> None:
        self._open()
        key = self.spec.view_key
        if key not in self.cache.views:
            raise KeyError(
                f"{self.cache.root}: no view {key!r} for this model's crops; the cache has {self.cache.views}. "
                "Run `agekit prepare` with this model's preprocessing."
            )
        view = self.cache.view(key)
        for role, split in self.split_names.items():
            if split and role not in self.splits and (role != "test" or stage in (None, "test")):
                self.splits[role] = CacheSplit(view, self.cache.meta, self.rows(split))
        if len(self.splits.get("train", [1])) == 0:
            raise ValueError(f"{self.cache.root}: split {self.split_names['train']!r} has no usable rows")

    def _loader(self, role: str, train: bool) -> DataLoader:
        ds = self.splits[role]
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        weights = self.train_weights(ds) if train else None
        sampler = EpochShuffleSampler(len(ds), self.seed, shuffle=train, rank=rank, world_size=world, weights=weights)
        pin = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        loader = (ResumableLoader if train else DataLoader)(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            drop_last=train and self.drop_last,
            collate_fn=_batch_identity,
            num_workers=0,
            pin_memory=pin,
            generator=torch.Generator().manual_seed(self.seed),  # the loader never draws from the global RNG
        )
        if train:
            self._train_loader = loader
        return loader

    def train_weights(self, ds: CacheSplit) -> Tensor | None:
        """Per-face draw weights of a training epoch (None: a plain permutation); ``balance`` > 0: rare ages more often."""
        return torch.from_numpy(age_balance_weights(ds.labels["age"].numpy(), self.balance)) if self.balance else None

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", False) if "val" in self.splits else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict[str, Tensor]:
        training = self.trainer is not None and self.trainer.training
        if training and self._train_loader is not None:
            self._train_loader.note_trained_batch()
        if training and self.reseed:
            # Augmentation and dropout draw from the global RNG: seed it from (seed, step, rank) so that
            # a run resumed from last.ckpt continues exactly like an uninterrupted one.
            torch.manual_seed(self.seed * 1_000_003 + self.trainer.global_step * 1009 + self.trainer.global_rank)
        batch["image"] = network_input(batch["image"], self.spec, self.augment if training else None,
                                       channels_last_memory=self.channels_last)
        return batch


def resolve_protocol(cache: Any, protocol: str | None) -> str:
    """``protocol`` checked against the cache, or the cache's only protocol when ``None``."""
    protos = list(cache.protocols)
    if protocol is None:
        if len(protos) == 1:
            return protos[0]
        raise ValueError(f"{cache.root}: choose a protocol (--protocol / data.protocol) among {protos}")
    if protocol not in protos:
        raise KeyError(f"{cache.root}: no protocol {protocol!r}; the cache has {protos}")
    return protocol
