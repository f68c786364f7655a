"""agekit pack-cache / unpack-cache: a prepared cache in one file and back."""
from __future__ import annotations

import numpy as np
import pytest

from agekit.data.cache import PreparedCache, write_cache
from agekit.data.portable import pack_cache, unpack_cache


@pytest.fixture()
def cache(tmp_path):
    rng = np.random.default_rng(0)
    n = 6
    # smooth images (a gradient plus a little noise): what lossy codecs handle well, like faces
    yy, xx = np.mgrid[0:32, 0:32]
    base = np.stack([xx * 6, yy * 6, (xx + yy) * 3], -1).astype(np.int16)
    imgs = np.stack([np.clip(base + rng.integers(-3, 4, base.shape) + 10 * i, 0, 255) for i in range(n)]).astype(np.uint8)
    meta = {"age": np.arange(n, dtype=np.float32) * 10, "gender": np.array([0, 1] * 3, np.int8),
            "hash": np.array([f"{i:040x}" for i in range(n)]), "source": np.array([f"img{i}.jpg" for i in range(n)])}
    views = {"single_32_m0.1": imgs, "kres_32_m0.4_r1-1.45": np.stack([imgs, imgs[::-1]], 1)}
    splits = {"p": {"train": np.arange(4), "test": np.arange(4, 6)}}
    return write_cache(tmp_path / "c", meta, views, splits, {"dataset": "tiny"})


def test_png_round_trip_is_exact(cache, tmp_path):
    res = pack_cache(cache, tmp_path / "c.npz", codec="png")
    assert res["rows"] == 6 and set(res["views"]) == {"single_32_m0.1", "kres_32_m0.4_r1-1.45"}
    c2 = unpack_cache(tmp_path / "c.npz", tmp_path / "u")
    for key in cache.views:  # multi-crop views too
        assert np.array_equal(c2.view(key), cache.view(key)), key
    for k in ("age", "gender", "hash", "source"):
        assert np.array_equal(c2.meta[k], cache.meta[k]), k
    assert {k: v.tolist() for k, v in c2.splits("p").items()} == {"train": [0, 1, 2, 3], "test": [4, 5]}
    assert c2.info["dataset"] == "tiny" and c2.info["packed"]["codec"] == "png"


def test_lossy_codecs_stay_close_and_views_can_be_chosen(cache, tmp_path):
    for codec in ("jpeg", "webp"):
        pack_cache(cache, tmp_path / f"{codec}.npz", views=["single_32_m0.1"], codec=codec, quality=95)
        c2 = unpack_cache(tmp_path / f"{codec}.npz", tmp_path / codec)
        assert c2.views == ["single_32_m0.1"]
        err = np.abs(c2.view("single_32_m0.1").astype(int) - cache.view("single_32_m0.1").astype(int)).mean()
        assert 0 < err < 4, (codec, err)
    with pytest.raises(KeyError, match="no view"):
        pack_cache(cache, tmp_path / "x.npz", views=["nope"])
    with pytest.raises(ValueError, match="codec"):
        pack_cache(cache, tmp_path / "x.npz", codec="gif")
    np.savez(tmp_path / "other.npz", header=np.frombuffer(b'{"format": "x"}', np.uint8))
    with pytest.raises(ValueError, match="not an agekit packed cache"):
        unpack_cache(tmp_path / "other.npz", tmp_path / "o")
    assert isinstance(PreparedCache(tmp_path / "jpeg"), PreparedCache)
