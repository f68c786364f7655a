"""Protocols: disjoint splits, subject exclusivity, hash grouping, seeded reproducibility, sizes."""
from __future__ import annotations

import numpy as np
import pytest

from agekit.data.protocols import (
    PRETRAINING_CHAINS,
    PROTOCOLS,
    group_ids,
    make_splits,
    protocols_for,
)


def _meta(n=200, n_subjects=40, dup_every=10, seed=0, origin=None):
    rng = np.random.default_rng(seed)
    hashes = np.array([f"h{i}" for i in range(n)])
    hashes[::dup_every] = "dup"  # one content shared by many rows (and by several subjects)
    hashes[1::dup_every] = np.array([f"pair{i // 2}" for i in range(len(hashes[1::dup_every]))])
    return {
        "hash": hashes,
        "subject": np.array([f"s{rng.integers(n_subjects)}" for _ in range(n)]),
        "origin_split": np.array(origin if origin is not None else [""] * n),
        "age": rng.uniform(0, 80, n).astype(np.float32),
    }


def _assert_partition(splits, n, names):
    rows = np.concatenate([splits[k] for k in names])
    assert sorted(rows.tolist()) == list(range(n)), "splits must be disjoint and cover every row"


def _assert_grouped(meta, splits, names, col):
    owner = {}
    for name in names:
        for v in set(meta[col][splits[name]]):
            assert owner.setdefault(v, name) == name, f"{col} {v} in {owner[v]} and {name}"


def test_group_ids_union_of_subject_and_hash():
    meta = {"hash": np.array(["x", "y", "x", "z", "w"]), "subject": np.array(["a", "b", "c", "c", ""])}
    assert group_ids(meta, ("hash",)).tolist() == [0, 1, 0, 2, 3]
    # row 0 and 2 share a hash; 2 and 3 share a subject -> one group; row 4 alone
    assert group_ids(meta, ("subject", "hash")).tolist() == [0, 1, 0, 0, 2]


def test_utkface_70_10_20_by_hash():
    meta = _meta(1000, dup_every=25)
    s = make_splits("utkface", meta)
    _assert_partition(s, 1000, ["train", "val", "test"])
    _assert_grouped(meta, s, ["train", "val", "test"], "hash")
    n_groups = len(set(meta["hash"]))
    groups_in = {k: len(set(meta["hash"][v])) for k, v in s.items()}
    assert groups_in == {"train": round(0.7 * n_groups), "val": round(0.8 * n_groups) - round(0.7 * n_groups),
                         "test": n_groups - round(0.8 * n_groups)}
    again = make_splits("utkface", meta)
    assert all(np.array_equal(s[k], again[k]) for k in s), "same seed, same splits"
    other = make_splits("utkface", meta, seed=5)
    assert not np.array_equal(s["test"], other["test"])


def test_morph_80_20_and_subject_kfold():
    meta = _meta(300)
    s = make_splits("morph_80_20", meta)
    _assert_partition(s, 300, ["train", "test"])
    _assert_grouped(meta, s, ["train", "test"], "hash")
    k = make_splits("morph_subject_5fold", meta)
    tests = [k[f"fold{i}_test"] for i in range(5)]
    _assert_partition({i: t for i, t in enumerate(tests)}, 300, range(5))
    for i in range(5):
        _assert_partition(k, 300, [f"fold{i}_train", f"fold{i}_test"])
        _assert_grouped(meta, k, [f"fold{i}_train", f"fold{i}_test"], "subject")
        _assert_grouped(meta, k, [f"fold{i}_train", f"fold{i}_test"], "hash")


def test_fgnet_protocols():
    subjects = np.concatenate([np.repeat([f"{i:03d}" for i in range(1, 83)], 12), ["082"] * 18])  # 1,002
    meta = {"hash": np.array([f"h{i}" for i in range(1002)]), "subject": subjects,
            "origin_split": np.array([""] * 1002)}
    r = make_splits("fgnet_random30", meta)
    assert sorted(r) == sorted([f"run{i}_{s}" for i in range(10) for s in ("train", "test")])
    for i in range(10):
        assert len(r[f"run{i}_test"]) == 30
        _assert_partition(r, 1002, [f"run{i}_train", f"run{i}_test"])
    assert not np.array_equal(r["run0_test"], r["run1_test"])
    lopo = make_splits("fgnet_lopo", meta)
    assert len(lopo) == 2 * 82
    assert lopo["fold001_test"].tolist() == list(range(12))
    _assert_partition(lopo, 1002, ["fold042_train", "fold042_test"])


def test_origin_list_protocols():
    origin = ["train"] * 6 + ["test"] * 4
    meta = _meta(10, origin=origin)
    s = make_splits("megaage_asian", meta)
    assert s["train"].tolist() == list(range(6)) and s["test"].tolist() == [6, 7, 8, 9]
    meta = _meta(6, origin=["train", "val", "val", "train", "test", "train"])
    assert {k: v.tolist() for k, v in make_splits("chalearn2015", meta).items()} == {
        "train": [0, 3, 5], "val": [1, 2], "test": [4]}


def test_adience_five_folds():
    n = 500
    origin = [f"fold_{i % 5}" for i in range(n)]
    meta = _meta(n, n_subjects=100, origin=origin)
    meta["subject"] = np.array([f"u{i % 100}" for i in range(n)])  # Adience folds are subject-disjoint
    s = make_splits("adience", meta)
    for i in range(5):
        _assert_partition(s, n, [f"fold{i}_train", f"fold{i}_val", f"fold{i}_test"])
        assert set(s[f"fold{i}_test"]) == {r for r in range(n) if origin[r] == f"fold_{i}"}
        _assert_grouped(meta, s, [f"fold{i}_train", f"fold{i}_val"], "subject")
        assert 0.05 < len(s[f"fold{i}_val"]) / (n - len(s[f"fold{i}_test"])) < 0.15


def test_registry_and_chain_as_data():
    assert protocols_for("morph") == ["morph_80_20", "morph_subject_5fold"]
    assert protocols_for("utkface") == ["utkface"]
    assert all(p.dataset for p in PROTOCOLS.values())
    chain = PRETRAINING_CHAINS["imdb_wiki_morph"]
    assert [(st.dataset, st.protocol, st.split) for st in chain] == [
        ("imdb", "imdb", "train"), ("wiki", "wiki", "train"), ("morph", "morph_80_20", "train")]
    with pytest.raises(KeyError):
        make_splits("nope", _meta(5))
