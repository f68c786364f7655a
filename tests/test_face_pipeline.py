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
