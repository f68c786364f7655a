"""agekit.face.pipeline and detectors: real UTKFace photos, bad files, multi-face policies."""
from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from agekit.face import Detection, FacePipeline, get_detector
from agekit.face.align import FACE5_TEMPLATE
from agekit.preprocessing import C3AE_CONTEXT, LMTCNN, SSRNET, hsr_kres

KNOWN = (
    "100_0_0_20170112213500903.jpg.chip.jpg",
    "100_0_0_20170112215240346.jpg.chip.jpg",
    "100_1_0_20170110183726390.jpg.chip.jpg",
)
SPECS = [SSRNET, C3AE_CONTEXT, hsr_kres(3), LMTCNN]


@pytest.fixture(scope="module")
def pipe():
    return FacePipeline(SPECS, detector="dlib")


def test_dlib_finds_one_face_with_sane_landmarks(utkface_dir, pipe):
    for name in KNOWN:
        r = pipe.process_path(utkface_dir / name)
        assert r.error is None and len(r.faces) == 1 and r.dropped == [], name
        face = r.faces[0]
        d = face.detection
        assert d.box.shape == (4,) and d.box.dtype == np.float32 and d.landmarks.shape == (5, 2)
        w = d.box[2] - d.box[0]
        assert 80 < w < 260  # UTKFace faces fill most of the 200 px photo
        lm = d.landmarks
        assert lm[0, 0] > lm[1, 0] > lm[3, 0] > lm[2, 0]  # dlib's 5-point order
        assert lm[4, 1] > lm[:4, 1].max()  # nose below the eyes
        assert face.crops[SSRNET.view_key].shape == (64, 64, 3)
        assert face.crops[C3AE_CONTEXT.view_key].shape == (3, 64, 64, 3)
        assert face.crops[hsr_kres(3).view_key].shape == (3, 64, 64, 3)
        assert face.crops[LMTCNN.view_key].shape == (256, 256, 3)
        # the aligned 64 px crop is mostly face: its centre is not the black border
        assert face.crops[SSRNET.view_key][24:40, 24:40].mean() > 30


def test_dlib68_and_fast_settings_agree(utkface_dir):
    from agekit.face.io import read_image

    img = read_image(utkface_dir / KNOWN[0])
    d5 = get_detector("dlib").detect(img)[0]
    d68 = get_detector("dlib68").detect(img)[0]
    assert d68.landmarks.shape == (68, 2)
    np.testing.assert_allclose(d68.box, d5.box)
    # the 5-point model's points are the 68-point model's 45, 42, 36, 39, 33 (within 6 % of the box)
    w = float(d5.box[2] - d5.box[0])
    assert np.abs(d68.landmarks[[45, 42, 36, 39, 33]] - d5.landmarks).max() < 0.06 * w
    # a 640x480 photo: shrink to 320 before HOG at upsample 0, boxes mapped back
    big = np.full((480, 640, 3), 90, np.uint8)
    big[100:340, 300:540] = cv2.resize(img, (240, 240))
    fast = get_detector("dlib", upsample=0, max_side=320).detect(big)
    assert len(fast) == 1
    ref = d5.box * 1.2 + [300, 100, 300, 100]
    assert np.abs(fast[0].box - ref).max() < 0.15 * 240


def test_bad_files_are_reported(tmp_path, pipe):
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    data = cv2.imencode(".jpg", np.full((50, 50, 3), 100, np.uint8))[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(data[:-40])
    cases = (("zero.jpg", "zero bytes"), ("text.jpg", "not an image"), ("cut.jpg", "truncated"), ("no.jpg", "missing"))
    for name, reason in cases:
        r = pipe.process_path(tmp_path / name)
        assert (r.faces, r.dropped, r.error) == ([], [], reason)
        assert r.path == str(tmp_path / name)


def test_blank_image_has_no_face(pipe):
    r = pipe.process(np.full((200, 200, 3), 128, np.uint8))
    assert r.faces == [] and r.error == "no face"


class _TwoFaces:
    """A fake detector: a small and a large face with template landmarks."""

    name = "two"

    def detect(self, image_rgb):
        def det(x, y, s, score):
            lm = (FACE5_TEMPLATE * s + [x, y] - 0.5).astype(np.float32)
            return Detection(np.array([x, y, x + s, y + s], np.float32), score, lm)

        return [det(10, 10, 30, 0.9), det(60, 40, 80, 0.5)]


def test_multi_face_policies():
    img = np.zeros((160, 160, 3), np.uint8)
    largest = FacePipeline([SSRNET], detector=_TwoFaces(), multi_face="largest").process(img)
    assert len(largest.faces) == 1 and largest.faces[0].detection.box[2] == 140
    assert [r for _, r in largest.dropped] == ["smaller face"] and largest.error is None
    every = FacePipeline([SSRNET], detector=_TwoFaces(), multi_face="all").process(img)
    assert len(every.faces) == 2 and every.dropped == []
    skip = FacePipeline([SSRNET], detector=_TwoFaces(), multi_face="skip").process(img)
    assert skip.faces == [] and skip.error == "several faces" and len(skip.dropped) == 2
    small = FacePipeline([SSRNET], detector=_TwoFaces(), multi_face="skip", min_face=40).process(img)
    assert len(small.faces) == 1 and [r for _, r in small.dropped] == ["too small"]
    with pytest.raises(ValueError):
        FacePipeline([SSRNET], multi_face="first")


def test_cropped_detector_and_pickling():
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pipe = FacePipeline([SSRNET], detector="cropped", inner=0.5)
    (d,) = pipe.detector.detect(img)
    np.testing.assert_allclose(d.box, [16, 16, 48, 48])
    r = pipe.process(img)
    # box 32 px + 0.4 margin each side = 57.6 px around the centre, upscaled to 64
    assert r.faces[0].crops[SSRNET.view_key].shape == (64, 64, 3)
    clone = pickle.loads(pickle.dumps(FacePipeline([SSRNET], detector="dlib", upsample=0)))
    assert clone.process(np.zeros((100, 100, 3), np.uint8)).error == "no face"


def test_detector_errors():
    with pytest.raises(ValueError, match="unknown detector"):
        get_detector("haar")
    with pytest.raises(ValueError, match="model_path"):
        get_detector("yunet")
    with pytest.raises(FileNotFoundError):
        get_detector("yunet", model_path="/nonexistent/yunet.onnx")
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="agekit\\[mediapipe\\]"):
            get_detector("mediapipe")


# --- fallback detector and the detection cascade ---------------------------------------------


class _Fixed:
    """A detector stub giving fixed detections and counting its calls."""

    def __init__(self, name: str, dets: list):
        self.name, self.dets, self.calls = name, dets, 0

    def detect(self, image_rgb):
        self.calls += 1
        return [Detection(d.box.copy(), d.score, None if d.landmarks is None else d.landmarks.copy()) for d in self.dets]


def _det(x1, y1, x2, y2, score=1.0):
    return Detection(np.array([x1, y1, x2, y2], np.float32), score, None)


def test_fallback_cropped_when_dlib_finds_no_face():
    blank = np.full((120, 100, 3), 128, np.uint8)  # dlib HOG finds nothing on a flat image
    assert FacePipeline([SSRNET], detector="dlib").process(blank).error == "no face"
    r = FacePipeline([SSRNET], detector="dlib", fallback="cropped").process(blank)
    assert r.ok and r.used_fallback and len(r.faces) == 1
    face = r.faces[0]
    assert face.detector == "cropped" and face.detection.detector == "cropped"
    np.testing.assert_array_equal(face.detection.box, [0, 0, 100, 120])  # the whole image is the face
    assert face.crops[SSRNET.view_key].shape == (64, 64, 3)


def test_fallback_not_run_when_primary_finds_a_face():
    primary = _Fixed("stub", [_det(10, 10, 60, 60)])
    fallback = _Fixed("cropped", [_det(0, 0, 100, 100)])
    pipe = FacePipeline([SSRNET], detector=primary, fallback=fallback)
    r = pipe.process(np.zeros((100, 100, 3), np.uint8))
    assert r.ok and not r.used_fallback and fallback.calls == 0
    assert r.faces[0].detector == "stub"
    np.testing.assert_array_equal(r.faces[0].detection.box, [10, 10, 60, 60])
    # a primary face dropped as too small does count as "no face": the fallback runs, the drop is kept
    pipe = FacePipeline([SSRNET], detector=_Fixed("stub", [_det(0, 0, 5, 5)]), fallback=fallback, min_face=20)
    r = pipe.process(np.zeros((100, 100, 3), np.uint8))
    assert r.used_fallback and fallback.calls == 1 and [why for _, why in r.dropped] == ["too small"]
    assert r.faces[0].detector == "cropped"


def test_cascade_stops_at_the_first_stage_that_finds_a_face():
    from agekit.face.detect import CascadeDetector

    fast, slow = _Fixed("a", [_det(0, 0, 50, 50)]), _Fixed("b", [_det(5, 5, 20, 20)])
    casc = CascadeDetector(stages=[("fast", fast), ("accurate", slow)])
    d = casc.detect(np.zeros((64, 64, 3), np.uint8))
    assert (fast.calls, slow.calls) == (1, 0) and [x.detector for x in d] == ["cascade:fast"]
    empty = _Fixed("a", [])
    casc = CascadeDetector(stages=[("fast", empty), ("accurate", slow)])
    d = casc.detect(np.zeros((64, 64, 3), np.uint8))
    assert slow.calls == 1 and [x.detector for x in d] == ["cascade:accurate"]
    np.testing.assert_array_equal(d[0].box, [5, 5, 20, 20])
    assert CascadeDetector(stages=[("fast", empty)]).detect(np.zeros((8, 8, 3), np.uint8)) == []
    default = get_detector("cascade")
    (l1, s1), (l2, s2) = default.stages
    assert (l1, s1.upsample, s1.max_side, s1.grey) == ("fast", 0, 320, True)
    assert (l2, s2.upsample, s2.max_side, s2.grey) == ("accurate", 1, None, False)
    pickle.loads(pickle.dumps(default))  # goes to worker processes like the other detectors


def _paste(face: np.ndarray, side: int) -> np.ndarray:
    canvas = cv2.GaussianBlur(np.random.default_rng(0).integers(60, 200, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    canvas[100 : 100 + side, 200 : 200 + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    return canvas


def test_cascade_finds_big_faces_fast_and_small_faces_accurately(utkface_dir):
    from agekit.face import read_image

    face = read_image(utkface_dir / KNOWN[0])
    casc = get_detector("cascade")
    big = casc.detect(_paste(face, 240))
    assert len(big) == 1 and big[0].detector == "cascade:fast"
    x1, y1, x2, y2 = big[0].box
    # full-image coordinates: centred in the pasted square (200..440, 100..340), about its size
    assert abs((x1 + x2) / 2 - 320) < 40 and abs((y1 + y2) / 2 - 220) < 50 and 120 < x2 - x1 < 300
    small = casc.detect(_paste(face, 110))  # a ~60 px face: below the fast pass's ~160 px floor
    assert len(small) == 1 and small[0].detector == "cascade:accurate"
    x1, y1, x2, y2 = small[0].box
    assert abs((x1 + x2) / 2 - 255) < 20 and abs((y1 + y2) / 2 - 155) < 25 and 40 < x2 - x1 < 120


def test_grey_dlib_matches_rgb_dlib(utkface_dir):
    from agekit.face import read_image

    for name in KNOWN:
        img = read_image(utkface_dir / name)
        a, b = get_detector("dlib").detect(img), get_detector("dlib", grey=True).detect(img)
        assert len(a) == len(b) == 1, name
        assert np.abs(a[0].box - b[0].box).max() <= 12, name  # same face, HOG boxes snap to an 8 px-ish grid
        assert np.abs(a[0].landmarks - b[0].landmarks).max() <= 6, name  # landmarks on RGB in both


def test_prepare_with_fallback_detector(utkface_dir, tmp_path, capsys):
    import json

    from agekit.cli import main

    raw = tmp_path / "raw"
    raw.mkdir()
    for name in KNOWN[:2]:
        (raw / name).write_bytes((utkface_dir / name).read_bytes())
    cv2.imwrite(str(raw / "33_1_0_20170114444444444.jpg.chip.jpg"), np.full((48, 48, 3), 128, np.uint8))
    argv = ["prepare", "utkface", "--root", str(raw), "--views", "single_64", "--workers", "1", "--quiet",
            "--detector", "dlib"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    assert main(argv + ["--out", str(tmp_path / "b"), "--fallback-detector", "cropped"]) == 0
    a = json.loads((tmp_path / "a" / "report.json").read_text())
    b = json.loads((tmp_path / "b" / "report.json").read_text())
    assert a["counts"]["faces_kept"] == 2 and "images_from_fallback" not in a["counts"]
    assert b["counts"]["faces_kept"] == 3 and b["counts"]["images_from_fallback"] == 1
    assert b["settings"]["fallback_detector"] == "cropped"
