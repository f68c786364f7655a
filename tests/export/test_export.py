"""ONNX export: fp32 parity with PyTorch (1e-4 years), dynamic batch, opset, int8, and the CLI."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

import agekit
from agekit.export.onnx import export_onnx, read_sidecar, sample_crops
from agekit.inference.backends import OnnxRunner, TorchRunner
from agekit.methods import load_method
from agekit.models.checkpoint import load_checkpoint, save_checkpoint
from agekit.preprocessing import network_input

# single-crop SSR-Net, a separable HSR on k = 3 resolutions, C3AE's three context crops
ZOO_SUBSET = ["ssrnet", "sephsr_30_10_k3", "c3ae_full"]


def _ckpt(tmp_path, name):
    if name not in agekit.list_models():
        pytest.skip(f"{name} is not registered")
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / f"{name}.pt", agekit.create_model(name), name=name)


@pytest.mark.parametrize("name", ZOO_SUBSET)
def test_fp32_parity_and_dynamic_batch(tmp_path, name):
    ckpt = _ckpt(tmp_path, name)
    rep = export_onnx(ckpt, tmp_path / f"{name}.onnx", n_samples=12)
    assert rep.parity and all(np.isfinite(v) for v in rep.parity.values())  # export_onnx asserted the tolerance
    m = onnx.load(rep.path)
    assert m.opset_import[0].version >= 17
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    # independent check on other inputs and batch sizes, through the two runners
    lm = load_checkpoint(ckpt)
    crops, _ = sample_crops(lm.preprocess, 7, seed=3)
    x = network_input(crops, lm.preprocess)
    ref = TorchRunner(lm.model, load_method(lm.method, lm.name))(x)
    got = OnnxRunner(rep.path, threads=1)(x)
    assert set(got) == set(ref) and ({"age"} <= set(got) or {"gender_female"} <= set(got))
    for k in got:
        # rtol: random-init SSR-Net divides by s1 * (1 + delta1) ... near zero on some faces, which
        # magnifies float32 rounding (ages in the hundreds); trained weights stay within atol
        np.testing.assert_allclose(got[k], ref[k], atol=1e-4, rtol=5e-5)
    card = read_sidecar(rep.path)
    assert card["model"] == name and card["preprocess"] == lm.preprocess.to_dict()
    assert card["onnx"]["outputs"] == list(got)


def test_int8_static_stays_close(tmp_path):
    from test_estimator import tiny_checkpoint

    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")  # untrained zoo models give near-constant ages
    rep = export_onnx(ckpt, tmp_path / "tiny.onnx", int8=True, n_samples=24)
    assert rep.int8_mode == "static", rep.notes
    assert rep.int8_drift["age mean|diff|"] < 0.5  # years, on the calibration faces
    lm = load_checkpoint(ckpt)
    x = network_input(sample_crops(lm.preprocess, 8, seed=5)[0], lm.preprocess)
    a, b = OnnxRunner(rep.path)(x)["age"], OnnxRunner(rep.int8_path)(x)["age"]
    assert a.std() > 0.05  # the faces get different ages, so closeness means something
    assert np.abs(a - b).mean() < 0.5 and np.corrcoef(a, b)[0, 1] > 0.8
    ops = {n.op_type for n in onnx.load(rep.int8_path).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert read_sidecar(rep.int8_path)["onnx"]["int8"]["mode"] == "static"


def test_export_cli_and_estimator_on_onnx(tmp_path, capsys):
    from test_estimator import faces, tiny_checkpoint

    from agekit.cli import main

    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "out" / "tiny.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out), "--samples", "8"]) == 0
    text = capsys.readouterr().out
    assert "parity fp32 vs PyTorch" in text and out.is_file()
    imgs = faces(3)
    a = agekit.Estimator.from_pretrained(out, detector="cropped").predict(imgs)
    t = agekit.Estimator.from_pretrained(ckpt, backend="torch", detector="cropped").predict(imgs)
    np.testing.assert_allclose([r["faces"][0]["age"] for r in a], [r["faces"][0]["age"] for r in t], atol=1e-4)
    assert json.loads(out.with_suffix(".json").read_text())["format"] == "agekit-onnx-1"


def test_hsr_exports_its_padded_equal(tmp_path):
    """SepHSR(30,10) goes to ONNX with 32 channels (ORT's NCHWc kernels), with parity against the 30-channel network."""
    ckpt = _ckpt(tmp_path, "sephsr_30_10")
    rep = export_onnx(ckpt, tmp_path / "pad.onnx", n_samples=8)
    raw = export_onnx(ckpt, tmp_path / "raw.onnx", n_samples=8, pad_channels=0)
    card, raw_card = read_sidecar(rep.path), read_sidecar(raw.path)
    assert card["onnx"]["padded_channels"] == {"multiple": 16, "from": 30, "to": 32}
    assert "padded_channels" not in raw_card["onnx"]
    widths = {tuple(t.dims)[0] for t in onnx.load(rep.path).graph.initializer if len(t.dims) == 4}
    assert 32 in widths and 30 not in widths
    assert 30 in {tuple(t.dims)[0] for t in onnx.load(raw.path).graph.initializer if len(t.dims) == 4}
    lm = load_checkpoint(ckpt)
    crops, _ = sample_crops(lm.preprocess, 5, seed=4)
    x = network_input(crops, lm.preprocess)
    np.testing.assert_allclose(OnnxRunner(rep.path, threads=1)(x)["age"], OnnxRunner(raw.path, threads=1)(x)["age"], atol=1e-4)


def test_median_decoder_through_card_export_and_shipped_card(tmp_path):
    """agekit.evaluation.decoders.with_decoder's median decoder: in the card, through ONNX, and read back from a shipped card."""
    from agekit.evaluation.decoders import with_decoder
    from agekit.methods.base import distribution_median

    torch.manual_seed(0)
    cfg = {"student": "dldl", "student_config": {"sigma": 2.0}, "teacher_method": None, "gender_weight": 5.0}
    src = save_checkpoint(tmp_path / "s.pt", agekit.create_model("agenet_mt"), name="agenet_mt", method="distill",
                          card={"method_config": cfg})
    assert with_decoder(src, tmp_path / "m.pt", "median")["student_config"] == {"sigma": 2.0, "decoder": "median"}
    lm = load_checkpoint(tmp_path / "m.pt")
    rep = export_onnx(tmp_path / "m.pt", tmp_path / "m.onnx", n_samples=8)  # asserts fp32 parity with torch
    crops, _ = sample_crops(lm.preprocess, 5, seed=1)
    x = network_input(crops, lm.preprocess)
    got = OnnxRunner(rep.path, threads=1)(x)
    med = distribution_median(torch.from_numpy(got["distribution"]), torch.arange(101.0)).numpy()
    np.testing.assert_allclose(got["age"], med, atol=1e-4)
    mean = got["distribution"] @ np.arange(101.0)
    assert np.abs(got["age"] - mean).max() > 1e-3  # the median, not the expectation
    ref = TorchRunner(lm.model, load_method(lm.method, lm.name, lm.card))(x)
    np.testing.assert_allclose(got["age"], ref["age"], atol=1e-4)
    # a shipped card keeps the training card under "training": the predictor's torch backend decodes the same way
    shipped = {"training": lm.card, "inference": {"flip": True}}
    m = load_method("distill", "agenet_mt", shipped)
    assert m.student_method.decoder == "median" and m.gender_weight == 5.0
