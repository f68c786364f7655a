"""The ``mtcnn`` detector: the shipped ONNX nets against golden numbers and the torch re-implementation, faces found
at known boxes, dlib's landmark order, and ``agekit predict --detector mtcnn`` without torch."""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from agekit.face import FacePipeline, get_detector
from agekit.face.mtcnn import MODELS, MTCNN, _sessions, mtcnn_to_dlib5
from agekit.preprocessing import AGEKIT
from records import cli_records

REPO = Path(__file__).resolve().parents[2]


def fixed_input(name: str) -> np.ndarray:
    """tools/export_mtcnn.py's fixed input (the golden numbers were printed on it)."""
    side = {"pnet": 0, "rnet": 24, "onet": 48}[name]
    h, w = (side, side) if side else (20, 26)
    n = 2 if side else 1
    i = np.arange(n * 3 * h * w, dtype=np.float64).reshape(n, 3, h, w)
    return (127.5 + 127.5 * np.sin(i * 0.37) * np.cos(i * 0.011)).astype(np.float32)


# `python tools/export_mtcnn.py facenet_pytorch-2.6.0-py3-none-any.whl --golden`: the torch re-implementation with the
# wheel's state dicts on fixed_input(name): output -> (shape, first four values, sum).
GOLDEN = {
    ("pnet", "reg"): ((1, 4, 5, 8), [0.023222, -0.014606, -0.064519, -0.071006], 5.070762),
    ("pnet", "prob"): ((1, 2, 5, 8), [0.99991, 0.999987, 0.999908, 0.999994], 40.0),
    ("rnet", "reg"): ((2, 4), [-0.058853, 0.030797, 0.076796, 0.454078], 1.288882),
    ("rnet", "prob"): ((2, 2), [0.999887, 0.000113, 0.999969, 0.000031], 2.0),
    ("onet", "reg"): ((2, 4), [-0.099196, -0.03114, 0.073105, 0.27432], 0.418228),
    ("onet", "landmarks"): ((2, 10), [0.317925, 0.690045, 0.465594, 0.354271], 10.305307),
    ("onet", "prob"): ((2, 2), [0.999894, 0.000106, 0.99979, 0.00021], 2.0),
}
OUTPUTS = {"pnet": ["reg", "prob"], "rnet": ["reg", "prob"], "onet": ["reg", "landmarks", "prob"]}


@pytest.mark.parametrize("name", ["pnet", "rnet", "onet"])
def test_onnx_nets_give_the_golden_numbers(name):
    sess = _sessions(1, -1)[["pnet", "rnet", "onet"].index(name)]
    outs = sess.run(None, {"image": fixed_input(name)})
    for o, got in zip(OUTPUTS[name], outs):
        shape, first, total = GOLDEN[(name, o)]
        assert got.shape == shape, o
        np.testing.assert_allclose(got.ravel()[:4], first, atol=2e-6, err_msg=f"{name}.{o}")
        assert abs(float(got.astype(np.float64).sum()) - total) < 1e-4, f"{name}.{o}"


def _scene(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(40, 220, (4, 5, 3)).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy)


@pytest.fixture
def utk_photo(utkface_dir):
    """A 320x240 photo with one UTKFace face pasted as a 100x100 square at (150, 60), and that box."""
    face = cv2.cvtColor(cv2.imread(str(utkface_dir / "30_1_0_20170103180631960.jpg.chip.jpg")), cv2.COLOR_BGR2RGB)
    img = _scene()
    img[60:160, 150:250] = cv2.resize(face, (100, 100), interpolation=cv2.INTER_AREA)
    return img, np.array([150, 60, 250, 160], float)


def _check_dlib_order(lm: np.ndarray, box: np.ndarray) -> None:
    """dlib's 5-point order: image-right eye outer, inner; image-left eye outer, inner; bottom of the nose."""
    assert lm.shape == (5, 2)
    assert lm[0, 0] > lm[1, 0] > lm[3, 0] > lm[2, 0]  # right-to-left along the eye line
    assert lm[4, 1] > max(lm[:4, 1])  # the nose below the eyes
    assert lm[3, 0] < lm[4, 0] < lm[1, 0]  # ... between the inner corners
    x1, y1, x2, y2 = box
    assert np.all((lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2))


def test_finds_a_pasted_utkface_face_at_its_box(utk_photo):
    img, box = utk_photo
    dets = get_detector("mtcnn").detect(img)
    assert len(dets) == 1, [d.box for d in dets]
    d = dets[0]
    assert _iou(d.box, box) > 0.6 and d.score > 0.95 and d.detector == "mtcnn"
    _check_dlib_order(d.landmarks, box)
    # turned 25 degrees and mirrored: still found, landmarks still in dlib's order along the turned eye line
    m = cv2.getRotationMatrix2D((199.5, 109.5), 25, 1.0)
    turned = cv2.warpAffine(img, m, (320, 240), borderMode=cv2.BORDER_REFLECT)
    (t,) = get_detector("mtcnn").detect(turned)
    assert _iou(t.box, box) > 0.4
    eye_line = (t.landmarks[0] + t.landmarks[1] - t.landmarks[2] - t.landmarks[3]) / 2
    assert abs(np.degrees(np.arctan2(-eye_line[1], eye_line[0])) - 25) < 8
    (f,) = get_detector("mtcnn").detect(img[:, ::-1].copy())
    _check_dlib_order(f.landmarks, np.array([320 - box[2], box[1], 320 - box[0], box[3]]))


def test_landmarks_land_near_dlibs_own(utk_photo):
    """The converted points sit where dlib's 5-point model puts them, within 0.2 inter-ocular distances each."""
    img, box = utk_photo
    (m,) = get_detector("mtcnn").detect(img)
    (d,) = get_detector("dlib").detect(img)
    iod = np.linalg.norm((d.landmarks[0] + d.landmarks[1] - d.landmarks[2] - d.landmarks[3]) / 2)
    err = np.linalg.norm(m.landmarks - d.landmarks, axis=1) / iod
    assert err.max() < 0.2, err


def test_dlib_landmarks_in_the_box_mtcnn_implies_match_dlibs_own(utk_photo):
    """landmarks='dlib' (the default): dlib's 5-point model started from the box MTCNN's points imply gives dlib's
    landmarks within 2 % of the inter-ocular distance (the converted points alone are ~4-7 % off); on the photo turned
    by 25 degrees (rotated upright first) it gives dlib's landmarks of the upright photo, turned."""
    img, box = utk_photo
    (d,) = get_detector("dlib").detect(img)
    iod = np.linalg.norm((d.landmarks[0] + d.landmarks[1] - d.landmarks[2] - d.landmarks[3]) / 2)
    (r,) = get_detector("mtcnn").detect(img)
    (c,) = get_detector("mtcnn", landmarks="mtcnn").detect(img)
    err_r = np.linalg.norm(r.landmarks - d.landmarks, axis=1).mean() / iod
    err_c = np.linalg.norm(c.landmarks - d.landmarks, axis=1).mean() / iod
    assert err_r < 0.02 and err_c > 2 * err_r, (err_r, err_c)
    np.testing.assert_array_equal(r.box, c.box)  # the same faces, only the landmarks differ
    m = cv2.getRotationMatrix2D((199.5, 109.5), 25, 1.0)
    turned = cv2.warpAffine(img, m, (320, 240), borderMode=cv2.BORDER_REFLECT)
    (t,) = get_detector("mtcnn").detect(turned)
    want = d.landmarks @ m[:, :2].T + m[:, 2]
    assert np.linalg.norm(t.landmarks - want, axis=1).mean() / iod < 0.03
    with pytest.raises(ValueError, match="landmarks must be 'dlib' or 'mtcnn', got 'x'"):
        get_detector("mtcnn", landmarks="x")


def test_landmark_conversion_keeps_dlibs_order_and_mirrors():
    """MTCNN's order (image-left eye, image-right eye, nose, mouth corners) -> dlib's, and mirroring commutes."""
    pts = np.array([[30.0, 40.0], [70.0, 40.0], [50.0, 62.0], [36.0, 80.0], [64.0, 80.0]])
    lm = mtcnn_to_dlib5(pts)
    _check_dlib_order(lm, np.array([0, 0, 100, 100]))
    assert np.allclose((lm[0] + lm[1]) / 2, [70, 40], atol=3) and np.allclose((lm[2] + lm[3]) / 2, [30, 40], atol=3)
    w = 101.0  # mirror in a photo 101 px wide: x -> w - 1 - x; MTCNN's eyes and mouth corners swap
    mirrored = np.array([[w - 1 - x, y] for x, y in pts])[[1, 0, 2, 4, 3]]
    lm_m = mtcnn_to_dlib5(mirrored)
    back = np.array([[w - 1 - x, y] for x, y in lm_m])[[2, 3, 0, 1, 4]]
    np.testing.assert_allclose(back, lm, atol=1.0)  # within 2.5 % of the eye distance: the templates' asymmetry
    with pytest.raises(ValueError, match=r"MTCNN landmarks must be \(5, 2\), got \(4, 2\)"):
        mtcnn_to_dlib5(pts[:4])


def test_finds_a_drawn_face():
    """A synthetic face drawn with OpenCV (no photo): skin oval, eyes, brows, nose and mouth."""
    img = np.full((240, 320, 3), 200, np.uint8)
    cv2.ellipse(img, (160, 120), (52, 68), 0, 0, 360, (224, 172, 140), -1)
    for x in (138, 182):
        cv2.ellipse(img, (x, 106), (11, 6), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, (x, 106), 5, (60, 40, 30), -1)
        cv2.line(img, (x - 13, 92), (x + 13, 92), (90, 60, 40), 4)
    cv2.line(img, (160, 112), (155, 138), (170, 120, 100), 3)
    cv2.ellipse(img, (160, 156), (18, 7), 0, 0, 180, (150, 60, 60), -1)
    img = cv2.GaussianBlur(img, (0, 0), 1.2)
    dets = get_detector("mtcnn").detect(img)
    assert dets and _iou(dets[0].box, [108, 52, 212, 188]) > 0.4, [d.box for d in dets]


def test_options_pickling_and_blank_photo():
    det = get_detector("mtcnn", min_face_size=40, first_pass=80)
    assert det.mtcnn.scales(480, 640)[0] == pytest.approx(0.3) and len(det.mtcnn.scales(480, 640)) == 8
    clone = pickle.loads(pickle.dumps(det))
    assert clone.detect(np.zeros((120, 160, 3), np.uint8)) == []
    for kwargs, msg in [({"min_face_size": 8}, "min_face_size must be at least 12 pixels"),
                        ({"first_pass": 10}, "first_pass must be a face side above min_face_size"),
                        ({"factor": 1.2}, r"factor must be in \(0, 1\)"), ({"points": 68}, "points must be 5")]:
        with pytest.raises(ValueError, match=msg):
            MTCNN(**kwargs)
    with pytest.raises(ValueError, match="expected an RGB uint8"):
        det.detect(np.zeros((10, 10), np.uint8))


def test_pipeline_crops_an_mtcnn_face(utk_photo):
    img, _ = utk_photo
    r = FacePipeline([AGEKIT], detector="mtcnn").process(img)
    assert r.ok and r.faces[0].detector == "mtcnn"
    assert r.faces[0].crops[AGEKIT.view_key].shape == (AGEKIT.size, AGEKIT.size, 3)


def test_predict_with_mtcnn_imports_no_torch(utk_photo, tmp_path):
    img, box = utk_photo
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    code = ("import sys; from agekit.cli import main; rc = main(['predict', sys.argv[1], '--detector', 'mtcnn', "
            "'--json']); assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    (rec,) = cli_records(r.stdout)
    (face,) = rec["faces"]
    assert face["detector"] == "mtcnn" and _iou(face["box"], box) > 0.6 and 5 < face["age"] < 80


def test_mtcnn_fast_looks_for_small_faces_only_when_it_finds_no_large_one(utk_photo):
    img, box = utk_photo
    fast = get_detector("mtcnn_fast")
    assert fast.mtcnn.first_pass == 80 and fast.mtcnn.min_face_size == 20
    (d,) = fast.detect(img)  # the 100 px face: found by the first pass
    assert d.detector == "mtcnn_fast" and _iou(d.box, box) > 0.6
    small = _scene(seed=1)
    small[100:130, 40:70] = cv2.resize(img[60:160, 150:250], (30, 30), interpolation=cv2.INTER_AREA)
    (s,) = fast.detect(small)  # a 30 px face: the first pass finds nothing, the second finds it
    assert _iou(s.box, [40, 100, 70, 130]) > 0.4


def test_shipped_files_are_packaged_and_recorded():
    import hashlib
    import tomllib

    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "face/models/*.onnx" in data["package-data"]["agekit"]
    note = (MODELS / "LICENSES.md").read_text()
    assert (MODELS / "LICENSE-MIT-MTCNN.txt").is_file()
    for name in ("pnet", "rnet", "onet"):
        assert hashlib.sha256((MODELS / f"mtcnn_{name}.onnx").read_bytes()).hexdigest() in note


def test_nms_keeps_overlaps_up_to_the_threshold():
    """Hand-worked: box areas count MTCNN's +1 pixel; [0,0,9,9] has area 100, [0,0,9,4] area 50 inside it (IoU
    50 / 100 = 0.5, over the smaller box 1.0), [20,20,29,29] touches neither."""
    from agekit.face.mtcnn import nms

    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 4], [20, 20, 29, 29]], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1, 2]  # IoU 0.5 <= 0.5 stays
    assert nms(boxes, scores, 0.4).tolist() == [0, 2]
    assert nms(boxes, scores, 0.7, "min").tolist() == [0, 2]  # over the smaller box: 1.0
    assert nms(boxes, scores[::-1].copy(), 0.4).tolist() == [2, 1]  # the best score first: box 1 beats box 0
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_nms_all_pairs_at_once_equals_one_box_at_a_time(monkeypatch):
    """The all-pairs path and the greedy loop keep the same boxes, degenerate ones included, and past
    NMS_MATRIX_MAX boxes nms takes the loop."""
    import agekit.face.mtcnn as mt

    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(1, 300))
        corner = rng.uniform(0, 300, (n, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(-5, 80, (n, 2))], 1)
        if trial % 2:
            boxes = np.round(boxes)
        scores = np.round(rng.random(n), 1)  # ties: the stable order decides
        for method in ("union", "min"):
            for t in (0.5, 0.7):
                with np.errstate(invalid="ignore", divide="ignore"):
                    greedy = mt._nms_greedy(boxes, np.argsort(-scores, kind="stable"), t, method)
                    assert mt.nms(boxes, scores, t, method).tolist() == greedy.tolist()
    calls = []
    monkeypatch.setattr(mt, "NMS_MATRIX_MAX", 4)
    monkeypatch.setattr(mt, "_nms_greedy", lambda *a: calls.append(len(a[0])) or np.zeros(0, np.int64))
    mt.nms(np.tile([[0.0, 0.0, 9.0, 9.0]], (5, 1)), np.ones(5), 0.5)
    assert calls == [5]


def test_sliced_runs_give_one_runs_outputs():
    """The R- and O-net run CROP_SLICE crops at a time: each crop's outputs equal those of one run over all."""
    from agekit.face.mtcnn import CROP_SLICE, _run_sliced

    _, rnet, onet = _sessions(1, 0)
    rng = np.random.default_rng(1)
    for session, side in ((rnet, 24), (onet, 48)):
        crops = (rng.random((2 * CROP_SLICE + 5, 3, side, side)) * 255).astype(np.float32)
        whole = session.run(None, {"image": crops})
        sliced = _run_sliced(session, crops)
        assert [a.shape for a in sliced] == [a.shape for a in whole]
        assert all(np.array_equal(a, b) for a, b in zip(sliced, whole))
        with pytest.raises(ValueError, match="no crops"):
            _run_sliced(session, crops[:0])


def test_shipped_graphs_split_the_first_prelu():
    """Each shipped net computes its first PReLU as ReLU(conv) + scale x ReLU(-conv) (no PRelu node reads the
    first convolution; ONNX Runtime keeps both in its blocked layout), and the later PReLUs as PRelu nodes."""
    import onnx

    for name, later in (("pnet", 2), ("rnet", 3), ("onet", 4)):
        graph = onnx.load(str(MODELS / f"mtcnn_{name}.onnx")).graph
        convs = [n for n in graph.node if n.op_type == "Conv"]
        first = [c for c in convs if c.input[0] == convs[0].input[0]]
        assert len(first) == 2, name  # the convolution and its negated twin read the same input
        readers = {n.op_type for n in graph.node for c in first if c.output[0] in n.input}
        assert readers == {"Relu"}, (name, readers)
        assert sum(n.op_type == "PRelu" for n in graph.node) == later, name


def test_crops_equal_a_padded_copy_shrunk():
    """Each crop equals the box cut from a black-padded copy of the photo (its halving for large boxes) and shrunk
    with area averaging, whether the box lies inside the photo (cut from a view) or reaches past it."""
    from agekit.face.mtcnn import _crops, _Halves

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    corner = rng.uniform(-20, 150, (40, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(5, 130, (40, 1))], 1)
    got = _crops(_Halves(image), boxes, 24)
    halves = _Halves(image)
    for k, (x1, y1, x2, y2) in enumerate(np.trunc(boxes).astype(int)):
        x0, y0, bw, bh = x1 - 1, y1 - 1, max(1, x2 - x1 + 1), max(1, y2 - y1 + 1)
        level = max(0, int(np.log2(max(bw, bh) / 24)) - 1)
        if level:
            x0, y0, bw, bh = (max(1, int(round(v / 2**level))) if i > 1 else int(round(v / 2**level))
                              for i, v in enumerate((x0, y0, bw, bh)))
        src = halves[level]
        pad = np.zeros((src.shape[0] + 400, src.shape[1] + 400, 3), np.uint8)
        pad[200:-200, 200:-200] = src
        want = cv2.resize(pad[y0 + 200 : y0 + 200 + bh, x0 + 200 : x0 + 200 + bw], (24, 24),
                          interpolation=cv2.INTER_AREA)
        assert np.array_equal(got[k], want.transpose(2, 0, 1).astype(np.float32)), k
