"""Dataset adapters on small fixtures in each dataset's published layout."""
from __future__ import annotations

import math
import re
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from agekit.data.datasets import get_adapter, list_adapters
from agekit.data.datasets.adience import AGE_GROUPS, adience_age_group
from agekit.data.datasets.imdb_wiki import age_at_photo
from agekit.data.datasets.utkface import parse_utkface_name


def _img(path: Path, seed: int = 0, size: int = 24) -> Path:
    """A tiny real JPEG/PNG (written as bytes of a valid image)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), a)
    return path


def _by_source(samples):
    return {s.source: s for s in samples}


def _why(bad) -> str:
    """A bad record's reason without its leading "FILE line N: " (which every row's reason has)."""
    assert re.match(r"^.+? line \d+(, .+? line \d+)?: ", bad.reason), bad.reason
    return re.sub(r"^.+? line \d+(, .+? line \d+)?: ", "", bad.reason)


def test_registry_lists_every_dataset():
    assert set(list_adapters()) >= {"imdb", "wiki", "morph", "megaage", "megaage_asian", "fgnet", "chalearn2015",
                                    "adience", "utkface", "allagefaces", "folder", "csv"}
    assert get_adapter("MORPH2") is get_adapter("morph")
    with pytest.raises(KeyError, match="unknown dataset"):
        get_adapter("nope")


# --- UTKFace ----------------------------------------------------------------------------------

def test_utkface_names_including_the_malformed_ones():
    assert parse_utkface_name("100_1_0_20170110183726390.jpg.chip.jpg") == {"age": 100, "gender": 1, "race": 0}
    # the release's quirks: no race field, a space before the suffix, a missing dot
    assert parse_utkface_name("39_1_20170116174525125.jpg.chip.jpg") == {"age": 39, "gender": 1, "race": -1}
    assert parse_utkface_name("24_0_1_20170116220224657 .jpg.chip.jpg") == {"age": 24, "gender": 0, "race": 1}
    assert parse_utkface_name("55_0_0_20170116232725357jpg.chip.jpg") == {"age": 55, "gender": 0, "race": 0}
    with pytest.raises(ValueError, match="not age_gender_race"):
        parse_utkface_name("holiday.jpg")
    with pytest.raises(ValueError, match="gender"):
        parse_utkface_name("30_7_0_20170110183726390.jpg.chip.jpg")


def test_utkface_adapter(tmp_path):
    for i, name in enumerate(["1_0_2_20161219140623097.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg",
                              "200_0_0_20170110183726390.jpg.chip.jpg", "x_y.jpg"]):
        _img(tmp_path / name, i)
    samples, bad = get_adapter("utkface")(tmp_path).scan()
    s = _by_source(samples)
    assert sorted(s) == ["1_0_2_20161219140623097.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg"]
    assert (s["1_0_2_20161219140623097.jpg.chip.jpg"].age, s["1_0_2_20161219140623097.jpg.chip.jpg"].race) == (1, 2)
    assert s["61_1_20170109142408075.jpg.chip.jpg"].race == -1 and s["61_1_20170109142408075.jpg.chip.jpg"].gender == 1
    reasons = {b.source: b.reason for b in bad}
    assert "outside" in reasons["200_0_0_20170110183726390.jpg.chip.jpg"]
    assert "not age_gender_race" in reasons["x_y.jpg"]


def test_utkface_real_names(utkface_dir):
    samples, bad = get_adapter("utkface")(utkface_dir).scan()
    assert len(samples) == 23708 and bad == []
    assert sum(s.race == -1 for s in samples) == 3
    assert sum(s.gender == 0 for s in samples) == 12391  # shared/data/README.md
    assert min(s.age for s in samples) == 1 and max(s.age for s in samples) == 116


# --- IMDB / WIKI --------------------------------------------------------------------------------

def _datenum(d: date) -> float:
    """MATLAB datenum of a date (days from year 0): Python ordinal + 366."""
    return float(d.toordinal() + 366)


def test_ssrnet_age_formula():
    # born 1980-03-10, photo 2010 -> 30; born 1980-08-01 -> 29 (July or later counts one less)
    assert age_at_photo(_datenum(date(1980, 3, 10)), 2010) == 30
    assert age_at_photo(_datenum(date(1980, 8, 1)), 2010) == 29
    assert age_at_photo(_datenum(date(1980, 7, 1)), 2010) == 29


def _cells(values) -> np.ndarray:
    """A 1 x N MATLAB cell array (numpy object array), as in imdb.mat / wiki.mat."""
    out = np.empty((1, len(values)), dtype=object)
    for i, v in enumerate(values):
        out[0, i] = v
    return out


@pytest.mark.parametrize("name", ["imdb", "wiki"])
def test_imdb_wiki_mat(tmp_path, name):
    from scipy.io import savemat

    root = tmp_path / f"{name}_crop"
    paths = ["01/a.jpg", "02/b.jpg", "03/c.jpg", "04/d.jpg", "05/e.jpg", "06/f.jpg"]
    for i, p in enumerate(paths):
        _img(root / p, i)
    nan = np.nan
    dob = [_datenum(date(1980, 3, 10)), _datenum(date(1980, 8, 1)), _datenum(date(1990, 1, 1)),
           _datenum(date(1970, 1, 1)), _datenum(date(1900, 1, 1)), _datenum(date(1985, 5, 5))]
    struct = {
        "dob": np.array([dob]),
        "photo_taken": np.array([[2010, 2010, 2012, 2000, 2010, 2011]]),
        "full_path": _cells(paths),
        "gender": np.array([[1.0, 0.0, 1.0, nan, 1.0, 0.0]]),
        "name": _cells([f"n{i}" for i in range(6)]),
        "face_location": _cells([np.array([[10.5, 20.5, 110.0, 120.0]]) for _ in range(6)]),
        "face_score": np.array([[4.2, 1.5, 0.5, 3.0, 3.0, 2.0]]),
        "second_face_score": np.array([[nan, nan, nan, nan, nan, 1.7]]),
    }
    if name == "imdb":
        struct["celeb_id"] = np.array([[7, 7, 8, 9, 10, 11]])
    savemat(root / f"{name}.mat", {name: struct})
    samples, bad = get_adapter(name)(tmp_path).scan()
    s = _by_source(samples)
    assert sorted(s) == [f"{name}_crop/01/a.jpg", f"{name}_crop/02/b.jpg"]
    a, b = s[f"{name}_crop/01/a.jpg"], s[f"{name}_crop/02/b.jpg"]
    assert (a.age, a.gender) == (30.0, 0)  # IMDB gender 1 = male -> agekit 0
    assert (b.age, b.gender) == (29.0, 1)
    assert a.box == (10.5, 20.5, 110.0, 120.0)
    assert a.subject == ("7" if name == "imdb" else "n0")
    reasons = sorted(r.reason.split(" ")[0] for r in bad)
    assert reasons == ["age", "face_score", "gender", "second"]  # 110 years; 0.5 < 1; NaN; two faces


# --- MORPH II ---------------------------------------------------------------------------------

def test_morph_file_names(tmp_path):
    _img(tmp_path / "Album2" / "012345_1M46.JPG", 0)
    _img(tmp_path / "Album2" / "012345_2M47.JPG", 1)
    _img(tmp_path / "Album2" / "000777_00F21.JPG", 2)
    _img(tmp_path / "Album2" / "junk.JPG", 3)
    samples, bad = get_adapter("morph")(tmp_path).scan()
    s = _by_source(samples)
    assert (s["Album2/012345_1M46.JPG"].subject, s["Album2/012345_1M46.JPG"].gender,
            s["Album2/012345_1M46.JPG"].age) == ("012345", 0, 46.0)
    assert (s["Album2/000777_00F21.JPG"].gender, s["Album2/000777_00F21.JPG"].age) == (1, 21.0)
    assert [b.source for b in bad] == ["Album2/junk.JPG"]


def test_morph_csv(tmp_path):
    _img(tmp_path / "Album2" / "003033_00M21.JPG", 0)
    _img(tmp_path / "Album2" / "003034_01F35.JPG", 1)
    (tmp_path / "MORPH_Album2_Commercial.csv").write_text(
        "id_num,picture_num,dob,doa,race,gender,facial_hair,age,age_diff,glasses,photo\n"
        "3033,0,05/04/1980,01/02/2002,B,M,0,21,0,0,Album2/003033_00M21.JPG\n"
        "3034,1,01/01/1970,01/02/2005,W,F,0,35,0,0,Album2\\003034_01F35.JPG\n"
        "3035,0,01/01/1970,01/02/2005,W,F,0,35,0,0,Album2/003035_00F35.JPG\n"
        "3036,0,01/01/1970,01/02/2005,W,F,0,old,0,0,Album2/003036_00F35.JPG\n"
    )
    samples, bad = get_adapter("morph")(tmp_path).scan()
    s = _by_source(samples)
    assert (s["Album2/003033_00M21.JPG"].race, s["Album2/003033_00M21.JPG"].subject) == (1, "003033")
    assert (s["Album2/003034_01F35.JPG"].race, s["Album2/003034_01F35.JPG"].gender) == (0, 1)
    assert sorted(_why(b).split(":")[0] for b in bad) == ["malformed CSV row", "missing"]
    assert sorted(b.reason.split(":")[0] for b in bad) == ["MORPH_Album2_Commercial.csv line 4",
                                                           "MORPH_Album2_Commercial.csv line 5"]


# --- MegaAge ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["megaage", "megaage_asian"])
def test_megaage_lists(tmp_path, name):
    (tmp_path / "list").mkdir()
    for split, names in (("train", ["1.jpg", "2.jpg"]), ("test", ["1.jpg", "9.jpg", "3.jpg"])):
        for i, n in enumerate(names):
            if n != "9.jpg":
                _img(tmp_path / split / n, i)
        (tmp_path / "list" / f"{split}_name.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "list" / "train_age.txt").write_text("23\n70\n")
    (tmp_path / "list" / "test_age.txt").write_text("5\n40\n200\n")
    samples, bad = get_adapter(name)(tmp_path).scan()
    s = {(x.origin_split, x.source): x.age for x in samples}
    assert s == {("train", "train/1.jpg"): 23.0, ("train", "train/2.jpg"): 70.0, ("test", "test/1.jpg"): 5.0}
    assert sorted((b.source, _why(b).split(" ")[0]) for b in bad) == [("test/3.jpg", "age"), ("test/9.jpg", "missing")]
    assert sorted(b.reason.split(":")[0] for b in bad) == ["list/test_name.txt line 2", "list/test_name.txt line 3"]


# --- FG-NET ------------------------------------------------------------------------------------

def test_fgnet_names(tmp_path):
    for i, n in enumerate(["001A02.JPG", "001A43a.JPG", "001A43b.JPG", "082A69.JPG", "readme.JPG"]):
        _img(tmp_path / "images" / n, i)
    samples, bad = get_adapter("fgnet")(tmp_path).scan()
    got = sorted((s.source, s.subject, s.age) for s in samples)
    assert got == [("images/001A02.JPG", "001", 2.0), ("images/001A43a.JPG", "001", 43.0),
                   ("images/001A43b.JPG", "001", 43.0), ("images/082A69.JPG", "082", 69.0)]
    assert [b.source for b in bad] == ["images/readme.JPG"]


# --- ChaLearn LAP 2015 ------------------------------------------------------------------------

def test_chalearn_csvs(tmp_path):
    for i, n in enumerate(["image_1.jpg", "image_2.jpg"]):
        _img(tmp_path / "Train" / n, i)
    _img(tmp_path / "Validation" / "image_3.jpg", 3)
    (tmp_path / "Train.csv").write_text("image,mean,std\nimage_1.jpg,34.5,4.25\nimage_2.jpg,x,1\nimage_7.jpg,3,1\n")
    (tmp_path / "Validation.csv").write_text("image_3.jpg;12.0;2.5\n")
    samples, bad = get_adapter("chalearn2015")(tmp_path).scan()
    got = sorted((s.origin_split, s.source, s.age, s.age_std) for s in samples)
    assert got == [("train", "Train/image_1.jpg", 34.5, 4.25), ("val", "Validation/image_3.jpg", 12.0, 2.5)]
    assert sorted(_why(b) for b in bad) == ["mean 'x' is not a number", "missing"]


# --- Adience ------------------------------------------------------------------------------------

def test_adience_age_groups():
    assert [adience_age_group(f"({a}, {b})") for a, b in AGE_GROUPS] == list(range(8))
    assert adience_age_group("(38, 42)") == 5 and adience_age_group("(27, 32)") == 4
    assert adience_age_group("35") == 4 and adience_age_group("3") == 0  # 3: equidistant 0-2 / 4-6 -> first
    with pytest.raises(ValueError):
        adience_age_group("None")


def test_adience_folds(tmp_path):
    header = ("user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\t"
              "fiducial_yaw_angle\tfiducial_score\n")
    rows = {
        0: [("30601258@N03", "10399646885_67c7d20df9_o.jpg", "1", "(25, 32)", "f", 0, 414, 1086, 1383)],
        1: [("7153718@N04", "11597371336_dd3ec4a5e5_o.jpg", "2", "(0, 2)", "m", 10, 20, 100, 120),
            ("7153718@N04", "missing.jpg", "3", "(0, 2)", "u", 1, 2, 3, 4),
            ("7153718@N04", "none.jpg", "4", "None", "u", 1, 2, 3, 4)],
    }
    for fold, rs in rows.items():
        lines = [header]
        for user, img, fid, age, g, x, y, dx, dy in rs:
            lines.append(f"{user}\t{img}\t{fid}\t{age}\t{g}\t{x}\t{y}\t{dx}\t{dy}\t-95\t0\t59\n")
            if img not in ("missing.jpg",):
                _img(tmp_path / "faces" / user / f"coarse_tilt_aligned_face.{fid}.{img}", int(fid))
        (tmp_path / f"fold_{fold}_data.txt").write_text("".join(lines))
    samples, bad = get_adapter("adience")(tmp_path).scan()
    got = sorted((s.origin_split, s.subject, s.age_group, s.gender, s.box) for s in samples)
    assert got == [("fold_0", "30601258@N03", 4, 1, (0.0, 414.0, 1086.0, 1797.0)),
                   ("fold_1", "7153718@N04", 0, 0, (10.0, 20.0, 110.0, 140.0))]
    assert all(math.isnan(s.age) for s in samples)
    assert sorted(_why(b).split(":")[0] for b in bad) == ["malformed row", "missing"]


# --- All-Age-Faces ----------------------------------------------------------------------------

def test_all_age_faces(tmp_path):
    for i, n in enumerate(["00000A02.jpg", "07380A25.jpg", "07381A30.jpg", "13321A80.jpg", "bad.jpg"]):
        _img(tmp_path / "aligned faces" / n, i)
    sets = tmp_path / "image sets"
    sets.mkdir()
    (sets / "train.txt").write_text("00000A02.jpg 0\n07381A30.jpg 1\n")
    (sets / "val.txt").write_text("07380A25 0\n13321A80.jpg 0\n")  # last: list says female, id says male
    samples, bad = get_adapter("allagefaces")(tmp_path).scan()
    got = sorted((s.source, s.age, s.gender, s.origin_split) for s in samples)
    assert got == [("aligned faces/00000A02.jpg", 2.0, 1, "train"), ("aligned faces/07380A25.jpg", 25.0, 1, "val"),
                   ("aligned faces/07381A30.jpg", 30.0, 0, "train"), ("aligned faces/13321A80.jpg", 80.0, 0, "val")]
    assert sorted(b.reason.split(" ")[0] for b in bad) == ["file", "image"]
    assert [_why(b) for b in bad if "line" in b.reason] == ["list gender disagrees with the id range"]


# --- generic folder / CSV -----------------------------------------------------------------------

def test_folder_regex_and_csv(tmp_path):
    _img(tmp_path / "p" / "person7_age33_f.jpg", 0)
    _img(tmp_path / "p" / "holiday.jpg", 1)
    pattern = r"person(?P<subject>\d+)_age(?P<age>\d+)_(?P<gender>[mf])"
    samples, bad = get_adapter("folder")(tmp_path, pattern=pattern).scan()
    assert [(s.source, s.subject, s.age, s.gender) for s in samples] == [("p/person7_age33_f.jpg", "7", 33.0, 1)]
    assert [b.source for b in bad] == ["p/holiday.jpg"]

    (tmp_path / "labels.csv").write_text("path,age,gender,split\np/person7_age33_f.jpg,33,m,test\n"
                                         "p/holiday.jpg,,f,\np/gone.jpg,3,m,\np/holiday.jpg,-4,m,\n"
                                         "p/holiday.jpg,12,q,\n")
    samples, bad = get_adapter("csv")(tmp_path / "labels.csv").scan()
    got = [(s.source, s.age, s.gender, s.origin_split) for s in samples]
    assert got[0] == ("p/person7_age33_f.jpg", 33.0, 0, "test")
    assert got[1][0] == "p/holiday.jpg" and math.isnan(got[1][1]) and got[1][2] == 1
    assert sorted(_why(b).split(" ")[0] for b in bad) == ["age", "missing", "unknown"]
