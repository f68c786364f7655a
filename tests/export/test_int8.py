"""int8 graphs: the shipped ones load, agree with their float32 graphs and say how they were made; the measured layer
selection keeps in float32 a layer whose int8 kernel loses (fake timings) unless the accuracy check refuses it;
depthwise convolutions stay float32; ``agekit predict --precision int8`` runs them and refuses in one line where
there is none."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from agekit.export import int8 as int8_mod  # noqa: E402
from agekit.export.int8 import INT8_SUFFIX, Int8Recipe, quantize, quantized_layers, rank, select_layers  # noqa: E402
from agekit.inference.weights import WEIGHTS_DIR, shipped_weights  # noqa: E402

SHIPPED_INT8 = [w["name"] for w in shipped_weights() if w.get("onnx_int8") is not None]


def _tiny_graph(path: Path) -> Path:
    """input (N, 3, 16, 16) -> Conv 3->8 -> Relu -> depthwise Conv 8 -> Conv 1x1 8->8 -> Relu -> GAP -> Gemm -> age."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def w(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="first", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "wd", "bd"], ["cd"], name="depthwise", pads=[1, 1, 1, 1], group=8),
        helper.make_node("Conv", ["cd", "wp", "bp"], ["cp"], name="pointwise"),
        helper.make_node("Relu", ["cp"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["age"], name="fc", transB=1),
    ]
    inits = [w("w1", 8, 3, 3, 3), w("b1", 8), w("wd", 8, 1, 3, 3), w("bd", 8), w("wp", 8, 8, 1, 1), w("bp", 8),
             w("wf", 1, 8), w("bf", 1)]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
                          [helper.make_tensor_value_info("age", TensorProto.FLOAT, ["batch", 1])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, np.ndarray]:
    x = np.random.default_rng(1).random((24, 3, 16, 16), dtype=np.float32)
    x *= np.linspace(0.2, 3.0, 24, dtype=np.float32)[:, None, None, None]  # inputs that differ: outputs that do too
    return _tiny_graph(tmp_path / "tiny.onnx"), x


def test_recipe_checks_and_roundtrip():
    r = Int8Recipe(calibration="minmax", exclude=["a"])
    assert Int8Recipe.from_dict(r.to_dict()) == r and r.exclude == ("a",)
    with pytest.raises(ValueError, match="calibration must be one of"):
        Int8Recipe(calibration="kl")
    with pytest.raises(ValueError, match="unknown settings"):
        Int8Recipe.from_dict({"bits": 4})


def test_depthwise_stays_float32_and_outputs_stay_close(tiny, tmp_path):
    path, x = tiny
    names = quantize(path, tmp_path / "q.onnx", x)
    assert {"first", "pointwise", "fc"} <= set(names) and "depthwise" not in names
    assert "depthwise" in quantize(path, tmp_path / "q2.onnx", x, Int8Recipe(exclude_depthwise=False))
    from agekit.export.int8 import run_graph

    a, b = run_graph(path, x)["age"], run_graph(tmp_path / "q.onnx", x)["age"]
    assert a.std() > 0.1 and np.abs(a - b).max() < 0.05 * (a.max() - a.min())  # 5 % of the range, on its own faces


def test_rank_keeps_the_plainer_of_equally_fast_choices():
    assert rank({"plain": 100.0, "fused": 102.0, "pools": 120.0}, 0.03) == ["pools", "plain", "fused"]
    assert rank({"plain": 100.0, "fused": 102.0}, 0.03) == ["plain", "fused"]


def _fake_speed(paths, x, threads=1, chunk=8, rounds=5, warmup=2):
    """Faces/s that reward every int8 layer but punish an int8 first convolution (as ONNX Runtime's 3-channel
    QLinearConv does): 1000 + 400 per int8 weighted layer - 700 if ``first`` is int8."""
    out = {}
    for k, p in paths.items():
        q = set(quantized_layers(p))
        v = 1000.0 + 400.0 * len(q & {"first", "pointwise", "fc"}) - 700.0 * ("first" in q)
        out[k] = {"faces_s": v, "cpu_faces_s": v}
    return out


def test_select_layers_drops_the_layer_whose_int8_kernel_loses(tiny, monkeypatch):
    path, x = tiny
    monkeypatch.setattr(int8_mod, "compare_speed", _fake_speed)
    sel = select_layers(path, x, x, Int8Recipe())
    assert sel.recipe.exclude == ("first",)
    assert {"pointwise", "fc"} <= set(sel.int8_layers) and {"first", "depthwise"} <= set(sel.float32_layers)
    assert sel.speedup == pytest.approx(1.8)  # 1000 + 2 x 400 against 1000
    assert [e["best"] for e in sel.log if e["step"] == "float32 layer"][0] == "first"


def test_select_layers_never_takes_a_graph_the_accuracy_check_refuses(tiny, monkeypatch):
    path, x = tiny
    monkeypatch.setattr(int8_mod, "compare_speed", _fake_speed)

    def accept(p):  # refuses every graph with the first convolution in float32, whatever the calibration
        ok = "first" in quantized_layers(p)
        return ok, "" if ok else "drift too large"

    sel = select_layers(path, x, x, Int8Recipe(), accept=accept)
    assert "first" in sel.int8_layers and sel.recipe.exclude == ()
    refused = [e for e in sel.log if e.get("refused")]
    assert refused and "percentile: drift too large; minmax: drift too large" in refused[0]["refused"]


@pytest.mark.parametrize("name", SHIPPED_INT8)
def test_shipped_int8_graph_loads_agrees_and_says_how_it_was_made(name):
    from agekit.export.onnx import synthetic_faces
    from agekit.inference.cards import file_sha256
    from agekit.inference.runtime import OnnxRunner, read_onnx_card
    from agekit.preprocessing import PreprocessSpec

    q = WEIGHTS_DIR / f"{name}{INT8_SUFFIX}"
    card = read_onnx_card(q)
    assert card["files"][q.name]["sha256"] == file_sha256(q)
    info = card["int8"]
    assert info["fp32_sha256"] == file_sha256(WEIGHTS_DIR / f"{name}.onnx")  # made from the shipped float32 graph
    assert info["made_with"].startswith("python experiments/int8_drift.py") and "train split" in info["calibration"]
    assert info["speed"]["slices_of_8"]["speedup"] >= 1.5 and abs(info["drift"]["utkface_val"]["mae_drift"]) <= 0.05
    assert abs(info["drift"]["utkface_test"]["mae_drift"]) <= 0.05
    spec = PreprocessSpec.from_dict(card["preprocess"])
    x = np.asarray(spec.normalize(synthetic_faces(16, spec.size, seed=3)), dtype=np.float32)
    a, b = OnnxRunner(WEIGHTS_DIR / f"{name}.onnx")(x), OnnxRunner(q)(x)
    assert set(a) == set(b)
    # drawn faces are far from the real calibration faces: within 2.5 years on average here (0.15-0.45 years on
    # real test faces, experiments/results/int8_drift.md), and ranked alike
    assert np.abs(a["age"] - b["age"]).mean() < 2.5 and np.corrcoef(a["age"].ravel(), b["age"].ravel())[0, 1] > 0.95
    if "gender_female" in a:
        assert np.abs(a["gender_female"] - b["gender_female"]).max() < 0.1


def _one_weight_dir(tmp_path: Path, name: str, with_int8: bool) -> Path:
    d = tmp_path / "weights"
    d.mkdir()
    for suffix in (".safetensors", ".json", ".md", ".onnx") + ((INT8_SUFFIX, ".int8.json") if with_int8 else ()):
        shutil.copy(WEIGHTS_DIR / f"{name}{suffix}", d / f"{name}{suffix}")
    return d


@pytest.mark.skipif(not SHIPPED_INT8, reason="no int8 graph is shipped")
def test_predict_precision_int8_runs_it_and_refuses_in_one_line_where_there_is_none(tmp_path, monkeypatch, capsys):
    import cv2

    from agekit.cli import main
    from agekit.export.onnx import synthetic_faces
    from agekit.inference import weights

    name = SHIPPED_INT8[0]
    face = tmp_path / "face.png"
    cv2.imwrite(str(face), synthetic_faces(1, 96, seed=4)[0][:, :, ::-1])
    ages = {}
    for precision in ("fp32", "int8"):
        argv = ["predict", str(face), "--model", name, "--detector", "cropped", "--json", "--precision", precision]
        assert main(argv) == 0
        cap = capsys.readouterr()
        assert (INT8_SUFFIX in cap.err) == (precision == "int8")  # the graph that ran is named
        ages[precision] = json.loads(cap.out.splitlines()[0])["faces"][0]["age"]
    assert abs(ages["int8"] - ages["fp32"]) < 5.0  # a drawn face, see above
    monkeypatch.setattr(weights, "WEIGHTS_DIR", _one_weight_dir(tmp_path, name, with_int8=False))
    assert main(["predict", str(face), "--model", name, "--detector", "cropped", "--precision", "int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"no int8 graph is shipped for {name!r}" in err[0] and "--precision fp32" in err[0]
    assert main(["predict", str(face), "--model", name, "--precision", "int8", "--backend", "torch"]) == 2
    assert "onnx backend only" in capsys.readouterr().err
