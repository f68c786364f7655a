"""``agekit predict``: a folder with a bad file reports it and goes on; JSON, CSV, table, annotate, video."""
from __future__ import annotations

import csv
import io
import json

import cv2
import numpy as np
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
    res = json.loads(cap.out)
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

    from agekit.inference.cli import detector_choice

    def ns(**kw):
        return argparse.Namespace(**{"detector": "cascade", "fast": False, "accurate": False, **kw})

    assert detector_choice(ns()) == ("cascade", {})
    assert detector_choice(ns(fast=True)) == ("dlib", {"upsample": 0, "max_side": 320, "grey": True})
    assert detector_choice(ns(accurate=True)) == ("dlib", {})
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
    one = json.loads(capsys.readouterr().out)
    assert main(argv + ["--workers", "2", "--no-progress"]) == 0
    two = json.loads(capsys.readouterr().out)
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
    whole = {r["source"]: r["faces"][0]["age"] for r in json.loads(capsys.readouterr().out) if r["faces"]}
    assert ages == pytest.approx(whole, abs=1e-4)  # resumed in pieces = one run
    assert main(base + [str(folder), "--overwrite"]) == 0 and done_sources(out) == {str(p) for p in folder.iterdir()}
    kept = out.read_text()
    assert main(base + [str(folder), "--overwrite", "--workers", "0"]) == 2 and out.read_text() == kept  # refused first
    assert main(["predict", str(folder), "--model", model, "--resume"]) == 2  # --resume needs --out
    assert main(["predict", "--video", str(folder / "v.avi"), "--model", model, "--out", str(out)]) == 2  # photos only
    assert "stream to stdout" in capsys.readouterr().err
    assert main(base[:-1] + [str(tmp_path / "res.txt"), str(folder)]) == 2
