"""Estimator.predict's inputs (paths, folders, globs, arrays, PIL images, bytes, file objects), its typed results,
every face by default, and the one JSON-lines shape of photos and video frames."""
from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from agekit.inference.estimator import Estimator
from agekit.inference.results import FaceResult, PhotoResult
from agekit.serve.synthetic import drawn_face

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def cropped():
    return Estimator.from_pretrained("age", detector="cropped")


@pytest.fixture(scope="module")
def face_png(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    rgb = cv2.resize(drawn_face(seed=0)[120:400, 180:460], (96, 96), interpolation=cv2.INTER_AREA)
    Image.fromarray(rgb).save(d / "face.png")  # lossless: every input form below holds these pixels
    return d / "face.png", rgb


def test_every_input_type_gives_the_same_face(cropped, face_png):
    path, rgb = face_png
    data = path.read_bytes()
    with open(path, "rb") as f:
        inputs = [path, str(path), str(path.parent), str(path.parent / "*.png"), rgb, Image.open(path), data,
                  bytearray(data), io.BytesIO(data), f]
        res = cropped.predict(inputs)
    assert [r.source for r in res] == [str(path)] * 4 + ["array[0]", str(path), "bytes[0]", "bytes[1]", "file[0]",
                                                         str(path)]
    ages = [r.faces[0].age for r in res]
    # the same face in every input; float32 sums may differ in the last bits with the row's place in the batch
    assert all(r.error is None and len(r.faces) == 1 for r in res) and np.ptp(ages) < 1e-4, ages
    bgr = cropped.predict(np.ascontiguousarray(rgb[..., ::-1]), colour="bgr")[0].faces[0]
    as_rgb = cropped.predict(np.ascontiguousarray(rgb[..., ::-1]))[0].faces[0]  # the same array read as RGB
    assert abs(bgr.age - ages[0]) < 1e-4 and abs(as_rgb.age - ages[0]) > 0.01
    grey = cropped.predict(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))[0]
    rgba = cropped.predict(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]))[0]
    assert grey.error is None and abs(rgba.faces[0].age - ages[0]) < 1e-4
    stack = cropped.predict(np.stack([rgb, rgb]))
    assert [r.source for r in stack] == ["array[0]", "array[1]"]


def test_bytes_and_file_objects_are_one_photo_each_through_the_guarded_decoder(face_png):
    path, _ = face_png
    data = path.read_bytes()
    small = Estimator.from_pretrained("age", detector="cropped", max_pixels=96 * 96 - 1)
    res = small.predict([data, io.BytesIO(data), b"not an image", io.BytesIO(b"")])
    assert len(res) == 4  # not one result per byte
    assert res[0].error.startswith("too many pixels (96x96") and res[1].error == res[0].error
    assert res[2].error == "not an image" and res[3].error == "zero bytes"


@pytest.mark.parametrize("bad", [3, 2.5, {"a": 1}, None, ["ok.jpg", 7], io.StringIO("text")])
def test_anything_else_is_a_type_error_naming_what_is_accepted(cropped, bad):
    with pytest.raises(TypeError, match=r"predict takes a path .* a numpy array .* a PIL image, bytes .* binary file"):
        cropped.predict(bad)


def test_results_are_typed_dataclasses_with_to_dict(cropped, face_png):
    path, _ = face_png
    r = cropped.predict(path)[0]
    assert isinstance(r, PhotoResult) and isinstance(r.faces[0], FaceResult) and r.ok
    f = r.faces[0]
    assert r["faces"][0] is f and f["age"] == f.age and f.get("track") is None and "age" in f  # reads like a dict
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d == json.loads(json.dumps(r)) and d["faces"][0]["age"] == f.age
    assert type(d) is dict and type(d["faces"][0]) is dict and isinstance(r, dict)  # also the plain dict it was
    import pickle

    assert pickle.loads(pickle.dumps(r)) == r  # to and from worker processes
    assert set(d) == {"source", "faces", "dropped", "error", "frame", "time_s"}
    rd = r.to_dict(rounded=True)["faces"][0]
    assert rd["age"] == round(f.age, 2) and rd["gender_female"] == round(f.gender_female, 3)
    assert all(isinstance(v, int) for v in rd["box"]) and rd["box"] == [round(v) for v in f.box]
    import agekit

    assert (agekit.__file__ and (__import__("pathlib").Path(agekit.__file__).parent / "py.typed").is_file())


def test_boxes_are_clipped_to_the_image():
    from agekit.face.detect import Detection
    from agekit.inference.estimator import _face_record

    det = Detection(np.array([-12.5, -3.0, 70.0, 130.0]), 0.9, np.zeros((5, 2)), "dlib")
    assert _face_record(det, (64, 120))["box"] == [0.0, 0.0, 64, 120]
    assert _face_record(det)["box"] == [-12.5, -3.0, 70.0, 130.0]  # no size known: as detected


def test_every_face_by_default_and_largest_on_request(capsys, tmp_path):
    two = np.concatenate([drawn_face(seed=0), drawn_face(seed=3)], axis=1)  # two faces, side by side
    est = Estimator.from_pretrained("age", detector="dlib", upsample=0)
    r = est.predict(two)[0]
    assert len(r.faces) == 2 and not r.dropped
    assert sorted(f.box[0] for f in r.faces)[1] > 640  # one face in each half
    one = Estimator.from_pretrained("age", detector="dlib", upsample=0, multi_face="largest").predict(two)[0]
    assert len(one.faces) == 1 and [d["reason"] for d in one.dropped] == ["smaller face"]
    Image.fromarray(two).save(tmp_path / "two.png")
    from agekit.cli import main

    base = ["predict", str(tmp_path / "two.png"), "--detector", "dlib", "--csv"]
    counts = []
    for extra in ([], ["--largest"], ["--multi-face", "largest"], ["--multi-face", "all"]):
        assert main(base + extra) == 0
        counts.append(len(capsys.readouterr().out.strip().splitlines()) - 1)
    assert counts == [2, 1, 1, 2]


def test_photos_and_video_frames_are_json_lines_of_one_shape(capsys, tmp_path):
    from agekit.cli import main

    face = cv2.resize(drawn_face(seed=0)[120:400, 180:460], (96, 96))
    Image.fromarray(face).save(tmp_path / "a.png")
    Image.fromarray(face[:, ::-1].copy()).save(tmp_path / "b.png")
    video = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 96))
    for _ in range(3):
        w.write(cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    w.release()
    assert main(["predict", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--detector", "cropped", "--json"]) == 0
    photos = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert main(["predict", "--video", str(video), "--detector", "cropped", "--json", "--workers", "1"]) == 0
    frames = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(photos) == 2 and len(frames) == 3
    assert {tuple(r) for r in photos + frames} == {tuple(photos[0])}  # the same keys, in the same order
    assert {tuple(f) for r in photos + frames for f in r["faces"]} == {tuple(photos[0]["faces"][0])}
    assert frames[1]["frame"] == 1 and frames[1]["faces"][0]["track"] == frames[0]["faces"][0]["track"]
    assert photos[0]["frame"] is None and photos[0]["faces"][0]["track"] is None
    for r in photos + frames:  # written figures are rounded (ages 0.01 y, probabilities 0.001, whole pixels)
        f = r["faces"][0]
        assert f["age"] == round(f["age"], 2) and f["gender_female"] == round(f["gender_female"], 3)
        assert all(isinstance(v, int) for v in f["box"])
