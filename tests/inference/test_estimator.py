"""Estimator: paths, folders, arrays and bad inputs; both backends agree with the network itself."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

import agekit
from agekit.models.checkpoint import save_checkpoint
from agekit.models.registry import _REGISTRY, register_model
from agekit.outputs import ModelOutput
from agekit.preprocessing import PreprocessSpec

TINY = "_tiny_age_gender_test"
TINY_SPEC = PreprocessSpec(size=32, margin=0.0, color="BGR", scale=1.0 / 255.0, align=False)


class TinyAgeGender(nn.Module):
    """Stand-in network for the predictor's tests: a conv, an 11-bin age distribution and gender logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.age_fc = nn.Linear(8, 11)
        self.gender_fc = nn.Linear(8, 2)
        self.register_buffer("bins", torch.arange(0.0, 101.0, 10.0))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        f = torch.relu(self.conv(x)).mean((2, 3)) * 8.0
        probs = torch.softmax(self.age_fc(f), dim=1)
        return ModelOutput(age=(probs * self.bins).sum(1), gender_logits=self.gender_fc(f), logits=self.age_fc(f),
                           probs=probs, bin_ages=self.bins)


def tiny_checkpoint(path) -> Path:
    """A randomly initialised TinyAgeGender saved as an agekit checkpoint (registered on first use)."""
    if TINY not in _REGISTRY:
        register_model(family="test", paper="-", input_size=(3, 32, 32), name=TINY, preprocess=TINY_SPEC)(
            lambda: TinyAgeGender()
        )
    torch.manual_seed(0)
    return save_checkpoint(path, agekit.create_model(TINY), name=TINY, method="l1", card={"training_data": "none (test)"})


def faces(n: int, size: int = 96, seed: int = 0) -> np.ndarray:
    """Generated face-like RGB images that differ from each other."""
    from agekit.export.onnx import synthetic_faces

    return synthetic_faces(n, size, seed)


def direct(ckpt, images: np.ndarray, mirror: bool = False) -> dict[str, np.ndarray]:
    """The network applied one by one to the crops the face pipeline makes of whole-image faces (``mirror``: of their
    mirror images)."""
    from agekit.face.crops import make_crops
    from agekit.face.detect import get_detector
    from agekit.models.checkpoint import load_checkpoint

    lm = load_checkpoint(ckpt)
    det = get_detector("cropped")
    crops = np.stack([make_crops(im, det.detect(im)[0], lm.preprocess) for im in images])
    if mirror:
        crops = np.ascontiguousarray(crops[:, :, ::-1])
    with torch.inference_mode():
        out = lm.model(lm.preprocess.normalize(crops))
    return {"age": out.age.numpy(), "female": torch.softmax(out.gender_logits, 1)[:, 1].numpy()}


@pytest.fixture
def ckpt(tmp_path):
    return tiny_checkpoint(tmp_path / "tiny.pt")


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_estimator_matches_network_on_arrays(ckpt, tmp_path, backend):
    est = agekit.Estimator.from_pretrained(ckpt, backend=backend, detector="cropped", cache_dir=tmp_path / "cache")
    imgs = faces(5)
    res = est.predict(list(imgs))
    ref = direct(ckpt, imgs)
    assert [r["source"] for r in res] == [f"array[{i}]" for i in range(5)]
    ages = np.array([r["faces"][0]["age"] for r in res])
    assert ages.std() > 1e-3  # the images differ, so must the ages: a test that can fail
    np.testing.assert_allclose(ages, ref["age"], atol=1e-3)
    pf = np.array([r["faces"][0]["gender_female"] for r in res])
    np.testing.assert_allclose(pf, ref["female"], atol=1e-5)
    for r, p in zip(res, pf):
        f = r["faces"][0]
        assert f["gender"] == ("female" if p >= 0.5 else "male")
        assert f["box"] == [0.0, 0.0, 96.0, 96.0]
        assert r["error"] is None
    json.dumps([r.to_dict() for r in res])  # results are plain JSON
    if backend == "onnx":
        assert len(list((tmp_path / "cache").glob("*.onnx"))) == 1  # exported once, into the cache


def photo_folder(d, n: int, seed: int) -> np.ndarray:
    """``d`` holding ``n`` generated faces as f0.png, f1.png, ... and an unreadable bad.jpg; returns the faces."""
    d.mkdir()
    imgs = faces(n, seed=seed)
    for i, im in enumerate(imgs):
        cv2.imwrite(str(d / f"f{i}.png"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    (d / "bad.jpg").write_bytes(b"not an image at all")
    return imgs


def test_paths_folders_and_bad_inputs_are_reported(ckpt, tmp_path):
    d = tmp_path / "photos"
    imgs = photo_folder(d, 3, seed=1)
    (d / "empty.jpg").write_bytes(b"")
    est = agekit.Estimator.from_pretrained(ckpt, backend="torch", detector="cropped")
    res = est.predict([d, tmp_path / "missing.jpg", np.zeros((4, 4, 2), np.uint8), str(d / "f*.png")])
    by = {r["source"].split("/")[-1]: r for r in res}
    assert by["bad.jpg"]["error"] and not by["bad.jpg"]["faces"]
    assert by["empty.jpg"]["error"] == "zero bytes"
    assert by["missing.jpg"]["error"] == "missing"
    assert "RGB uint8" in by["array[0]"]["error"]
    good = [r for r in res if r["error"] is None]
    assert len(good) == 6  # three from the folder, three again from the glob
    ref = direct(ckpt, imgs)["age"]
    np.testing.assert_allclose([r["faces"][0]["age"] for r in good[:3]], ref, atol=1e-3)


def test_worker_processes_give_the_same_results_in_order(ckpt, tmp_path):
    d = tmp_path / "photos"
    imgs = photo_folder(d, 9, seed=6)
    inputs = [d, tmp_path / "missing.jpg", np.zeros((4, 4, 2), np.uint8), imgs[2], str(d / "f1*.png")]
    est = agekit.Estimator.from_pretrained(ckpt, backend="onnx", detector="cropped", cache_dir=tmp_path / "c")
    one = est.predict(inputs, workers=1)
    cv2.GaussianBlur(np.zeros((1500, 1500, 3), np.uint8), (7, 7), 0)  # OpenCV's thread pool has run here
    two = est.predict(inputs, workers=3, chunk=4)  # faces reach the networks in groups of 4 while workers go on
    assert [r["source"] for r in two] == [r["source"] for r in one] and len(one) == 14
    assert [r["error"] for r in two] == [r["error"] for r in one]
    assert sum(r["error"] is None for r in one) == 11 and one[-1]["source"].endswith("f1.png")
    for a, b in zip(one, two):
        assert [f["age"] for f in a["faces"]] == pytest.approx([f["age"] for f in b["faces"]], abs=1e-5)
    with pytest.raises(ValueError, match="workers"):
        est.predict(inputs, workers=0)
    from agekit.inference.estimator import auto_workers

    assert auto_workers(3) == 1 and auto_workers(100) >= 1


def test_a_worker_that_dies_costs_only_its_own_photo(ckpt, tmp_path, monkeypatch):
    import os

    from agekit.inference import estimator as E

    d = tmp_path / "photos"
    photo_folder(d, 6, seed=7)
    est = agekit.Estimator.from_pretrained(ckpt, backend="onnx", detector="cropped", cache_dir=tmp_path / "c")
    want = est.predict(d, workers=1)
    real = E._process_input

    def dies_on_f3(pipeline, obj):  # the forked workers inherit this
        if str(obj).endswith("f3.png"):
            os._exit(9)
        return real(pipeline, obj)

    monkeypatch.setattr(E, "_process_input", dies_on_f3)
    got = est.predict(d, workers=2)
    assert [r["source"] for r in got] == [r["source"] for r in want]
    by = {r["source"].rsplit("/", 1)[-1]: r for r in got}
    assert "worker process died" in by["f3.png"]["error"] and not by["f3.png"]["faces"]
    for a, b in zip(want, got):
        if not b["source"].endswith("f3.png"):
            assert a["error"] == b["error"]
            assert [f["age"] for f in b["faces"]] == pytest.approx([f["age"] for f in a["faces"]], abs=1e-5)


def test_worker_pool_after_opencv_threads_ran_does_not_hang():
    from agekit.parallel import WorkerPool

    big = np.random.default_rng(0).integers(0, 255, (1200, 1200, 3), dtype=np.uint8)
    for _ in range(3):
        cv2.GaussianBlur(big, (7, 7), 0)  # the parent's OpenCV thread pool is running
    threads = cv2.getNumThreads()
    pool = WorkerPool(2)
    try:
        assert cv2.getNumThreads() == threads  # restored in the parent
        got = [pool.submit(_blur_threads, i).result(timeout=120) for i in range(4)]  # a deadlock would time out
    finally:
        pool.close()
    assert got == [1, 1, 1, 1]  # one OpenCV thread per worker process


def _blur_threads(i: int) -> int:
    cv2.GaussianBlur(np.zeros((800, 800, 3), np.uint8), (7, 7), 0)
    return cv2.getNumThreads()


def test_age_and_separate_gender_model(ckpt, tmp_path):
    torch.manual_seed(1)
    g = save_checkpoint(tmp_path / "g.pt", agekit.create_model(TINY), name=TINY)
    est = agekit.Estimator.from_pretrained(ckpt, gender=g, backend="torch", detector="cropped")
    imgs = faces(3)
    res = est.predict(imgs)  # a 4-D array is a batch of images
    np.testing.assert_allclose([r["faces"][0]["age"] for r in res], direct(ckpt, imgs)["age"], atol=1e-3)
    np.testing.assert_allclose([r["faces"][0]["gender_female"] for r in res], direct(g, imgs)["female"], atol=1e-5)


def test_no_shipped_weights_message(tmp_path, monkeypatch):
    from agekit.inference import weights

    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(weights.NoShippedWeightsError, match="agekit train"):
        weights.resolve_weights("age", tmp_path)
    with pytest.raises(FileNotFoundError):
        agekit.Estimator.from_pretrained(tmp_path / "nope.pt")


def test_shipped_weights_registry_and_card(ckpt, tmp_path):
    from agekit.inference.cards import build_card, write_card
    from agekit.inference.weights import resolve_weights, shipped_weights
    from agekit.models.checkpoint import load_checkpoint

    lm = load_checkpoint(ckpt)
    card = build_card(lm.model, TINY, method="l1", dataset="UTKFace", protocol="utkface", metrics={"mae": 5.5},
                      aliases=["age"])
    assert "non-commercial" in card["licence"]
    assert card["complexity"]["params"] == sum(p.numel() for p in lm.model.parameters())
    assert card["complexity"]["macs"] == 8 * 15 * 15 * 27 + 8 * 11 + 8 * 2 + 8 * 11  # conv + the three linear calls
    w = tmp_path / "weights"
    w.mkdir()
    (w / "tiny.safetensors").write_bytes(ckpt.read_bytes())
    (w / "other.pt").write_bytes(ckpt.read_bytes())  # a .pt is not a shipped weight (and has no card)
    js, md = write_card(w / "tiny.safetensors", card)
    text = md.read_text()
    assert "non-commercial" in text and "channels BGR" in text and "5.5" in text
    entries = shipped_weights(w)
    assert [(e["name"], e["model"]) for e in entries] == [("tiny", TINY)]
    assert resolve_weights("age", w)["path"] == w / "tiny.safetensors"


def test_real_faces_utkface(ckpt, utkface_dir, tmp_path):
    files = sorted(utkface_dir.glob("*.jpg*"))[:4]
    est = agekit.Estimator.from_pretrained(ckpt, backend="onnx", detector="dlib", cache_dir=tmp_path)
    res = est.predict(files)
    found = [r for r in res if r["faces"]]
    assert len(found) >= 3, res  # UTKFace faces are found by the HOG detector ~99% of the time
    for r in found:
        x1, y1, x2, y2 = r["faces"][0]["box"]
        assert 60 < x2 - x1 < 260 and np.isfinite(r["faces"][0]["age"]) and 0 <= r["faces"][0]["age"] <= 100
        assert len(r["faces"][0]["landmarks"]) == 5


def test_default_detector_is_mtcnn_fast_and_fallback_is_plumbed(ckpt):
    est = agekit.Estimator.from_pretrained(ckpt, backend="torch")
    assert est.pipeline.detector.name == "mtcnn_fast" and est.pipeline.fallback is None
    assert est.pipeline.detector.landmarks == "dlib" and est.pipeline.detector.mtcnn.first_pass == 80
    blank = np.full((90, 90, 3), 128, np.uint8)  # no face for dlib
    assert est.predict(blank)[0]["error"] == "no face"
    est = agekit.Estimator.from_pretrained(ckpt, backend="torch", detector="dlib", fallback="cropped")
    img = faces(1)[0]
    with_fb = est.predict([blank, img])
    ref = agekit.Estimator.from_pretrained(ckpt, backend="torch", detector="cropped").predict([blank, img])
    for got, want in zip(with_fb, ref):
        assert got["error"] is None and len(got["faces"]) == 1 and got["faces"][0]["detector"] == "cropped"
        assert got["faces"][0]["age"] == pytest.approx(want["faces"][0]["age"], abs=1e-6)


def test_onnx_runner_chunks_give_the_whole_batch_result(ckpt, tmp_path):
    from agekit.export.onnx import sample_crops
    from agekit.inference.backends import OnnxRunner
    from agekit.inference.estimator import cached_onnx
    from agekit.preprocessing import network_input

    path = cached_onnx(ckpt, tmp_path)
    x = network_input(sample_crops(TINY_SPEC, 19, seed=4)[0], TINY_SPEC)
    whole = OnnxRunner(path, chunk=0)(x)
    parts = OnnxRunner(path, chunk=4)(x)  # 4 + 4 + 4 + 4 + 3
    assert set(whole) == set(parts) and whole["age"].shape == (19,) and whole["age"].std() > 1e-3
    for k in whole:
        np.testing.assert_allclose(parts[k], whole[k], atol=1e-5)
    r = OnnxRunner(path)
    assert r.threads == 1 and r.chunk == 8  # defaults: measured fastest on the 2-core CPU (see OnnxRunner)


def test_onnx_runner_runs_chunks_concurrently_in_order(ckpt, tmp_path):
    from agekit.export.onnx import sample_crops
    from agekit.inference.backends import OnnxRunner
    from agekit.inference.estimator import cached_onnx
    from agekit.preprocessing import network_input

    path = cached_onnx(ckpt, tmp_path)
    x = network_input(sample_crops(TINY_SPEC, 37, seed=5)[0], TINY_SPEC)
    whole = OnnxRunner(path, chunk=0)(x)
    conc = OnnxRunner(path, threads=3, chunk=2)  # 19 slices over 3 worker threads
    intra = OnnxRunner(path, threads=3, chunk=2, parallel="intra")
    assert conc.parallel == "chunks" and intra.parallel == "intra"
    assert conc.session.get_session_options().intra_op_num_threads == 1
    assert intra.session.get_session_options().intra_op_num_threads == 3
    for _ in range(3):  # the pool is reused; the slices come back in input order each time
        got = conc(x)
        assert np.abs(np.diff(whole["age"])).min() > 1e-4  # distinct ages: a reordered slice would fail
        for k in whole:
            np.testing.assert_allclose(got[k], whole[k], atol=1e-5)
    np.testing.assert_allclose(intra(x)["age"], whole["age"], atol=1e-5)
    one = conc(x[:2])  # a batch of at most one slice runs on the caller's thread
    np.testing.assert_allclose(one["age"], whole["age"][:2], atol=1e-5)
    assert OnnxRunner(path, threads=2, chunk=0).parallel == "intra"  # nothing to split: intra-op threads
    with pytest.raises(ValueError, match="parallel"):
        OnnxRunner(path, parallel="processes")


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_flip_averaging_is_the_mean_of_face_and_mirror(ckpt, tmp_path, backend):
    imgs = faces(4, seed=3)
    ref = direct(ckpt, imgs)
    mirror = direct(ckpt, imgs, mirror=True)
    est = agekit.Estimator.from_pretrained(ckpt, backend=backend, detector="cropped", cache_dir=tmp_path / "c", flip=True)
    ages = np.array([r["faces"][0]["age"] for r in est.predict(list(imgs))])
    assert np.abs(ref["age"] - mirror["age"]).max() > 1e-3  # the mirror changes the age, so the test can fail
    np.testing.assert_allclose(ages, 0.5 * (ref["age"] + mirror["age"]), atol=1e-3)
    # flip=None follows the card: this card says nothing, so no flip
    est = agekit.Estimator.from_pretrained(ckpt, backend=backend, detector="cropped", cache_dir=tmp_path / "c")
    assert est.age_head.flip_average is False
    est.age_head.card = {"inference": {"flip": True}}
    ages2 = np.array([r["faces"][0]["age"] for r in est.predict(list(imgs))])
    np.testing.assert_allclose(ages2, ages, atol=1e-4)


def test_the_same_model_for_age_and_gender_runs_once(ckpt):
    """gender= naming the age model's own weights (e.g. both aliases on one shipped file) adds no second head."""
    est = agekit.Estimator.from_pretrained(ckpt, gender=str(ckpt), backend="torch", detector="cropped")
    assert est.gender_head is None and len(est.heads) == 1
    imgs = faces(2)
    res = est.predict(imgs)
    ref = direct(ckpt, imgs)
    np.testing.assert_allclose([r["faces"][0]["gender_female"] for r in res], ref["female"], atol=1e-5)
