"""All-Age-Faces: both published layouts, the list files, and the committed fixed train/val/test split."""
from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from agekit.data.datasets import get_adapter
from agekit.data.datasets.allagefaces import (
    fixed_split_from_root,
    fixed_split_rows,
    make_fixed_split,
    parse_name,
    read_split_file,
    write_split_file,
)
from agekit.data.protocols import make_splits
from conftest import shared_path


def _img(path: Path, seed: int = 0, size: int = 24) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))
    return path


NAMES = ["00000A02.jpg", "00001A02.jpg", "07380A25.jpg", "07381A30.jpg", "13321A80.jpg"]


def _full_release(root: Path) -> None:
    """The full dataset's layout: photos, aligned faces spelled 'aglined', four list files."""
    for i, n in enumerate(NAMES):
        _img(root / "original images" / n, i)
        _img(root / "aglined faces" / n, 10 + i)
    sets = root / "image sets"
    sets.mkdir()
    (sets / "train.txt").write_text("00000A02.jpg 0\n07381A30.jpg 1\n")
    (sets / "val.txt").write_text("07380A25.jpg 0\n")
    (sets / "train_.txt").write_text("00000A02.jpg 0\n00001A02.jpg 0\n07381A30.jpg 1\n")
    (sets / "val_.txt").write_text("07380A25.jpg 0\n13321A80.jpg 1\n")


def test_full_release_layout_reads_photos_by_default_and_aglined_faces_on_request(tmp_path):
    _full_release(tmp_path)
    samples, bad = get_adapter("allagefaces")(tmp_path).scan()
    assert bad == []
    got = sorted((s.source, s.age, s.gender, s.subject, s.origin_split) for s in samples)
    assert got == [
        ("original images/00000A02.jpg", 2.0, 1, "00000", "train"),
        ("original images/00001A02.jpg", 2.0, 1, "00001", "train_"),  # only in the underscore list
        ("original images/07380A25.jpg", 25.0, 1, "07380", "val"),
        ("original images/07381A30.jpg", 30.0, 0, "07381", "train"),
        ("original images/13321A80.jpg", 80.0, 0, "13321", "val_"),
    ]
    aligned, bad = get_adapter("allagefaces")(tmp_path, images="aligned").scan()
    assert bad == [] and sorted(s.source for s in aligned) == [f"aglined faces/{n}" for n in NAMES]


def test_subset_layout_with_train_underscore_list_only(tmp_path):
    """The layout at hand: `original images` and `image sets/train_.txt`, nothing else."""
    for i, n in enumerate(NAMES[:3]):
        _img(tmp_path / "original images" / n, i)
    (tmp_path / "image sets").mkdir()
    (tmp_path / "image sets" / "train_.txt").write_text("00000A02.jpg 0\n00001A02.jpg 0\n07380A25.jpg 1\n")
    samples, bad = get_adapter("aaf")(tmp_path).scan()
    assert [(s.source, s.origin_split) for s in samples] == [(f"original images/{n}", "train_") for n in NAMES[:3]]
    assert [b.reason.split(": ", 1)[1] for b in bad] == ["list gender disagrees with the id range"]  # 07380 is female
    with pytest.raises(FileNotFoundError, match="no image folder"):
        get_adapter("allagefaces")(tmp_path, images="aligned")


def test_fixed_split_is_stratified_grouped_and_deterministic():
    # 20 women aged 20-29 (serials 100..119) and 10 men aged 40-49: 70/10/20 of each stratum, hand-counted
    names = [f"{s:05d}A25.jpg" for s in range(100, 120)] + [f"{s:05d}A45" for s in range(8000, 8010)]
    split = make_fixed_split(names)
    assert len(split) == 30 and set(split) == {Path(n).stem for n in names}
    women = collections.Counter(v for k, v in split.items() if parse_name(k)[0] < 7381)
    men = collections.Counter(v for k, v in split.items() if parse_name(k)[0] >= 7381)
    assert women == {"train": 14, "val": 2, "test": 4} and men == {"train": 7, "val": 1, "test": 2}
    assert make_fixed_split(list(reversed(names))) == split  # the order of the list does not matter
    assert make_fixed_split(names, seed=1) != split
    # byte-identical photos under two serials (one group key) share a split, whatever the seed
    groups = {"00100A25": "h1", "00117A25": "h1", "08001A45": "h2", "08009A45": "h2"}
    for seed in range(6):
        g = make_fixed_split(names, seed=seed, groups=groups)
        assert g["00100A25"] == g["00117A25"] and g["08001A45"] == g["08009A45"]
    with pytest.raises(ValueError, match="not an All-Age-Faces name"):
        make_fixed_split(["holiday.jpg"])


def test_split_file_round_trip_and_rows_by_serial(tmp_path):
    f = tmp_path / "s.csv"
    write_split_file({"00001A02": "test", "00000A02": "train"}, f)
    assert f.read_text() == "name,split\n00000A02,train\n00001A02,test\n"
    assert read_split_file(f) == {"00000A02": "train", "00001A02": "test"}
    f.write_text("name,split\n00000A02\n")
    with pytest.raises(ValueError, match="line 2: malformed row"):
        read_split_file(f)
    meta = {"source": np.array(["original images/00001A02.jpg", "aglined faces/00000A02.jpg", "x/09999A33.jpg"])}
    rows = fixed_split_rows(meta, {"00000A02": "train", "00001A02": "test"})
    assert {k: v.tolist() for k, v in rows.items()} == {"train": [1], "test": [0]}  # 09999: in no split


def test_committed_fixed_split():
    split = read_split_file()
    assert len(split) == 10_137
    assert collections.Counter(split.values()) == {"train": 7089, "val": 1022, "test": 2026}
    # the protocol reads it; a cache row is matched by its serial number
    names = ["original images/00000A02.jpg", "original images/00001A02.jpg", "original images/13321A80.jpg"]
    meta = {"source": np.array(names), "hash": np.array(["a", "b", "c"])}
    rows = make_splits("allagefaces_fixed", meta)
    assert sum(len(v) for v in rows.values()) == sum(Path(n).stem in split for n in names)


def test_committed_fixed_split_is_made_from_the_release():
    root = shared_path("data", "allagefaces")
    assert fixed_split_from_root(root) == read_split_file()
