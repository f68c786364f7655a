"""Evaluation protocols of the papers, as data: each builds seeded split files from a cache's metadata.

Every protocol keeps byte-identical images (same ``hash``) in one split, and the
subject-exclusive ones keep each ``subject`` in one split too (rows are grouped by the union
of both relations). Fold-based protocols name their splits ``fold{i}_train`` / ``fold{i}_val`` /
``fold{i}_test``; repeated random splits ``run{r}_train`` / ``run{r}_test``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from agekit.data.datasets.allagefaces import fixed_split_rows

Meta = Mapping[str, np.ndarray]
Splits = dict[str, np.ndarray]


def group_ids(meta: Meta, by: tuple[str, ...] = ("hash",)) -> np.ndarray:
    """Row -> group id, where rows sharing a non-empty value of any column in ``by`` are one group.

    Union-find over the columns, so with ``by=("subject", "hash")`` a subject and every image
    byte-identical to one of its images stay together. Group ids are numbered by first row.
    """
    n = len(meta["hash"])
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for col in by:
        first: dict[str, int] = {}
        for i, v in enumerate(np.asarray(meta[col]).astype(str)):
            if v == "":
                continue
            j = first.setdefault(v, i)
            if j != i:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    roots = np.array([find(i) for i in range(n)], dtype=np.int64)
    _, ids = np.unique(roots, return_inverse=True)
    return ids.astype(np.int64)


def _rows_of(groups: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isin(groups, chosen)).astype(np.int64)


def random_group_split(groups: np.ndarray, fractions: Mapping[str, float], seed: int) -> Splits:
    """Seeded random split of groups into named parts with the given fractions of the groups.

    Groups are shuffled with ``np.random.default_rng(seed)`` and cut at the cumulative
    fractions (rounded); every row follows its group.
    """
    total = sum(fractions.values())
    if not np.isclose(total, 1.0):
        raise ValueError(f"fractions must sum to 1, got {total}")
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(unique)
    bounds = np.round(np.cumsum([0.0, *fractions.values()]) * len(order)).astype(int)
    return {name: _rows_of(groups, order[bounds[i]:bounds[i + 1]]) for i, name in enumerate(fractions)}


def group_kfold(groups: np.ndarray, k: int, seed: int, val_fraction: float = 0.0) -> Splits:
    """k folds of whole groups, balanced by row count: fold i's test is part i, train the rest.

    Groups are shuffled (seeded) and each goes to the part with the fewest rows so far.
    With ``val_fraction`` > 0 that fraction of the training groups becomes ``fold{i}_val``.
    """
    unique, counts = np.unique(groups, return_counts=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unique))
    part_of = np.empty(len(unique), dtype=np.int64)
    sizes = np.zeros(k, dtype=np.int64)
    for j in order:
        p = int(np.argmin(sizes))
        part_of[j] = p
        sizes[p] += counts[j]
    out: Splits = {}
    for i in range(k):
        test_groups = unique[part_of == i]
        train_groups = unique[part_of != i]
        if val_fraction > 0:
            train_groups = rng.permutation(train_groups)
            n_val = int(round(val_fraction * len(train_groups)))
            out[f"fold{i}_val"] = _rows_of(groups, train_groups[:n_val])
            train_groups = train_groups[n_val:]
        out[f"fold{i}_train"] = _rows_of(groups, train_groups)
        out[f"fold{i}_test"] = _rows_of(groups, test_groups)
    return out


def origin_split(meta: Meta, names: Mapping[str, str] | None = None) -> Splits:
    """The dataset's own split (``origin_split`` column), renamed by ``names`` (origin -> split)."""
    col = np.asarray(meta["origin_split"]).astype(str)
    values = [str(v) for v in np.unique(col) if v]
    names = dict(names) if names else {v: v for v in values}
    return {split: np.flatnonzero(col == origin).astype(np.int64) for origin, split in names.items()}


def _check_hash_grouped(meta: Meta, splits: Splits, exclusive: list[list[str]]) -> None:
    """Raise if any content hash appears in two mutually exclusive splits (a leak)."""
    h = np.asarray(meta["hash"]).astype(str)
    for names in exclusive:
        seen: dict[str, str] = {}
        for name in names:
            for v in np.unique(h[splits[name]]):
                if v in seen and seen[v] != name:
                    raise ValueError(f"content hash {v} is in both {seen[v]} and {name}")
                seen[v] = name


# --- the papers' protocols -------------------------------------------------------------------

def random_80_20(meta: Meta, seed: int = 1) -> Splits:
    """Random 80/20 train/test split of images (SSR-Net, C3AE, HSR on MORPH II; HSR code's seed 1)."""
    return random_group_split(group_ids(meta, ("hash",)), {"train": 0.8, "test": 0.2}, seed)


def pretrain_80_20(meta: Meta, seed: int = 1) -> Splits:
    """IMDB / WIKI pre-training: random 80/20 train/val (SSR-Net code's validation split)."""
    return random_group_split(group_ids(meta, ("hash",)), {"train": 0.8, "val": 0.2}, seed)


def subject_kfold(meta: Meta, seed: int = 0, k: int = 5) -> Splits:
    """Subject-exclusive k-fold (MORPH II, 5 folds): no person in both train and test of a fold."""
    return group_kfold(group_ids(meta, ("subject", "hash")), k, seed)


def utkface_70_10_20(meta: Meta, seed: int = 0) -> Splits:
    """UTKFace train/val/test = 70/10/20 of the distinct contents (SHA-1), so duplicates share a split.

    UTKFace gives no identities, so this is not subject-exclusive (the release has no ids).
    """
    return random_group_split(group_ids(meta, ("hash",)), {"train": 0.7, "val": 0.1, "test": 0.2}, seed)


def fgnet_random30(meta: Meta, seed: int = 0, runs: int = 10, test_size: int = 30) -> Splits:
    """C3AE's FG-NET protocol: ten random splits with 30 test images each (Sec. 4.5), rest train."""
    groups = group_ids(meta, ("hash",))
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    out: Splits = {}
    for r in range(runs):
        chosen, n = [], 0
        for g in rng.permutation(unique):
            if n >= test_size:
                break
            chosen.append(g)
            n += int(np.sum(groups == g))
        test = _rows_of(groups, np.array(chosen))
        out[f"run{r}_train"] = np.setdiff1d(np.arange(len(groups)), test).astype(np.int64)
        out[f"run{r}_test"] = test
    return out


def fgnet_lopo(meta: Meta, seed: int = 0) -> Splits:
    """FG-NET leave-one-person-out: one fold per subject (82 folds), named ``fold{subject}_*``."""
    groups = group_ids(meta, ("subject", "hash"))
    subjects = np.asarray(meta["subject"]).astype(str)
    out: Splits = {}
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        name = "+".join(sorted(set(subjects[rows]) - {""})) or f"group{g}"
        out[f"fold{name}_test"] = rows.astype(np.int64)
        out[f"fold{name}_train"] = np.flatnonzero(groups != g).astype(np.int64)
    return out


def megaage_lists(meta: Meta, seed: int = 0) -> Splits:
    """MegaAge(-Asian): the dataset's train/test lists (3,945 MegaAge-Asian test images)."""
    return origin_split(meta, {"train": "train", "test": "test"})


def adience_folds(meta: Meta, seed: int = 0, val_fraction: float = 0.1) -> Splits:
    """Adience five-fold cross-validation (LMTCNN Table 2): fold i tests on ``fold_i``, trains on the
    other four, of which ~10 % of the subjects (seeded) form the validation set, or the published
    per-fold validation lists when the adapter found them (``origin_split`` "fold_j val_i")."""
    tags = np.asarray(meta["origin_split"]).astype(str)
    col = np.array([t.split(" ")[0] for t in tags])
    listed = np.array([t.split(" ")[1] if " " in t else "" for t in tags])
    groups = group_ids(meta, ("subject", "hash"))
    rng = np.random.default_rng(seed)
    out: Splits = {}
    for i in range(5):
        test = np.flatnonzero(col == f"fold_{i}")
        rest = np.flatnonzero((col != f"fold_{i}") & (col != ""))
        rest_groups = rng.permutation(np.unique(groups[rest]))
        val_groups = rest_groups[: int(round(val_fraction * len(rest_groups)))]
        is_val = np.isin(groups[rest], val_groups)
        if (listed != "").any():  # the published lists
            is_val = listed[rest] == f"val_{i}"
        out[f"fold{i}_train"] = rest[~is_val].astype(np.int64)
        out[f"fold{i}_val"] = rest[is_val].astype(np.int64)
        out[f"fold{i}_test"] = test.astype(np.int64)
    return out


def chalearn_official(meta: Meta, seed: int = 0) -> Splits:
    """ChaLearn LAP 2015: train on Train, evaluate on Validation (LRN Table 4), Test when labelled."""
    return {k: v for k, v in origin_split(meta, {"train": "train", "val": "val", "test": "test"}).items() if len(v)}


def aaf_lists(meta: Meta, seed: int = 0) -> Splits:
    """All-Age-Faces: the dataset's ``image sets/train.txt`` and ``val.txt``."""
    return origin_split(meta, {"train": "train", "val": "val"})


def aaf_fixed(meta: Meta, seed: int = 0) -> Splits:
    """All-Age-Faces: agekit's fixed train/val/test (70/10/20 by serial number, stratified by gender and age
    decade), read from the committed split file ``agekit/data/splits/allagefaces_fixed.csv``."""
    return fixed_split_rows(meta)


@dataclass(frozen=True)
class Protocol:
    """A named protocol: which dataset it applies to, how splits are built, its default seed."""

    name: str
    dataset: str
    build: Callable[..., Splits]
    seed: int = 0
    exclusive: tuple[tuple[str, ...], ...] = field(default=())
    description: str = ""


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("imdb", "imdb", pretrain_80_20, 1, (("train", "val"),), "IMDB pre-training 80/20"),
        Protocol("wiki", "wiki", pretrain_80_20, 1, (("train", "val"),), "WIKI pre-training 80/20"),
        Protocol("morph_80_20", "morph", random_80_20, 1, (("train", "test"),), "MORPH II random 80/20"),
        Protocol("morph_subject_5fold", "morph", subject_kfold, 0, (), "MORPH II subject-exclusive 5-fold"),
        Protocol("fgnet_random30", "fgnet", fgnet_random30, 0, (), "FG-NET 10 random 30-image tests (C3AE)"),
        Protocol("fgnet_lopo", "fgnet", fgnet_lopo, 0, (), "FG-NET leave-one-person-out"),
        Protocol("megaage", "megaage", megaage_lists, 0, (), "MegaAge train/test lists"),
        Protocol("megaage_asian", "megaage_asian", megaage_lists, 0, (), "MegaAge-Asian lists, 3,945 test"),
        Protocol("adience", "adience", adience_folds, 0, (), "Adience five folds (LMTCNN Table 2)"),
        Protocol("chalearn2015", "chalearn2015", chalearn_official, 0, (), "ChaLearn LAP 2015 train -> validation"),
        Protocol("utkface", "utkface", utkface_70_10_20, 0, (("train", "val", "test"),),
                 "UTKFace 70/10/20 by content hash"),
        Protocol("allagefaces", "allagefaces", aaf_lists, 0, (), "All-Age-Faces train/val lists"),
        Protocol("allagefaces_fixed", "allagefaces", aaf_fixed, 0, (("train", "val", "test"),),
                 "All-Age-Faces fixed train/val/test by serial number (committed split file)"),
        Protocol("folder_70_10_20", "folder", utkface_70_10_20, 0, (("train", "val", "test"),),
                 "any folder: 70/10/20 by content hash"),
        Protocol("csv_70_10_20", "csv", utkface_70_10_20, 0, (("train", "val", "test"),),
                 "a CSV list: 70/10/20 by content hash"),
        Protocol("csv_lists", "csv", lambda meta, seed=0: origin_split(meta), 0, (),
                 "a CSV list: its own 'split' column"),
    )
}



def register_protocol(protocol: Protocol) -> Protocol:
    """Add a protocol (a new dataset's splits) under its name; ``agekit prepare`` writes it for its dataset."""
    if protocol.name in PROTOCOLS:
        raise ValueError(f"protocol {protocol.name!r} is already registered")
    PROTOCOLS[protocol.name] = protocol
    return protocol

def protocols_for(dataset: str) -> list[str]:
    """Names of the protocols defined for ``dataset`` (written by ``agekit prepare``)."""
    return [p.name for p in PROTOCOLS.values() if p.dataset == dataset]


def make_splits(protocol: str, meta: Meta, seed: int | None = None) -> Splits:
    """Build the splits of ``protocol`` on ``meta`` (seeded; the protocol's default seed if None)."""
    if protocol not in PROTOCOLS:
        raise KeyError(f"unknown protocol {protocol!r}; available: {sorted(PROTOCOLS)}")
    p = PROTOCOLS[protocol]
    splits = p.build(meta, seed=p.seed if seed is None else seed)
    _check_hash_grouped(meta, splits, [list(names) for names in p.exclusive])
    return splits


@dataclass(frozen=True)
class Stage:
    """One stage of a training chain: train on ``dataset``'s ``protocol``/``split``, validate on ``eval_split``."""

    dataset: str
    protocol: str
    split: str = "train"
    eval_split: str = "val"


def pretraining_chain(target_dataset: str, target_protocol: str, split: str = "train",
                      eval_split: str = "test") -> list[Stage]:
    """IMDB -> WIKI -> target initialisation chain of SSR-Net, C3AE and HSR (each stage starts
    from the previous stage's weights)."""
    return [Stage("imdb", "imdb"), Stage("wiki", "wiki"), Stage(target_dataset, target_protocol, split, eval_split)]


PRETRAINING_CHAINS: dict[str, list[Stage]] = {
    "imdb_wiki_morph": pretraining_chain("morph", "morph_80_20"),
    "imdb_wiki_megaage_asian": pretraining_chain("megaage_asian", "megaage_asian"),
    "imdb_wiki_fgnet": pretraining_chain("fgnet", "fgnet_random30", "run0_train", "run0_test"),
}
