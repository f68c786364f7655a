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


# --- packs from someone else: checked before anything is decompressed or written -----------------

def _rewrite_pack(src, dst, edit_header=None, replace=None):
    """A copy of the pack ``src`` with its header edited (a function of the dict) and members replaced."""
    import json

    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays["header"].tobytes().decode())
    if edit_header:
        edit_header(header)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    arrays.update(replace or {})
    np.savez_compressed(dst, **arrays)
    return dst


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("edit", [
    lambda h: h["views"].update({"../../../../x": h["views"].pop("single_32_m0.1")}),
    lambda h: h["views"].update({"/tmp/abs": h["views"].pop("single_32_m0.1")}),
    lambda h: h["views"].update({"a/b": h["views"].pop("single_32_m0.1")}),
    lambda h: h["views"].update({"x\x00y": h["views"].pop("single_32_m0.1")}),
    lambda h: h["splits"].update({"../../../../escape": h["splits"]["p"]}),
    lambda h: h["splits"]["p"].update({"../up": [0]}),
    lambda h: h["splits"]["p"].update({"train": [0, 99]}),
], ids=["view-dotdot", "view-absolute", "view-separator", "view-nul", "protocol-dotdot", "split-dotdot",
        "split-index"])
def test_a_pack_with_unsafe_names_is_refused_and_writes_nothing(cache, tmp_path, edit):
    pack_cache(cache, tmp_path / "c.npz", codec="png")
    area = tmp_path / "area"
    area.mkdir()
    bad = _rewrite_pack(tmp_path / "c.npz", area / "bad.npz", edit_header=edit)
    before = _tree(tmp_path)
    with pytest.raises(ValueError, match="not a safe name|outside"):
        unpack_cache(bad, area / "deep" / "out")
    assert _tree(tmp_path) == before  # not even the target's parent folder was made


def test_traversal_pack_through_the_command_line(cache, tmp_path, capsys):
    from agekit.cli import main

    pack_cache(cache, tmp_path / "c.npz", codec="png")
    key = "../../../../" + str(tmp_path / "x").lstrip("/")
    bad = _rewrite_pack(tmp_path / "c.npz", tmp_path / "bad.npz",
                        edit_header=lambda h: h["views"].update({key: h["views"].pop("single_32_m0.1")}))
    before = _tree(tmp_path)
    assert main(["unpack-cache", str(bad), str(tmp_path / "out")]) == 2
    assert "not a safe name" in capsys.readouterr().err
    assert _tree(tmp_path) == before and not (tmp_path / "x.npy").exists()


def test_oversized_members_are_refused_before_decompression(cache, tmp_path, monkeypatch):
    import zipfile

    from agekit.data import portable

    pack_cache(cache, tmp_path / "c.npz", codec="png")
    # a 64 MB member of zeros (compresses to ~64 KB) where 6 crops of 32x32 are declared
    bomb = np.zeros(64 * 2**20, np.uint8)
    big = _rewrite_pack(tmp_path / "c.npz", tmp_path / "big.npz", replace={"view/single_32_m0.1/data": bomb})
    assert big.stat().st_size < 2**20
    opened = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *a, **k):  # only .npy headers may be read: record how much of each member is read
        f = real_open(self, name, *a, **k)
        opened.append(f)
        return f

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    with pytest.raises(ValueError, match="67108864 encoded bytes for 6 crops"):
        unpack_cache(big, tmp_path / "out")
    assert not (tmp_path / "out").exists() and len(opened) >= 3
    assert all(f._decompressor is None or f._left > 60 * 2**20 for f in opened
               if "single_32_m0.1/data" in f.name)  # the bomb itself: header read, the rest never inflated
    # a header that declares a huge view: refused by the cap, from the shapes alone
    huge = _rewrite_pack(tmp_path / "c.npz", tmp_path / "huge.npz",
                         edit_header=lambda h: h["views"]["single_32_m0.1"].update(shape=[6, 4096, 4096, 3]))
    with pytest.raises(ValueError, match="more than the cap"):
        unpack_cache(huge, tmp_path / "out", max_bytes=10**8)
    # a member whose size disagrees with its own .npy header (6 floats declared, 256 MB of zeros behind them)
    monkeypatch.setattr(zipfile.ZipFile, "open", real_open)
    with zipfile.ZipFile(tmp_path / "c.npz") as src, zipfile.ZipFile(tmp_path / "lie.npz", "w",
                                                                     zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "meta/age.npy":
                with dst.open("meta/age.npy", "w", force_zip64=True) as f:
                    f.write(data)
                    for _ in range(4):
                        f.write(bytes(64 * 2**20))
            else:
                dst.writestr(info, data)
    assert (tmp_path / "lie.npz").stat().st_size < 4 * 2**20
    with pytest.raises(ValueError, match="member 'meta/age.npy': declares 268435608 bytes, its shape"):
        portable.check_pack(tmp_path / "lie.npz")


def test_a_crop_that_declares_another_size_is_not_decoded(cache, tmp_path):
    import cv2

    pack_cache(cache, tmp_path / "c.npz", codec="png")
    with np.load(tmp_path / "c.npz") as z:
        data, off = z["view/single_32_m0.1/data"], z["view/single_32_m0.1/offsets"]
    big = cv2.imencode(".png", np.zeros((3000, 3000, 3), np.uint8))[1].reshape(-1)  # 27 MB of pixels, 30 KB
    blobs = [big] + [data[off[i]:off[i + 1]] for i in range(1, 6)]
    new_off = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    bad = _rewrite_pack(tmp_path / "c.npz", tmp_path / "bad.npz",
                        edit_header=lambda h: h["views"]["single_32_m0.1"].update(bytes=int(new_off[-1])),
                        replace={"view/single_32_m0.1/data": np.concatenate(blobs),
                                 "view/single_32_m0.1/offsets": new_off})
    with pytest.raises(ValueError, match="declares 3000x3000, expected 32x32"):
        unpack_cache(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if ".unpack-" in p.name]


def test_unpack_goes_to_a_temporary_folder_and_renames(cache, tmp_path):
    pack_cache(cache, tmp_path / "c.npz", codec="png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        unpack_cache(tmp_path / "c.npz", out)
    assert _tree(out) == ["mine.txt"]
    c2 = unpack_cache(tmp_path / "c.npz", out, overwrite=True)
    assert len(c2) == 6 and not (out / "mine.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    (tmp_path / "empty").mkdir()
    assert len(unpack_cache(tmp_path / "c.npz", tmp_path / "empty")) == 6  # an empty folder is fine
