"""The predict path of a core install: ONNX Runtime and numpy only, no torch or other training libraries."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from agekit import preprocessing as P

HEAVY = ("torch", "lightning", "kornia", "scipy", "matplotlib", "h5py", "onnx", "onnxscript", "yaml", "pydantic",
         "face_recognition_models")


def _torch_normalize(spec: P.PreprocessSpec, crops: np.ndarray, input_color: str = "RGB") -> np.ndarray:
    """The tensor normalisation the predictor used before it moved to numpy (the reference)."""
    torch = pytest.importorskip("torch")
    x = torch.as_tensor(crops).to(torch.float32)
    if input_color != spec.color:
        x = x.flip(-1)
    x = x.movedim(-1, -3)
    if spec.per_image_standardize:
        n = x.shape[-3] * x.shape[-2] * x.shape[-1]
        mu = x.mean(dim=(-3, -2, -1), keepdim=True)
        sd = x.std(dim=(-3, -2, -1), keepdim=True, unbiased=False)
        return ((x - mu) / torch.clamp(sd, min=1.0 / float(n) ** 0.5)).numpy()
    x = x * spec.scale
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(3, 1, 1)
    return ((x - mean) / std).numpy()


@pytest.mark.parametrize("name", ["SSRNET", "C3AE", "C3AE_CONTEXT", "HSR", "AGEKIT", "IMAGENET", "LMTCNN"])
@pytest.mark.parametrize("input_color", ["RGB", "BGR"])
def test_numpy_normalisation_equals_the_tensor_one(name, input_color):
    spec = getattr(P, name)
    rng = np.random.default_rng(0)
    shape = (3, spec.num_crops, spec.size, spec.size, 3) if spec.num_crops > 1 else (4, spec.size, spec.size, 3)
    crops = rng.integers(0, 256, shape, dtype=np.uint8)
    ref = _torch_normalize(spec, crops, input_color)
    got = spec.normalize_numpy(crops, input_color)
    assert got.dtype == np.float32 and got.shape == ref.shape == shape[:-3] + (3, spec.size, spec.size)
    if spec.per_image_standardize:  # mean and deviation summed in another order: float32 rounding only
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    else:
        assert np.array_equal(got, ref)  # bit for bit
    np.testing.assert_array_equal(spec.normalize(crops, input_color).numpy(), got)  # the tensor API on numpy input


def _run(code: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.splitlines()


def test_predict_on_the_shipped_onnx_imports_no_torch(tmp_path):
    from PIL import Image

    photo = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (96, 80, 3), dtype=np.uint8)).save(photo)
    code = (f"import sys; from agekit.cli import main; rc = main(['predict', {str(photo)!r}, '--detector', 'cropped', "
            f"'--json']); print(rc, sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = _run(code)
    assert out[-1] == "0 []", out
    import json

    rec = json.loads(out[0])
    faces = rec[0]["faces"] if isinstance(rec, list) else rec["faces"]
    assert 0 < faces[0]["age"] < 120 and faces[0]["gender"] in ("female", "male")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["predict", "--help"], ["models", "ssrnet"]])
def test_help_and_listing_import_nothing_heavy(argv):
    """``agekit --help`` imports no command module; a command's help builds its parser without loading a model."""
    light = HEAVY if argv[0] == "predict" else HEAVY + ("cv2", "dlib", "onnxruntime")
    code = (f"import sys; from agekit.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {light!r} if m in sys.modules))")
    assert _run(code)[-1] == "[]"


def test_import_agekit_imports_no_torch():
    assert _run(f"import sys, agekit; print(sorted(m for m in {HEAVY!r} if m in sys.modules))")[-1] == "[]"


def test_python_dash_m_agekit_is_the_command():
    r = subprocess.run([sys.executable, "-m", "agekit", "--version"], capture_output=True, text=True, timeout=60)
    from agekit import __version__

    assert r.returncode == 0 and r.stdout.strip() == __version__


def test_the_command_table_matches_the_command_modules():
    """``agekit --help`` lists COMMANDS without importing the modules: each entry is what its module registers."""
    import argparse
    import importlib

    from agekit.cli import COMMANDS

    seen = {}
    for mod in sorted({m for m, _ in COMMANDS.values()}):
        try:
            m = importlib.import_module(mod)
        except ImportError as e:  # an extra not installed here
            pytest.skip(f"{mod}: {e}")
        sub = argparse.ArgumentParser().add_subparsers()
        m.register(sub)
        seen.update({a.dest: (mod, a.help) for a in sub._choices_actions})
    assert seen == COMMANDS


@pytest.mark.parametrize("argv,blocked,extra", [
    (["convert", "x.h5", "--out", "y.safetensors"], "h5py", "convert"),
    (["train", "--recipe", "x"], "lightning", "train"),
    (["export", "x.safetensors"], "onnxscript", "export"),
    (["predict", "x.jpg", "--backend", "torch"], "torch", "train"),
    (["predict", "x.jpg", "--model", str(__import__("agekit.inference.weights", fromlist=["WEIGHTS_DIR"]).WEIGHTS_DIR
                                         / "gender_agenet_utkface.safetensors")], "onnxscript", "export"),
])
def test_a_missing_extra_is_one_line_naming_the_pip_install(argv, blocked, extra):
    """The module is made unimportable (as if never installed); the command says which extra to install."""
    code = (f"import sys; sys.modules[{blocked!r}] = None\nfrom agekit.cli import main\n"
            f"if {blocked!r} != 'torch': sys.modules.pop('torch', None)\nsys.exit(main({argv!r}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"agekit {argv[0]}: error: ")
    assert lines[0].endswith(f"needs {blocked}, which is not installed: pip install 'agekit[{extra}]'")
    if argv[0] == "predict":  # it names what needed the extra
        assert "the checkpoint " in lines[0] and ".safetensors (on the " in lines[0]


def test_require_extra_names_the_first_missing_module(monkeypatch):
    import importlib.util

    from agekit.extras import EXTRAS, MissingExtraError, missing_modules, require_extra

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in ("kornia", "yaml") else real(n, *a))
    assert missing_modules("train") == ["kornia", "yaml"] and missing_modules("report") == []
    with pytest.raises(MissingExtraError, match=r"^agekit train needs kornia, which is not installed: "
                                                r"pip install 'agekit\[train\]'$"):
        require_extra("train", "agekit train")
    with pytest.raises(ValueError, match="no extra called 'trian'"):
        missing_modules("trian")
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(extras) and {"all", "test"} <= set(extras)


def test_core_dependencies_are_the_predictor_only():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in project["dependencies"]}
    assert names == {"numpy", "onnxruntime", "opencv-python-headless", "dlib-bin", "pillow", "safetensors", "tqdm"}


def test_the_5_point_landmark_model_ships_in_the_package_under_its_licence():
    import hashlib
    import tomllib
    from pathlib import Path

    from agekit.face.detect import landmark_model_path

    p = landmark_model_path(5)
    assert p.parent == Path(__import__("agekit").__file__).parent / "face" / "models"
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    note = (p.parent / "LICENSES.md").read_text()
    assert digest in note and "CC0 1.0" in note and (p.parent / "LICENSE-CC0-1.0.txt").is_file()
    data = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {"face/models/*.dat", "face/models/*.md", "face/models/*.txt", "py.typed"} <= set(data["package-data"]["agekit"])


def test_user_mistakes_are_one_line_with_a_suggestion(capsys, tmp_path):
    from agekit.cli import main

    assert main(["predict", str(tmp_path / "x.jpg"), "--model", "agee"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no shipped weight called 'agee' (did you mean 'age'?)" in err[0]
    assert "agekit train --recipe RECIPE --data caches/utkface --out runs/age" in err[0]  # a command that runs
    assert main(["prepare", "utkfac", "--root", str(tmp_path), "--out", str(tmp_path / "c")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and "unknown dataset 'utkfac' (did you mean 'utkface'?)" in err[0] and '"' not in err[0]


def test_top_level_exports_the_typed_results():
    import agekit
    from agekit.inference.results import FaceResult, PhotoResult

    assert agekit.PhotoResult is PhotoResult and agekit.FaceResult is FaceResult


def test_the_shipped_hog_detector_is_dlibs_frontal_face_detector(utkface_dir):
    """The saved detector loads in milliseconds and finds the same boxes with the same scores and sub-detectors."""
    import glob
    import hashlib
    import time

    dlib = pytest.importorskip("dlib")
    from agekit.face.detect import SHIPPED_HOG
    from agekit.serve.synthetic import drawn_face

    t = time.perf_counter()
    shipped = dlib.fhog_object_detector(str(SHIPPED_HOG))
    load_s = time.perf_counter() - t
    builtin = dlib.get_frontal_face_detector()
    assert load_s < 0.2 and shipped.num_detectors == builtin.num_detectors == 5
    assert hashlib.sha256(SHIPPED_HOG.read_bytes()).hexdigest() in (SHIPPED_HOG.parent / "LICENSES.md").read_text()
    from PIL import Image

    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(glob.glob(str(utkface_dir / "*.jpg")))[:12]]
    images = photos + [drawn_face(seed=s) for s in range(3)]
    for img in images:
        for upsample in (0, 1):
            a, b = shipped.run(img, upsample, -0.2), builtin.run(img, upsample, -0.2)
            assert [str(r) for r in a[0]] == [str(r) for r in b[0]] and a[1] == b[1] and a[2] == b[2]
