"""``agekit predict``: a folder with a bad file reports it and goes on; JSON, CSV, table, annotate, video."""
from __future__ import annotations

import csv
import io
import json
import os

import cv2
import pytest

from agekit.cli import main


@pytest.fixture
def folder(tmp_path):
    from test_estimator import faces

    d = tmp_path / "photos"
    d.mkdir()
    for i, im in enumerate(faces(3, seed=2)):
        cv2.imwrite(str(d / f"face{i}.jpg"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return d


@pytest.fixture
def model(tmp_path):
    from test_estimator import tiny_checkpoint

    return str(tiny_checkpoint(tmp_path / "tiny.pt"))


def test_json_reports_bad_file_and_goes_on(folder, model, capsys, tmp_path):
    argv = ["predict", str(folder), "--model", model, "--detector", "cropped", "--json", "--backend", "torch"]
    assert main(argv + ["--annotate", str(tmp_path / "ann")]) == 0
    cap = capsys.readouterr()
    res = [json.loads(line) for line in cap.out.splitlines()]  # JSON lines
    assert len(res) == 4
    bad = [r for r in res if r["source"].endswith("broken.jpg")][0]
    assert bad["error"] and not bad["faces"]
    assert "broken.jpg" in cap.err
    good = [r for r in res if r["error"] is None]
    assert len(good) == 3 and all(0 <= r["faces"][0]["age"] <= 100 for r in good)
    assert sorted(p.name for p in (tmp_path / "ann").iterdir()) == [f"face{i}.annotated.jpg" for i in range(3)]


def test_csv_and_table(folder, model, capsys):
    assert main(["predict", str(folder / "*.jpg"), "--model", model, "--detector", "cropped", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4 and sum(bool(r["error"]) for r in rows) == 1
    ages = [float(r["age"]) for r in rows if r["age"]]
    assert len(ages) == 3
    assert main(["predict", str(folder / "face0.jpg"), "--model", model, "--detector", "cropped"]) == 0
    out = capsys.readouterr().out
    assert "face0.jpg" in out and f"{ages[0]:.1f}" in out


def test_exit_codes_and_missing_weights(folder, model, capsys, tmp_path, monkeypatch):
    assert main(["predict", str(folder / "broken.jpg"), "--model", model, "--detector", "cropped"]) == 1
    from agekit.inference import weights

    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path / "none")
    assert main(["predict", str(folder)]) == 2
    assert "agekit train" in capsys.readouterr().err


def test_video_json_lines(tmp_path, model, capsys):
    from test_video import _write_video

    video = tmp_path / "v.avi"
    _write_video(video, n=4)
    assert main(["predict", "--video", str(video), "--every", "2", "--model", model, "--detector", "cropped", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["frame"] for r in lines] == [0, 2]
    assert all("age_smoothed" in r["faces"][0] for r in lines)


def test_fast_accurate_and_fallback_options(folder, model, capsys):
    import argparse

    from agekit.inference.options import detector_choice

    def ns(**kw):
        return argparse.Namespace(**{"detector": None, "fast": False, "accurate": False, **kw})

    assert detector_choice(ns()) == ("mtcnn_fast", {})
    assert detector_choice(ns(detector="cascade")) == ("cascade", {})
    assert detector_choice(ns(detector="cascade", accurate=True)) == ("dlib", {})
    assert detector_choice(ns(fast=True)) == ("dlib", {"upsample": 0, "max_side": 320, "grey": True})
    assert detector_choice(ns(accurate=True)) == ("dlib", {})
    assert detector_choice(ns(crowd=True)) == ("dlib", {"upsample": 0})
    assert detector_choice(ns(detector="cascade", crowd=True)) == ("dlib", {"upsample": 0})
    assert detector_choice(ns(detector="dlib68", fast=True))[0] == "dlib68"
    with pytest.raises(ValueError, match="dlib detectors"):
        detector_choice(ns(detector="cropped", fast=True))
    # the synthetic drawings are no faces for dlib: the fallback makes each whole image the face
    argv = ["predict", str(folder / "face0.jpg"), "--model", model, "--backend", "torch", "--csv"]
    assert main(argv + ["--fast"]) == 1
    capsys.readouterr()
    assert main(argv + ["--fast", "--fallback-detector", "cropped"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1 and rows[0]["detector"] == "cropped" and float(rows[0]["x2"]) == 96.0


def test_workers_option(folder, model, capsys):
    argv = ["predict", str(folder), "--model", model, "--detector", "cropped", "--json", "--backend", "onnx"]
    assert main(argv + ["--workers", "1"]) == 0
    one = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert main(argv + ["--workers", "2", "--no-progress"]) == 0
    two = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["source"] for r in one] == [r["source"] for r in two] and len(one) == 4
    assert [r["faces"][0]["age"] if r["faces"] else None for r in one] == pytest.approx(
        [r["faces"][0]["age"] if r["faces"] else None for r in two], abs=1e-5)
    assert main(argv + ["--workers", "0"]) == 2
    assert "workers" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_out_file_streams_and_resumes(folder, model, capsys, tmp_path, suffix):
    from agekit.inference.cli import done_sources

    out = tmp_path / f"res{suffix}"
    base = ["predict", "--model", model, "--detector", "cropped", "--backend", "onnx", "--out", str(out)]
    assert main(base + [str(folder / "face0.jpg"), str(folder / "broken.jpg")]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and "wrote 2 results (1 with a face, 1 errors)" in cap.err
    assert done_sources(out) == {str(folder / "face0.jpg"), str(folder / "broken.jpg")}
    first = out.read_text()
    assert main(base + [str(folder)]) == 2  # the file exists: neither --resume nor --overwrite
    assert "--resume" in capsys.readouterr().err and out.read_text() == first
    with open(out, "a") as f:  # an interrupted write left half a line
        f.write('{"source": "half' if suffix == ".jsonl" else f"{folder / 'face1.jpg'},,0,1")
    assert main(base + [str(folder), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "incomplete last line" in err and "2 of 4 inputs already there" in err and "wrote 2 results" in err
    assert out.read_text().startswith(first)  # the earlier results are kept as they were
    assert done_sources(out) == {str(p) for p in folder.iterdir()}
    if suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(out.read_text())))
        assert len(rows) == 4 and [r["source"] for r in rows].count(str(folder / "face1.jpg")) == 1
        ages = {r["source"]: float(r["age"]) for r in rows if r["age"]}
    else:
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        assert len(lines) == 4
        ages = {r["source"]: r["faces"][0]["age"] for r in lines if r["faces"]}
    assert main(["predict", str(folder), "--model", model, "--detector", "cropped", "--json"]) == 0
    whole = {r["source"]: r["faces"][0]["age"] for r in map(json.loads, capsys.readouterr().out.splitlines()) if r["faces"]}
    assert ages == pytest.approx(whole, abs=1e-4)  # resumed in pieces = one run
    assert main(base + [str(folder), "--overwrite"]) == 0 and done_sources(out) == {str(p) for p in folder.iterdir()}
    kept = out.read_text()
    assert main(base + [str(folder), "--overwrite", "--workers", "0"]) == 2 and out.read_text() == kept  # refused first
    assert main(["predict", str(folder), "--model", model, "--resume"]) == 2  # --resume needs --out
    assert main(["predict", "--video", str(folder / "v.avi"), "--model", model, "--out", str(out)]) == 2  # photos only
    assert "stream to stdout" in capsys.readouterr().err
    assert main(base[:-1] + [str(tmp_path / "res.txt"), str(folder)]) == 2


# --- outputs that lose nothing ---------------------------------------------------------------------------------

# faces per photo: a photo's rows (rounded figures, ~100 bytes a row) are ~1/3 of the 64 KiB disk of small_tmpfs
N_FACES = 234


def _many_faces(monkeypatch, n=N_FACES):
    """The cropped detector finds ``n`` faces in every photo (tiles), as in a group photo."""
    from agekit.face import detect

    real = detect.CroppedDetector.detect

    def tiles(self, image_rgb):
        (one,) = real(self, image_rgb)
        out = []
        for k in range(n):
            d = detect.Detection(one.box * 0.5 + k * 0.1, 1.0 - k * 1e-4, one.landmarks * 0.5 + k * 0.1, "cropped")
            out.append(d)
        return out

    monkeypatch.setattr(detect.CroppedDetector, "detect", tiles)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (needs root and mount); skips where it cannot be mounted."""
    import subprocess

    d = tmp_path / "small"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): the simulated full disk test covers the writer")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _rows_by_source(path):
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    by = {}
    for r in rows:
        faces = by.setdefault(r["source"], [])
        if r["face"] != "":  # "" : an input without a face (its error row)
            faces.append(int(r["face"]))
    return by


def _check_full_disk_then_resume(folder, model, out, capsys, free_space):
    base = ["predict", str(folder), "--model", model, "--detector", "cropped", "--multi-face", "all", "--backend",
            "onnx", "--workers", "1", "--out", str(out)]
    assert main(base) == 1
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if "cannot write" in x]
    assert len(lines) == 1 and "No space left on device" in lines[0] and "--resume continues" in lines[0]
    assert "Traceback" not in err
    whole = list(range(N_FACES))
    partial = _rows_by_source(out)
    assert 0 < len(partial) < 4  # some photos written, each whole
    assert all(faces == whole for src, faces in partial.items() if not src.endswith("broken.jpg"))
    free_space()
    assert main(base + ["--resume"]) == 0
    assert "already there" in capsys.readouterr().err
    done = _rows_by_source(out)  # every photo, every face exactly once
    assert sorted(done) == sorted(str(p) for p in folder.iterdir())
    assert all(faces == ([] if src.endswith("broken.jpg") else whole) for src, faces in done.items())


def test_full_disk_keeps_every_photo_whole_and_resume_completes_it(folder, model, capsys, small_tmpfs, monkeypatch):
    import subprocess

    _many_faces(monkeypatch)
    out = small_tmpfs / "res.csv"

    def grow():
        subprocess.run(["mount", "-o", "remount,size=4m", str(small_tmpfs)], check=True)

    _check_full_disk_then_resume(folder, model, out, capsys, grow)


def test_simulated_full_disk(folder, model, capsys, tmp_path, monkeypatch):
    import errno

    from agekit.inference import writers

    _many_faces(monkeypatch)
    budget = [40_000]  # bytes the "disk" takes: the second photo's rows do not fit
    real_write = writers.os.write

    def write(fd, data):
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_write(fd, bytes(data[: budget[0]]))  # a short write, then ENOSPC on the next call
        budget[0] -= n
        return n

    monkeypatch.setattr(writers.os, "write", write)
    _check_full_disk_then_resume(folder, model, tmp_path / "res.csv", capsys,
                                 lambda: budget.__setitem__(0, 1 << 30))


def test_read_only_output_gives_one_line(folder, model, capsys, tmp_path):
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(ro)], capture_output=True).returncode:
        if os.geteuid() == 0:
            pytest.skip("root can write anywhere and no read-only tmpfs can be mounted here")
        ro.chmod(0o555)
    try:
        argv = ["predict", str(folder), "--model", model, "--detector", "cropped", "--workers", "1"]
        assert main(argv + ["--out", str(ro / "res.csv")]) == 1
        err = [x for x in capsys.readouterr().err.splitlines() if not x.startswith("#")]
        assert len(err) == 1 and "cannot write" in err[0] and "res.csv" in err[0]
        assert main(argv + ["--annotate", str(ro)]) == 1
        err = capsys.readouterr().err
        assert err.count("cannot write into") == 1 and "Traceback" not in err
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


def test_annotate_never_overwrites_nor_follows_links_and_names_every_input(folder, model, capsys, tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    img = cv2.imread(str(folder / "face0.jpg"))
    cv2.imwrite(str(folder / "face0.png"), img)  # face0.jpg and face0.png: two inputs, one stem
    other = tmp_path / "other"
    other.mkdir()
    cv2.imwrite(str(other / "face0.jpg"), img)  # the same name in another folder
    (ann / "face1.annotated.jpg").write_bytes(b"keep me")
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    os.symlink(outside, ann / "face2.annotated.jpg")
    argv = ["predict", str(folder), str(other / "face0.jpg"), "--model", model, "--detector", "cropped", "--json",
            "--annotate", str(ann)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("exists, kept (--overwrite replaces it)") == 2
    assert (ann / "face1.annotated.jpg").read_bytes() == b"keep me" and outside.read_text() == "not yours"
    assert os.path.islink(ann / "face2.annotated.jpg")
    names = sorted(p.name for p in ann.iterdir())
    assert names == ["face0.jpg.annotated-2.jpg", "face0.jpg.annotated.jpg", "face0.png.annotated.jpg",
                     "face1.annotated.jpg", "face2.annotated.jpg"]
    assert main(argv + ["--overwrite"]) == 0
    assert "exists" not in capsys.readouterr().err
    assert outside.read_text() == "not yours"  # the link itself was replaced, never its target
    assert not os.path.islink(ann / "face2.annotated.jpg")
    assert cv2.imread(str(ann / "face1.annotated.jpg")).shape == (96, 96, 3)


def test_max_pixels_option(folder, model, capsys):
    argv = ["predict", str(folder / "face0.jpg"), "--model", model, "--detector", "cropped"]
    assert main(argv + ["--max-pixels", "9000"]) == 1  # 96 x 96 = 9216 pixels
    err = capsys.readouterr().err
    assert "face0.jpg: too many pixels (96x96 = 0.0092 MP > 0.009 MP allowed; --max-pixels raises the limit)" in err
    assert main(argv + ["--max-pixels", "9216"]) == 0
    capsys.readouterr()
    assert main(argv + ["--max-pixels", "0"]) == 2 and "--max-pixels must be >= 1" in capsys.readouterr().err


def test_resume_drops_every_row_of_a_photo_cut_mid_write(tmp_path):
    from agekit.inference.cli import CSV_FIELDS, done_sources, format_csv

    def photo(src, n):
        return {"source": src, "error": None, "dropped": [],
                "faces": [{"box": [0, 0, 9, 9], "age": 30.0 + i} for i in range(n)]}

    whole = format_csv([photo("a.jpg", 2)]) + format_csv([photo("b,\"odd\".jpg", 3)]).split("\n", 1)[1]
    cut = format_csv([photo("c\nd.jpg", 117)]).split("\n", 1)[1]
    out = tmp_path / "res.csv"
    out.write_text(whole + cut[: len(cut) // 2], newline="")  # killed inside c's one write: half its rows there
    assert done_sources(out) == {"a.jpg", 'b,"odd".jpg'}  # c is not done: none of its rows are kept
    assert out.read_bytes().decode() == whole
    out.write_text(whole + cut[:4], newline="")  # cut inside c's source field
    assert done_sources(out) == {"a.jpg", 'b,"odd".jpg'} and out.read_bytes().decode() == whole
    assert list(csv.reader(io.StringIO(whole)))[0] == list(CSV_FIELDS)


def test_stdout_that_cannot_be_written_gives_one_line(folder, model, capsys, monkeypatch):
    import errno
    import sys

    class Full(io.StringIO):
        def write(self, s):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sys, "stdout", Full())
    assert main(["predict", str(folder), "--model", model, "--detector", "cropped", "--csv"]) == 1
    err = capsys.readouterr().err
    assert "cannot write the results to stdout: No space left on device" in err and "Traceback" not in err
