"""Label files users did not write with agekit in mind: Excel's BOM, a Latin-1 byte, an open quote, labels out of
range, the same image listed several times. Each costs at most its own row, with the file and line in the reason."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from agekit.data.datasets import get_adapter
from agekit.data.datasets.base import read_csv_rows


@pytest.fixture
def photos(tmp_path):
    for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg", "d.jpg", "é.jpg"]):
        assert cv2.imwrite(str(tmp_path / name), np.full((16, 16, 3), 40 * i, np.uint8))
    return tmp_path


def _scan(folder, data: bytes, **options):
    (folder / "labels.csv").write_bytes(data)
    adapter = get_adapter("csv")(folder / "labels.csv", **options)
    samples, bad = adapter.scan()
    return samples, {b.reason.split(":")[0]: b.reason for b in bad}, adapter.notices


def test_excel_bom_is_read(photos):
    samples, bad, notices = _scan(photos, "\ufeffpath,age,gender\r\na.jpg,31,f\r\nb.jpg,40,m\r\n".encode())
    assert [(s.source, s.age, s.gender) for s in samples] == [("a.jpg", 31.0, 1), ("b.jpg", 40.0, 0)]
    assert bad == {} and notices == []


def test_utf16_excel_unicode_text_is_read(photos):
    samples, bad, _ = _scan(photos, "path\tage\n".replace("\t", ",").encode("utf-16") +
                            "é.jpg,22\n".encode("utf-16")[2:])
    assert [(s.source, s.age) for s in samples] == [("é.jpg", 22.0)] and bad == {}


def test_a_latin1_byte_costs_a_notice_with_its_line_not_the_file(photos):
    data = b"path,age,subject\na.jpg,31,Ana\n\xe9.jpg,22,Ren\xe9\nb.jpg,40,Bo\n"
    samples, bad, notices = _scan(photos, data)
    assert [(s.source, s.age, s.subject) for s in samples] == [("a.jpg", 31.0, "Ana"), ("é.jpg", 22.0, "René"),
                                                              ("b.jpg", 40.0, "Bo")]
    assert bad == {}
    assert len(notices) == 1 and notices[0].source == "labels.csv line 3"
    assert "not UTF-8 (byte 0xe9 at column 1), read as Windows-1252" in notices[0].message


def test_an_open_quote_costs_only_its_row(photos):
    data = b'path,age\na.jpg,31\n"b.jpg,40\nc.jpg,50\nd.jpg,"6"0\n' + b"x" * 4000 + b".jpg,3\n"
    samples, bad, _ = _scan(photos, data)
    assert [(s.source, s.age) for s in samples] == [("a.jpg", 31.0), ("c.jpg", 50.0)]
    assert set(bad) == {"labels.csv line 3", "labels.csv line 5", "labels.csv line 6"}
    assert "malformed row (a quote left open)" in bad["labels.csv line 3"]
    assert "malformed row" in bad["labels.csv line 5"]
    assert "File name too long" in bad["labels.csv line 6"]  # a path the system cannot look up: that row only


def test_wrong_field_count_and_nul_cost_their_rows(photos):
    data = b"path,age,gender\na.jpg,31\nb.jpg,40,m,extra\nc.jpg,50,f,,\nd\x00.jpg,1,m\n"
    samples, bad, _ = _scan(photos, data)
    assert [s.source for s in samples] == ["c.jpg"]  # trailing empty fields (Excel) are fine
    assert "2 fields, the header has 3" in bad["labels.csv line 2"]
    assert "4 fields, the header has 3" in bad["labels.csv line 3"]
    assert "NUL" in bad["labels.csv line 5"]


@pytest.mark.parametrize("row, why", [
    ("a.jpg,30,m,300", "race '300' not in 0..4"),
    ("a.jpg,30,m,-7", "race '-7' not in 0..4"),
    ("a.jpg,30,m,2.5", "race '2.5' not in 0..4"),
    ("a.jpg,30,2,1", "unknown gender '2'"),
    ("a.jpg,nan,m,1", "age 'nan' is not a finite number"),
    ("a.jpg,inf,m,1", "age 'inf' is not a finite number"),
    ("a.jpg,121,m,1", "age 121 outside [0, 120]"),
    ("a.jpg,-1,m,1", "age -1 outside [0, 120]"),
    ("a.jpg,thirty,m,1", "age 'thirty' is not a number"),
])
def test_labels_out_of_range_are_refused_before_any_cast(photos, row, why):
    samples, bad, _ = _scan(photos, f"path,age,gender,race\nb.jpg,30,f,2\n{row}\n".encode())
    assert [(s.source, s.race) for s in samples] == [("b.jpg", 2)]
    assert list(bad) == ["labels.csv line 3"] and why in bad["labels.csv line 3"], bad


def test_age_range_follows_the_adapter_option(photos):
    samples, bad, _ = _scan(photos, b"path,age\na.jpg,70\nb.jpg,30\n", max_age=60)
    assert [s.source for s in samples] == ["b.jpg"] and "age 70 outside [0, 60]" in bad["labels.csv line 2"]


def test_an_image_listed_four_times_is_kept_once_with_a_notice(photos):
    rows = "a.jpg,30,m\nb.jpg,20,f\n./a.jpg,30,m\na.jpg,30,m\nc.jpg,9,f\na.jpg,30,m\n"
    samples, bad, notices = _scan(photos, f"path,age,gender\n{rows}".encode())
    assert [s.source for s in samples] == ["a.jpg", "b.jpg", "c.jpg"] and bad == {}
    assert [n.message for n in notices] == [
        "a.jpg: listed 4 times with the same labels (labels.csv lines 2, 4, 5, 7): kept once"]
    assert samples[0].extra["where"] == "labels.csv line 2"  # the first listing is the one kept


def test_conflicting_listings_are_all_dropped_with_one_reason(photos):
    rows = "a.jpg,30,m\nb.jpg,20,f\nb.jpg,21,f\nb.jpg,20,m\n"
    samples, bad, notices = _scan(photos, f"path,age,gender\n{rows}".encode())
    assert [s.source for s in samples] == ["a.jpg"] and notices == []
    assert bad == {"labels.csv lines 3, 4, 5": "labels.csv lines 3, 4, 5: b.jpg listed 3 times with conflicting "
                                               "labels (age 20 / 21; gender 1 / 0): none kept"}


def test_cache_refuses_labels_its_columns_cannot_hold(tmp_path):
    from agekit.data.cache import normalize_meta

    cols = normalize_meta({"hash": ["x", "y"], "source": ["a", "b"], "race": [1, 4], "age": [3.0, math.nan]})
    assert cols["race"].tolist() == [1, 4]
    with pytest.raises(ValueError, match="'race': row 1 holds 300"):
        normalize_meta({"hash": ["x", "y"], "source": ["a", "b"], "race": [1, 300]})
    with pytest.raises(ValueError, match="'gender': row 0"):
        normalize_meta({"hash": ["x"], "source": ["a"], "gender": [0.5]})


def test_every_other_adapter_reads_line_by_line(tmp_path):
    """The same reader serves MORPH's CSV, Adience's TSV folds, ChaLearn and the list files."""
    for n in ("Album2/003033_00M21.JPG", "Album2/003034_01F35.JPG"):
        (tmp_path / n).parent.mkdir(exist_ok=True)
        assert cv2.imwrite(str(tmp_path / n), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "m.csv").write_bytes(
        b"\xef\xbb\xbfid_num,race,gender,age,photo\n3033,B,M,21,Album2/003033_00M21.JPG\n"
        b'3034,W,F,"35,Album2/003034_01F35.JPG\n3034,W,F,35,Album2/003034_01F35.JPG\n3035,W,F,nan,x.JPG\n')
    samples, bad = get_adapter("morph")(tmp_path).scan()
    assert [(s.subject, s.age, s.race) for s in samples] == [("003033", 21.0, 1), ("003034", 35.0, 0)]
    assert sorted(b.reason.split(":")[0] for b in bad) == ["m.csv line 3", "m.csv line 5"]


def test_reader_reports_a_header_without_the_needed_column(tmp_path):
    (tmp_path / "l.csv").write_bytes(b"file,age\na.jpg,3\n")
    with pytest.raises(ValueError, match="l.csv line 1: the header needs column"):
        list(read_csv_rows(tmp_path / "l.csv", required=("path",)))


def test_prepare_keeps_a_listed_twice_image_once_and_says_so(photos, tmp_path):
    from test_prepare import BlankIsNoFace, _jpeg

    from agekit.data.prepare import format_summary, prepare

    for i, n in enumerate(["a.jpg", "b.jpg", "c.jpg"]):
        _jpeg(photos / n, i)
    (photos / "labels.csv").write_bytes(b"\xef\xbb\xbfpath,age,race\na.jpg,30,1\nb.jpg,20,300\na.jpg,30,1\n"
                                        b"c.jpg,9,0\na.jpg,30,1\n")
    cache = prepare("csv", photos / "labels.csv", tmp_path / "cache", views=["single_64"], detector=BlankIsNoFace(),
                    workers=1, progress=False)
    assert cache.meta["source"].tolist() == ["a.jpg", "c.jpg"] and cache.meta["race"].tolist() == [1, 0]
    report = (tmp_path / "cache" / "report.json").read_text()
    import json

    report = json.loads(report)
    assert report["counts"]["notices"] == 1 and report["counts"]["bad_records"] == 1
    assert report["bad_records"][0]["reason"].startswith("labels.csv line 3: race '300' not in 0..4")
    assert "notice: a.jpg: listed 3 times with the same labels (labels.csv lines 2, 4, 6): kept once" in \
        format_summary(report)


def test_folder_adapter_reads_what_predict_reads_and_names_the_rest(tmp_path):
    from PIL import Image

    from agekit.face.io import IMAGE_SUFFIXES

    rgb = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    for i, ext in enumerate([".gif", ".pgm", ".ppm", ".png", ".jpg", ".bmp", ".tif", ".webp"]):
        im = Image.fromarray(rgb).convert("L" if ext == ".pgm" else "RGB")
        im.save(tmp_path / f"{20 + i}_f{ext}")
    Image.fromarray(rgb).save(tmp_path / "40_m", format="PNG")  # no suffix, PNG content: predict reads it
    (tmp_path / "41_m.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    samples, bad = get_adapter("folder")(tmp_path).scan()
    assert sorted(s.source for s in samples) == ["20_f.gif", "21_f.pgm", "22_f.ppm", "23_f.png", "24_f.jpg",
                                                 "25_f.bmp", "26_f.tif", "27_f.webp", "40_m"]
    reasons = {b.source: b.reason for b in bad}
    assert set(reasons) == {"41_m.heic", "notes.txt", "loop.jpg"}  # every other entry named, none skipped silently
    assert "HEIC" in reasons["41_m.heic"] and "not an image" in reasons["notes.txt"]
    assert {".gif", ".pgm", ".ppm"} <= IMAGE_SUFFIXES
