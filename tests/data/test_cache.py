"""PreparedCache / write_cache: round trip, memory mapping, validation."""
from __future__ import annotations

import numpy as np
import pytest

from agekit.data import META_COLUMNS, PreparedCache, write_cache


def _meta(n: int) -> dict:
    return {
        "age": np.arange(n, dtype=np.float64) + 0.5,
        "gender": np.array([0, 1, -1, 1, 0][:n]),
        "subject": np.array(["a", "b", "", "a", "c"][:n]),
        "hash": np.array([f"{i:040x}" for i in range(n)]),
        "source": np.array([f"img_{i}.jpg" for i in range(n)]),
    }


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    single = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    kres = rng.integers(0, 256, (5, 3, 64, 64, 3), dtype=np.uint8)
    splits = {"utkface": {"train": np.array([0, 1, 2]), "val": np.array([3]), "test": np.array([4])}}
    write_cache(tmp_path / "c", _meta(5), {"single_64_m0.4": single, "kres_64_m0.4_r1-1.45-1.85": kres},
                splits=splits, info={"dataset": "toy"})

    c = PreparedCache(tmp_path / "c")
    assert len(c) == 5
    assert c.views == ["kres_64_m0.4_r1-1.45-1.85", "single_64_m0.4"]
    assert c.protocols == ["utkface"]
    assert c.info["dataset"] == "toy" and c.info["rows"] == 5
    v = c.view("single_64_m0.4")
    assert isinstance(v, np.memmap) and v.dtype == np.uint8 and not v.flags.writeable
    np.testing.assert_array_equal(v, single)
    np.testing.assert_array_equal(c.view("kres_64_m0.4_r1-1.45-1.85"), kres)
    # every interface column, with its dtype and "unknown" fill values
    assert set(META_COLUMNS) <= set(c.meta)
    assert c.meta["age"].dtype == np.float32 and c.meta["age"][2] == np.float32(2.5)
    assert c.meta["gender"].dtype == np.int8 and list(c.meta["gender"]) == [0, 1, -1, 1, 0]
    assert c.meta["race"].dtype == np.int8 and (c.meta["race"] == -1).all()
    assert np.isnan(c.meta["age_std"]).all() and c.meta["face_index"].dtype == np.int16
    assert c.meta["subject"][2] == "" and c.meta["source"][4] == "img_4.jpg"
    s = c.splits("utkface")
    assert {k: v.tolist() for k, v in s.items()} == {"train": [0, 1, 2], "val": [3], "test": [4]}
    assert s["train"].dtype == np.int64


def test_write_splits_and_errors(tmp_path):
    c = write_cache(tmp_path, _meta(3), {"single_64_m0.4": np.zeros((3, 64, 64, 3), np.uint8)})
    c.write_splits("mine", {"a": [2, 0]})
    assert PreparedCache(tmp_path).splits("mine")["a"].tolist() == [2, 0]
    with pytest.raises(ValueError, match="outside"):
        c.write_splits("bad", {"a": [3]})
    with pytest.raises(KeyError, match="available"):
        c.splits("nope")
    with pytest.raises(KeyError, match="available"):
        c.view("nope")
    with pytest.raises(ValueError, match="uint8"):
        write_cache(tmp_path / "x", _meta(3), {"v": np.zeros((3, 2), np.float32)})
    with pytest.raises(ValueError, match="rows"):
        write_cache(tmp_path / "y", _meta(3), {"v": np.zeros((2, 2), np.uint8)})
    with pytest.raises(ValueError, match="hash"):
        write_cache(tmp_path / "z", {"source": np.array(["a"])}, {})
    with pytest.raises(FileNotFoundError, match="not a prepared cache"):
        PreparedCache(tmp_path / "nothing")


@pytest.mark.parametrize("name", ["../x", "/tmp/x", "a/b", "a\\b", "x\x00y", "..", ".hidden", "", "a" * 201, 7])
def test_names_that_would_leave_the_cache_folder_are_refused(tmp_path, name):
    from agekit.data.cache import check_name, create_view

    with pytest.raises(ValueError, match="not a safe name"):
        check_name(name)
    c = write_cache(tmp_path / "c", _meta(3), {})
    with pytest.raises(ValueError, match="not a safe name"):
        write_cache(tmp_path / "d", _meta(3), {name: np.zeros((3, 2), np.uint8)})
    with pytest.raises(ValueError, match="not a safe name"):
        c.write_splits(name, {"train": [0]})
    with pytest.raises(ValueError, match="not a safe name"):
        c.write_splits("p", {name: [0]})
    with pytest.raises(ValueError, match="not a safe name"):
        create_view(tmp_path / "c", name, (3, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"] and not (tmp_path / "x").exists()
    assert check_name("kres_64_m0.4_r1-1.45-1.85") == "kres_64_m0.4_r1-1.45-1.85"  # every real view key passes
