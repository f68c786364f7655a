"""agekit prepare: bad files reported and skipped, duplicates and conflicts, resume after a kill."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from agekit.data import PreparedCache
from agekit.data.prepare import PrepareInterrupted, crop_shape, prepare, resolve_views, sha1_file
from agekit.face.detect import CroppedDetector
from agekit.preprocessing import C3AE_CONTEXT, SSRNET, hsr_kres


class BlankIsNoFace(CroppedDetector):
    """The whole photo is the face, unless the photo is flat (a blank wall: no face)."""

    name = "test_blank_is_no_face"

    def detect(self, image_rgb):
        return [] if np.asarray(image_rgb).std() < 1.0 else super().detect(image_rgb)


def _jpeg(path: Path, seed: int, size: int = 48) -> Path:
    import cv2

    rng = np.random.default_rng(seed)
    a = cv2.resize(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_LINEAR)
    assert cv2.imwrite(str(path), a)
    return path


def _toy_utkface(root: Path, n_good: int = 10) -> dict[str, str]:
    """A UTKFace-style folder with good photos, every kind of bad file and a duplicate with other labels."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_good):
        _jpeg(root / f"{20 + i}_{i % 2}_{i % 5}_2017011{i:010d}.jpg.chip.jpg", i)
    good = root / "20_0_0_20170110000000000.jpg.chip.jpg"
    # byte-identical copy labelled 80 / female: a duplicate group with an age and a gender conflict
    (root / "80_1_0_20170119999999999.jpg.chip.jpg").write_bytes(good.read_bytes())
    data = good.read_bytes()
    (root / "30_0_0_20170111111111111.jpg.chip.jpg").write_bytes(data[: len(data) // 2])  # truncated
    (root / "31_0_0_20170112222222222.jpg.chip.jpg").write_bytes(b"")  # zero bytes
    (root / "32_0_0_20170113333333333.jpg.chip.jpg").write_text("not a picture at all")  # not an image
    (root / "holiday_photo.jpg").write_bytes(data)  # unparsable name (a bad record, never hashed)
    import cv2

    cv2.imwrite(str(root / "33_1_0_20170114444444444.jpg.chip.jpg"), np.full((48, 48, 3), 128, np.uint8))  # no face
    return {
        "30_0_0_20170111111111111.jpg.chip.jpg": "truncated",
        "31_0_0_20170112222222222.jpg.chip.jpg": "zero bytes",
        "32_0_0_20170113333333333.jpg.chip.jpg": "not an image",
        "33_1_0_20170114444444444.jpg.chip.jpg": "no face",
    }


VIEWS = ["single_64", "kres_64", "c3ae_64"]


def _run(root, out, **kw):
    kw.setdefault("detector", BlankIsNoFace())
    kw.setdefault("workers", 1)
    kw.setdefault("chunk_size", 4)
    kw.setdefault("progress", False)
    return prepare("utkface", root, out, views=VIEWS, **kw)


def _same_cache(a: PreparedCache, b: PreparedCache) -> None:
    assert len(a) == len(b) and a.views == b.views and a.protocols == b.protocols
    for k in a.meta:
        np.testing.assert_array_equal(a.meta[k], b.meta[k], err_msg=k)
    for k in a.views:
        np.testing.assert_array_equal(a.view(k), b.view(k), err_msg=k)
    for p in a.protocols:
        sa, sb = a.splits(p), b.splits(p)
        assert sa.keys() == sb.keys() and all(np.array_equal(sa[s], sb[s]) for s in sa)


def test_view_names_resolve_to_the_families_specs():
    specs = resolve_views(["single_64", "ssrnet", "hsr", "kres_64", "c3ae_64", "lmtcnn"])
    assert [s.view_key for s in specs] == [SSRNET.view_key, hsr_kres(3).view_key, C3AE_CONTEXT.view_key,
                                           "lmtcnn_227_m0.4_z256"]
    assert [crop_shape(s) for s in specs] == [(64, 64, 3), (3, 64, 64, 3), (3, 64, 64, 3), (256, 256, 3)]
    with pytest.raises(ValueError, match="unknown view"):
        resolve_views(["nope"])
    (k,) = resolve_views(["kres_64_m0.1"])  # HSR's three resolutions around agekit's tighter crop
    assert k.view_key == "kres_64_m0.1_r1-1.45-1.85" and k.ratios == (1.0, 1.45, 1.85) and k.margin == 0.1
    assert crop_shape(k) == (3, 64, 64, 3)


def test_prepare_reports_and_skips_bad_files(tmp_path):
    expected_drops = _toy_utkface(tmp_path / "raw")
    cache = _run(tmp_path / "raw", tmp_path / "cache")
    report = json.loads((tmp_path / "cache" / "report.json").read_text())
    c = report["counts"]
    assert c["records"] == 16 and c["bad_records"] == 1
    assert report["bad_records"] == [{"source": "holiday_photo.jpg",
                                      "reason": "file name 'holiday_photo.jpg' is not age_gender_race_timestamp"}]
    assert {d["source"]: d["reason"] for d in report["dropped"]} == expected_drops
    assert c["images_processed"] == 15 and c["images_kept"] == 11 and c["faces_kept"] == 11
    # duplicates: the copy labelled 80/female; every other file is distinct
    dup = report["duplicates"]
    assert (dup["groups"], dup["files_in_groups"], dup["age_conflicts"], dup["gender_conflicts"]) == (1, 2, 1, 1)
    assert dup["conflict_groups"][0]["ages"] == [20.0, 80.0] and dup["conflict_groups"][0]["genders"] == [0, 1]
    assert dup["hashed_files"] == 15  # unreadable files are hashed too; only the bad record is not
    # the cache: rows in sample order, labels and content hashes
    assert len(cache) == 11 and cache.views == sorted(s.view_key for s in resolve_views(VIEWS))
    src = list(cache.meta["source"])
    assert src == sorted(src)
    row = src.index("80_1_0_20170119999999999.jpg.chip.jpg")
    assert (cache.meta["age"][row], cache.meta["gender"][row]) == (80.0, 1)
    assert cache.meta["hash"][row] == sha1_file(tmp_path / "raw" / "20_0_0_20170110000000000.jpg.chip.jpg")
    assert cache.view(SSRNET.view_key).shape == (11, 64, 64, 3)
    assert cache.view(hsr_kres(3).view_key).shape == (11, 3, 64, 64, 3)
    # the utkface protocol: identical images share a split
    s = cache.splits("utkface")
    assert sorted(np.concatenate(list(s.values())).tolist()) == list(range(11))
    twin = src.index("20_0_0_20170110000000000.jpg.chip.jpg")
    assert [k for k, v in s.items() if twin in v] == [k for k, v in s.items() if row in v]
    assert cache.info["counts"]["faces_kept"] == 11
    assert report["split_leaks"] == {"utkface": 0}
    assert not (tmp_path / "cache" / "work").exists()


def test_resume_after_interruption_gives_the_same_cache(tmp_path):
    _toy_utkface(tmp_path / "raw")
    full = _run(tmp_path / "raw", tmp_path / "full")
    with pytest.raises(PrepareInterrupted):
        _run(tmp_path / "raw", tmp_path / "cut", stop_after=2)
    work = tmp_path / "cut" / "work"
    journal = (work / "journal.jsonl").read_text()
    assert journal.count("chunk_done") == 2
    # what a kill in the middle of a commit leaves: a cut journal line and a temporary shard
    with open(work / "journal.jsonl", "a") as f:
        f.write('{"chunk": 3, "index": 12, "hash": "ab')
    (work / "shards" / "chunk_000003.tmp.npz").write_bytes(b"partial")
    resumed = _run(tmp_path / "raw", tmp_path / "cut", workers=2)
    report = json.loads((tmp_path / "cut" / "report.json").read_text())
    assert report["timing"]["resumed_images"] == 8 and report["timing"]["this_run_images"] == 7
    _same_cache(full, resumed)


def test_a_worker_that_dies_costs_only_its_image(tmp_path, monkeypatch):
    import os

    from agekit.data import prepare as P

    _toy_utkface(tmp_path / "raw")
    full = _run(tmp_path / "raw", tmp_path / "full")
    victim = "24_0_4_20170110000000004.jpg.chip.jpg"
    real = P._process_item

    def dies_on_victim(index, path, keys):  # the forked workers inherit this
        if path.endswith(victim):
            os._exit(9)
        return real(index, path, keys)

    monkeypatch.setattr(P, "_process_item", dies_on_victim)
    got = _run(tmp_path / "raw", tmp_path / "hit", workers=2)
    report = json.loads((tmp_path / "hit" / "report.json").read_text())
    assert {d["source"]: d["reason"] for d in report["dropped"]}[victim] == P.WORKER_DIED
    assert len(got) == len(full) - 1  # every other image of the victim's chunk (and of the chunks in flight) kept
    assert set(got.meta["source"]) == set(full.meta["source"]) - {victim}


def test_limit_then_full_run_and_other_settings_refused(tmp_path):
    _toy_utkface(tmp_path / "raw")
    with pytest.raises(PrepareInterrupted):
        _run(tmp_path / "raw", tmp_path / "c", stop_after=1, limit=6)
    with pytest.raises(ValueError, match="other settings"):
        prepare("utkface", tmp_path / "raw", tmp_path / "c", views=["single_64"], detector=BlankIsNoFace(),
                workers=1, chunk_size=4, progress=False)
    # a --limit run then the whole dataset: the cut chunk is redone, the result equals a fresh run
    _run(tmp_path / "raw", tmp_path / "c", limit=6)
    assert len(PreparedCache(tmp_path / "c")) == 6  # the first six names (ages 20-25) are all good photos
    _run(tmp_path / "raw", tmp_path / "c2", limit=6, keep_work=True)
    whole = _run(tmp_path / "raw", tmp_path / "c2")
    _same_cache(whole, _run(tmp_path / "raw", tmp_path / "fresh"))


def test_cli_prepare_with_dlib_drops_a_blank_photo(tmp_path, capsys):
    import cv2

    from agekit.cli import main

    (tmp_path / "raw").mkdir()
    cv2.imwrite(str(tmp_path / "raw" / "40_0_0_20170110000000001.jpg.chip.jpg"), np.full((120, 120, 3), 90, np.uint8))
    rc = main(["prepare", "utkface", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "c"),
               "--views", "single_64", "--workers", "1", "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "0 kept" in out and "no face x1" in out
    assert len(PreparedCache(tmp_path / "c")) == 0


def test_real_utkface_subset(tmp_path, utkface_dir):
    names = sorted(os.listdir(utkface_dir))
    chosen = names[:: len(names) // 12][:12] + [
        "39_1_20170116174525125.jpg.chip.jpg", "24_0_1_20170116220224657 .jpg.chip.jpg"]  # malformed names
    raw = tmp_path / "raw"
    raw.mkdir()
    for n in chosen:
        (raw / n).symlink_to(utkface_dir / n)
    cache = prepare("utkface", raw, tmp_path / "c", views=["single_64"], detector="dlib", workers=1,
                    progress=False)
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert report["counts"]["bad_records"] == 0 and report["counts"]["images_processed"] == len(chosen)
    # dlib finds a face in ~99 % of UTKFace; allow one miss in this small sample
    assert len(cache) >= len(chosen) - 1
    assert {d["reason"] for d in report["dropped"]} <= {"no face"}
    v = cache.view(SSRNET.view_key)
    assert v.shape[1:] == (64, 64, 3) and v.std() > 10  # real face crops, not blank
    row = [i for i, s in enumerate(cache.meta["source"]) if s.startswith("39_1_")]
    assert row and cache.meta["race"][row[0]] == -1 and cache.meta["age"][row[0]] == 39


def test_max_pixels_refuses_large_photos_from_their_header_and_can_be_raised(tmp_path):
    """48x48 = 2,304 pixels: a cap of 2,000 refuses every photo before decoding; 2,304 lets them through."""
    _toy_utkface(tmp_path / "raw", n_good=3)
    _run(tmp_path / "raw", tmp_path / "capped", max_pixels=2_000)
    report = json.loads((tmp_path / "capped" / "report.json").read_text())
    reasons = {d["source"]: d["reason"] for d in report["dropped"]}
    good = "20_0_0_20170110000000000.jpg.chip.jpg"
    assert reasons[good] == "too many pixels (48x48 = 0.0023 MP > 0.002 MP allowed; --max-pixels raises the limit)"
    assert report["counts"]["images_kept"] == 0
    cache = _run(tmp_path / "raw", tmp_path / "raised", max_pixels=48 * 48)
    assert len(cache) == 4  # the three good photos and the relabelled copy (the blank one has no face)


def test_cli_prepare_passes_max_pixels(tmp_path, monkeypatch):
    import agekit.data.prepare as prep

    seen = {}

    def fake_prepare(*args, **kw):
        seen.update(kw)
        raise prep.PrepareInterrupted("stopped by the test")

    monkeypatch.setattr(prep, "prepare", fake_prepare)
    from agekit.cli import main

    main(["prepare", "utkface", "--root", str(tmp_path), "--out", str(tmp_path / "c"), "--max-pixels", "1234"])
    assert seen["max_pixels"] == 1234
