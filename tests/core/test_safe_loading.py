"""Safe loading: no file agekit loads can run code, and every loaded weight is validated before use.

A malicious pickle (its ``__reduce__`` writes a marker file) goes to every command and API that
loads a file; each must refuse it with one stderr line naming the file, exit non-zero, and leave
no marker. Also: the safetensors round trip, ``--trust-pickle`` for old files on purpose, the
NaN / shape / BatchNorm-variance refusals naming the tensor, teacher output files, Keras ``.h5``
import, and non-finite network outputs reaching the user as null with a reason.
"""
from __future__ import annotations

import fractions
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import agekit
from agekit.cli import main
from agekit.models.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from agekit.weightfile import FORMAT_KEY, read_metadata, read_weights

REPO = Path(__file__).resolve().parents[2]


class Payload:
    """Unpickling this runs ``exec``: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('payload ran')",))


@pytest.fixture(params=["checkpoint", "bare"])
def evil(request, tmp_path):
    """(file, marker): a torch.save'd agekit-looking checkpoint with a payload inside, or a bare pickle of one."""
    marker = tmp_path / "MARKER"
    path = tmp_path / f"evil_{request.param}.pt"
    if request.param == "checkpoint":
        torch.save({"format": "agekit-1", "model": "c3ae_plain", "config": {}, "state_dict": {},
                    "card": {"x": Payload(marker)}}, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(Payload(marker), f)
    return path, marker


@pytest.fixture
def tiny(tmp_path):
    from test_estimator import tiny_checkpoint

    return tiny_checkpoint(tmp_path / "tiny.safetensors")


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """A 4-row prepared cache with the tiny test model's view (random pixels)."""
    from test_estimator import TINY_SPEC

    from agekit.data.cache import write_cache

    n = 4
    meta = {"age": np.array([10, 30, 50, 70], np.float32), "gender": np.array([0, 1, 0, 1], np.int8),
            "race": np.zeros(n, np.int8), "hash": np.array([f"{i:040x}" for i in range(n)]),
            "source": np.array([f"{i}.jpg" for i in range(n)])}
    views = {TINY_SPEC.view_key: np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)}
    root = tmp_path_factory.mktemp("cache")
    write_cache(root, meta, views, {"utkface": {"train": np.arange(2), "val": np.arange(2, 3), "test": np.arange(3, 4)}},
                {"dataset": "tiny"})
    return root


def _refused(argv, path: Path, marker: Path, capsys) -> str:
    """Run ``agekit ARGV`` in-process: a non-zero exit, one stderr line naming ``path``, no payload run."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert not marker.exists(), "the pickle's payload ran"
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0]
    return lines[0]


# ------------------------------------------------------------------ a malicious pickle, every loader


def test_load_checkpoint_refuses_a_pickle_and_runs_nothing(evil):
    path, marker = evil
    with pytest.raises(UnsafeCheckpointError, match=r"refused: .*exec.*convert-checkpoint") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UnsafeCheckpointError):
        read_checkpoint(path)
    assert not marker.exists()


def test_predict_model_refuses(evil, capsys):
    path, marker = evil
    line = _refused(["predict", "x.jpg", "--model", path, "--gender-model", "none"], path, marker, capsys)
    assert "agekit convert-checkpoint" in line and "--trust-pickle" in line


def test_predict_torch_backend_refuses(evil, capsys):
    path, marker = evil
    _refused(["predict", "x.jpg", "--model", path, "--backend", "torch"], path, marker, capsys)


def test_predict_gender_model_refuses(evil, tiny, capsys):
    path, marker = evil
    _refused(["predict", "x.jpg", "--model", tiny, "--gender-model", path, "--backend", "torch"], path, marker, capsys)


def test_evaluate_refuses(evil, tiny_cache, capsys):
    path, marker = evil
    _refused(["evaluate", path, "--data", tiny_cache, "--device", "cpu"], path, marker, capsys)


def test_export_refuses(evil, tmp_path, capsys):
    path, marker = evil
    _refused(["export", path, "--out", tmp_path / "x.onnx"], path, marker, capsys)
    assert not (tmp_path / "x.onnx").exists()


def test_teacher_outputs_refuses(evil, tiny_cache, tmp_path, capsys):
    path, marker = evil
    _refused(["teacher-outputs", path, "--data", tiny_cache, "--out", tmp_path / "t.npz"], path, marker, capsys)
    assert not (tmp_path / "t.npz").exists()


def test_train_init_from_refuses(evil, tiny_cache, tmp_path, capsys):
    path, marker = evil
    _refused(["train", "--recipe", "c3ae_plain_utkface", "--data", tiny_cache, "--out", tmp_path / "run",
              "--init-from", path], path, marker, capsys)


def test_train_teacher_refuses(evil, tiny_cache, tmp_path, capsys):
    path, marker = evil
    _refused(["train", "--recipe", "agenet_mt_distill_utkface", "--data", tiny_cache, "--out", tmp_path / "run",
              "--set", f"teacher={path}"], path, marker, capsys)


def test_train_resume_refuses_a_malicious_last_ckpt(evil, tiny_cache, tmp_path, capsys):
    path, marker = evil
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(path.read_bytes())
    _refused(["train", "--recipe", "c3ae_plain_utkface", "--data", tiny_cache, "--out", tmp_path / "run",
              "--resume"], last, marker, capsys)


def test_train_resume_trusts_a_pickled_last_ckpt_only_on_purpose(tmp_path, capsys):
    """A real last.ckpt that needs a Python object: --resume refuses it, --resume --trust-pickle continues from it."""
    from test_training import N, _needs, quick

    from agekit.data.cache import write_cache

    recipe = "c3ae_plain_utkface"
    specs, protos = _needs(recipe, quick(recipe))
    s = specs[0]
    rng = np.random.default_rng(0)
    meta = {"age": np.linspace(5, 80, N).astype(np.float32), "gender": np.array([0, 1] * (N // 2), np.int8),
            "race": np.zeros(N, np.int8), "hash": np.array([f"{i:040x}" for i in range(N)]),
            "source": np.array([f"{i}.jpg" for i in range(N)])}
    parts = {"train": np.arange(0, 4), "val": np.arange(4, 6), "test": np.arange(6, 8)}
    write_cache(tmp_path / "cache", meta, {s.view_key: rng.integers(0, 256, (N, s.size, s.size, 3), dtype=np.uint8)},
                {p: {n: parts[n.split("_")[-1]] for n in names} for p, names in protos.items()}, {"dataset": "tiny"})
    argv = ["train", "--recipe", recipe, "--data", str(tmp_path / "cache"), "--out", str(tmp_path / "run")]
    argv += [x for o in quick(recipe) if not o.startswith("trainer.max_epochs") for x in ("--set", o)]
    assert main(argv + ["--epochs", "1"]) == 0
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ck = torch.load(last, weights_only=True)
    ck["hyper_parameters"]["card"]["share"] = fractions.Fraction(1, 3)
    torch.save(ck, last)
    capsys.readouterr()
    assert main(argv + ["--epochs", "2", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(last) in err[0] and "fractions.Fraction" in err[0]
    assert main(argv + ["--epochs", "2", "--resume", "--trust-pickle"]) == 0
    assert "loaded as a full pickle" in capsys.readouterr().err
    assert torch.load(last, weights_only=True)["global_step"] == 2  # continued from step 1


def test_convert_commands_refuse(evil, tmp_path, capsys):
    path, marker = evil
    _refused(["convert-checkpoint", path, tmp_path / "new.safetensors"], path, marker, capsys)
    assert not (tmp_path / "new.safetensors").exists()
    _refused(["convert", path, "--out", tmp_path / "k.safetensors"], path, marker, capsys)  # not HDF5: never unpickled


def test_teacher_npz_holding_a_pickle_refuses(tmp_path, tiny_cache, capsys):
    from agekit.training.teacher import read_teacher_outputs

    marker = tmp_path / "MARKER"
    bare = tmp_path / "evil.npz"
    with open(bare, "wb") as f:
        pickle.dump(Payload(marker), f)
    inner = tmp_path / "inner.npz"  # an archive whose array is a pickled object array
    np.savez(inner, age=np.array([Payload(marker)], dtype=object))
    for p in (bare, inner):
        with pytest.raises(ValueError, match=f"{p.name}: not a teacher output file"):
            read_teacher_outputs(p)
        _refused(["train", "--recipe", "agenet_mt_distill_utkface", "--data", tiny_cache, "--out", tmp_path / "run",
                  "--set", f"teacher={p}"], p, marker, capsys)


def test_a_real_process_prints_one_line(evil, tmp_path):
    path, marker = evil
    r = subprocess.run([sys.executable, "-c", "import sys; from agekit.cli import main; sys.exit(main(sys.argv[1:]))",
                        "predict", "x.jpg", "--backend", "torch", "--model", str(path)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and not marker.exists()
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"agekit predict: {path}: refused"), r.stderr


def test_not_a_checkpoint_at_all(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello, not a checkpoint\n")
    with pytest.raises(CheckpointError, match="junk.pt: not a checkpoint agekit can read"):
        load_checkpoint(junk)
    listed = tmp_path / "list.pt"
    torch.save([1, 2, 3], listed)
    with pytest.raises(CheckpointError, match="list.pt: not an agekit checkpoint"):
        load_checkpoint(listed)


# ------------------------------------------------------------------ the native format


def test_safetensors_round_trip_and_metadata_without_torch(tmp_path):
    model = agekit.create_model("c3ae_plain")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    card = {"licence": "test", "metrics": {"mae": 4.5}, "nested": [1, {"a": None}]}
    path = save_checkpoint(tmp_path / "m.safetensors", model, method="c3ae", card=card)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left
    lm = load_checkpoint(path)
    assert lm.name == "c3ae_plain" and lm.method == "c3ae" and lm.card == card and lm.preprocess == model.preprocess
    assert not lm.model.training
    ref = model.state_dict()
    got = lm.model.state_dict()
    assert set(got) == set(ref) and all(torch.equal(got[k], ref[k]) and got[k].dtype == ref[k].dtype for k in ref)
    meta, arrays = read_weights(path)
    assert meta["model"] == "c3ae_plain" and meta["card"] == card and meta["preprocess"] == model.preprocess.to_dict()
    assert all(arrays[k].shape == tuple(ref[k].shape) for k in ref)  # 0-d counters stay 0-d
    # the metadata and the tensors are read without importing torch (the module alone, outside the package)
    code = ("import importlib.util, sys; s = importlib.util.spec_from_file_location('wf', sys.argv[2]); "
            "wf = importlib.util.module_from_spec(s); s.loader.exec_module(wf); m, t = wf.read_weights(sys.argv[1]); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(m['model'], len(t))")
    r = subprocess.run([sys.executable, "-c", code, str(path), str(REPO / "src" / "agekit" / "weightfile.py")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["c3ae_plain", str(len(ref))], r.stderr


def test_a_failed_save_leaves_the_old_file(tmp_path):
    model = agekit.create_model("c3ae_plain")
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    before = path.read_bytes()
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        save_checkpoint(path, model)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_shipped_weights_are_safetensors_and_load_data_only():
    from agekit.inference.weights import WEIGHTS_DIR, shipped_weights

    entries = shipped_weights()
    assert entries and not list(WEIGHTS_DIR.glob("*.pt"))
    for e in entries:
        assert e["path"].suffix == ".safetensors"
        meta = read_metadata(e["path"])
        assert meta["model"] == e["model"] and e["card"]["file_bytes"] == e["path"].stat().st_size
        load_checkpoint(e["path"])  # validated: shapes, dtypes, finite, BN variances


# ------------------------------------------------------------------ old files: data only, or on purpose


def _old_format(path: Path, model, card) -> Path:
    torch.save({"format": "agekit-1", "model": model.agekit_name, "config": {}, "preprocess": model.preprocess.to_dict(),
                "method": "l1", "state_dict": model.state_dict(), "card": card}, path)
    return path


def test_old_pt_loads_data_only_and_trust_pickle_loads_the_rest(tmp_path, tiny, capsys):
    model = load_checkpoint(tiny).model
    plain = _old_format(tmp_path / "plain.pt", model, {"training_data": "none"})
    assert torch.equal(load_checkpoint(plain).model.conv.weight, model.conv.weight)  # no flag needed
    # a harmless object outside the allow-list: refused by default, loaded on purpose with --trust-pickle
    old = _old_format(tmp_path / "old.pt", model, {"share": fractions.Fraction(1, 3)})
    with pytest.raises(UnsafeCheckpointError, match="fractions.Fraction"):
        load_checkpoint(old)
    assert main(["predict", "x.jpg", "--model", str(old), "--backend", "torch", "--gender-model", "none"]) == 2
    assert "old.pt: refused" in capsys.readouterr().err
    assert load_checkpoint(old, trust_pickle=True).card["share"] == fractions.Fraction(1, 3)
    assert "loaded as a full pickle" in capsys.readouterr().err
    img = tmp_path / "face.png"
    import cv2
    from test_estimator import faces

    cv2.imwrite(str(img), faces(1)[0])
    assert main(["predict", str(img), "--model", str(old), "--backend", "torch", "--detector", "cropped",
                 "--json", "--trust-pickle"]) == 0
    cap = capsys.readouterr()
    assert "warning" in cap.err and "old.pt" in cap.err and json.loads(cap.out.splitlines()[0])["faces"][0]["age"] is not None
    # converted once, it loads without the flag, with the same weights
    new = tmp_path / "new.safetensors"
    assert main(["convert-checkpoint", str(old), str(new), "--trust-pickle"]) == 0
    lm = load_checkpoint(new)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in lm.model.state_dict().items())
    assert lm.card["share"] == "1/3"  # JSON keeps what it can: the value as text
    from agekit.models.checkpoint import _TRUST_PICKLE

    assert _TRUST_PICKLE is False  # the flag holds for its command only


# ------------------------------------------------------------------ validation of every loaded weight


def _tampered(src: Path, dst: Path, **changes) -> Path:
    """A copy of a safetensors checkpoint with some tensors replaced (None: removed), written raw."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(src), framework="np") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for k, v in changes.items():
        k = k.replace("__", ".")
        if v is None:
            tensors.pop(k)
        else:
            tensors[k] = v
    save_file(tensors, str(dst), metadata=meta)
    return dst


@pytest.fixture(scope="module")
def bn_ckpt(tmp_path_factory):
    """c3ae_plain (with BatchNorm) saved as a checkpoint."""
    return save_checkpoint(tmp_path_factory.mktemp("bn") / "c3ae.safetensors", agekit.create_model("c3ae_plain"))


@pytest.mark.parametrize("change, message", [
    ({"w1__bias": np.full(1, 0.5, np.float32)}, r"tensor 'w1.bias' has shape \(1,\), the network's is \(12,\)"),
    ({"w1__bias": np.full(12, np.nan, np.float32)}, r"tensor 'w1.bias' holds 12 non-finite value\(s\)"),
    ({"w1__weight": None}, r"tensor 'w1.weight' of the network is missing"),
    ({"extra": np.zeros(3, np.float32)}, r"tensor 'extra' is not part of the network"),
    ({"w1__bias": np.zeros(12, np.int32)}, r"tensor 'w1.bias' has dtype int32, the network needs floating point"),
    ({"backbone__bn1__running_var": -np.ones(32, np.float32)},
     r"tensor 'backbone.bn1.running_var' \(a BatchNorm running variance\) has negative values"),
])
def test_bad_tensors_are_refused_naming_the_tensor(bn_ckpt, tmp_path, capsys, change, message):
    ref = agekit.create_model("c3ae_plain").state_dict()
    for k in change:  # the test's own names must be the network's
        assert k == "extra" or k.replace("__", ".") in ref
    bad = _tampered(bn_ckpt, tmp_path / "bad.safetensors", **change)
    with pytest.raises(CheckpointError, match=message) as e:
        load_checkpoint(bad)
    assert str(e.value).startswith(f"{bad}: ") and "\n" not in str(e.value)
    assert main(["predict", "x.jpg", "--model", str(bad), "--backend", "torch", "--gender-model", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]


def test_old_pt_tensors_are_validated_too(bn_ckpt, tmp_path):
    lm = load_checkpoint(bn_ckpt)
    sd = lm.model.state_dict()
    sd["backbone.bn1.running_var"] = -sd["backbone.bn1.running_var"] - 1
    torch.save({"format": "agekit-1", "model": "c3ae_plain", "config": {}, "state_dict": sd}, tmp_path / "o.pt")
    with pytest.raises(CheckpointError, match="o.pt: tensor 'backbone.bn1.running_var'.*negative"):
        load_checkpoint(tmp_path / "o.pt")


def test_bad_metadata_is_one_line(bn_ckpt, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(bn_ckpt), framework="np") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    for key, value, message in [("model", '"no_such_net"', "cannot build network 'no_such_net'"),
                                ("config", '{"bogus_option": 3}', "cannot build network 'c3ae_plain'"),
                                ("card", "[1, 2", "header field 'card' is not valid JSON"),
                                (FORMAT_KEY, "other", "without agekit metadata")]:
        p = tmp_path / f"{key}.safetensors"
        save_file(tensors, str(p), metadata={**meta, key: value})
        with pytest.raises(ValueError, match=message) as e:
            load_checkpoint(p)
        assert str(e.value).startswith(str(p)) and "\n" not in str(e.value)


def test_a_config_asking_for_a_huge_network_is_refused_before_building_it(bn_ckpt, tmp_path):
    """The tensors are compared with a meta-device shell first: a 360 GB network is never allocated."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(bn_ckpt), framework="np") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    p = tmp_path / "huge.safetensors"
    save_file(tensors, str(p), metadata={**meta, "config": '{"channels": 100000}'})
    with pytest.raises(CheckpointError, match=r"tensor 'backbone.conv1.weight' has shape \(32, 3, 3, 3\), the network's "
                                              r"is \(100000, 3, 3, 3\)"):
        load_checkpoint(p)


# ------------------------------------------------------------------ teacher outputs


@pytest.mark.parametrize("arrays, message", [
    ({"age": np.array([1.0, np.nan], np.float32)}, r"array 'age' holds 1 non-finite"),
    ({"age": np.ones((2, 2), np.float32)}, r"array 'age' has shape \(2, 2\)"),
    ({"age": np.array(["a", "b"])}, r"array 'age' has dtype <U1"),
    ({"log_probs": np.zeros((2, 3), np.float32)}, r"no 'age' array"),
    ({"age": np.ones(2, np.float32), "log_probs": np.zeros((2, 3), np.float32)}, "go together"),
    ({"age": np.ones(2, np.float32), "log_probs": np.zeros((3, 3), np.float32), "bin_ages": np.arange(3.0)},
     r"'log_probs' has shape \(3, 3\), expected \(2, 3\)"),
    ({"age": np.ones(2, np.float32), "log_probs": np.full((2, 3), -np.inf, np.float32), "bin_ages": np.arange(3.0)},
     r"'log_probs' holds 6 non-finite"),
    ({"age": np.ones(2, np.float32), "gender_female": np.array([0.5, 1.5], np.float32)},
     r"'gender_female' must hold one probability in \[0, 1\] per row of 'age' \(2\); it has 2 values in \[0.5, 1.5\]"),
    ({"age": np.ones(2, np.float32), "gender_female": np.array([0.5], np.float32)}, r"it has 1 values"),
])
def test_teacher_output_files_are_validated(tmp_path, arrays, message):
    from agekit.training.teacher import load_teacher

    p = tmp_path / "t.npz"
    np.savez(p, **arrays)
    with pytest.raises(ValueError, match=message) as e:
        load_teacher(str(p))
    assert str(e.value).startswith(f"{p}: ")


# ------------------------------------------------------------------ Keras .h5 import


def _keras_file(path: Path, **weights) -> Path:
    """A minimal Keras weights file: one layer per name, with the given arrays."""
    import h5py

    layers = sorted({k.split("/")[0] for k in weights})
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in layers])
        for layer in layers:
            g = f.create_group(layer)
            names = [k for k in weights if k.startswith(layer + "/")]
            g.attrs["weight_names"] = np.array([f"{k}:0".encode() for k in names])
            for k in names:
                g.create_dataset(f"{k}:0", data=weights[k])
    return path


def test_keras_import_rejects_broadcast_nan_and_negative_variance(tmp_path):
    from torch import nn

    from agekit.models.convert import KerasFile, _load_bn, _load_conv, _load_dense

    ok = {"d/kernel": np.ones((3, 2), np.float32), "d/bias": np.zeros(2, np.float32)}
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        _load_dense(lin, KerasFile(_keras_file(tmp_path / "ok.h5", **ok)), "d")
    assert torch.equal(lin.weight, torch.ones(2, 3))
    cases = [
        ({**ok, "d/bias": np.zeros(1, np.float32)}, r"weight 'd/bias' has shape \(1,\), the network needs \(2,\)"),
        ({**ok, "d/kernel": np.full((3, 2), np.nan, np.float32)}, r"weight 'd/kernel' holds 6 non-finite"),
    ]
    for i, (w, message) in enumerate(cases):
        with pytest.raises(ValueError, match=message), torch.no_grad():
            _load_dense(nn.Linear(3, 2), KerasFile(_keras_file(tmp_path / f"d{i}.h5", **w)), "d")
    with pytest.raises(ValueError, match=r"weight 'c/bias' has shape \(1,\)"), torch.no_grad():
        _load_conv(nn.Conv2d(2, 4, 3), KerasFile(_keras_file(
            tmp_path / "c.h5", **{"c/kernel": np.ones((3, 3, 2, 4), np.float32), "c/bias": np.ones(1, np.float32)})), "c")
    bn = {"b/gamma": np.ones(4, np.float32), "b/beta": np.zeros(4, np.float32),
          "b/moving_mean": np.zeros(4, np.float32), "b/moving_variance": np.array([1, 1, -0.5, 1], np.float32)}
    with pytest.raises(ValueError, match=r"'b/moving_variance' \(a BatchNorm variance\) has negative values"), \
            torch.no_grad():
        _load_bn(nn.BatchNorm2d(4), KerasFile(_keras_file(tmp_path / "b.h5", **bn)), "b")
    with pytest.raises(ValueError, match=r"weight 'd/kernel' has dtype \|S1, not a number type"):
        KerasFile(_keras_file(tmp_path / "s.h5", **{"d/kernel": np.array([b"x"])}))


def test_convert_cli_rejects_a_tampered_release(weights_dir, tmp_path, capsys):
    """The authors' SSR-Net file with one weight broken: `agekit convert` refuses it in one line naming the weight."""
    import shutil

    import h5py

    src = weights_dir / "ssrnet" / "age_morph2.h5"
    for i, (layer, weight, make, message) in enumerate([
        ("dense_1", "bias", lambda a: a[:1], "weight 'dense_1/bias' has shape (1,)"),
        ("conv2d_1", "kernel", lambda a: np.full_like(a, np.nan), "weight 'conv2d_1/kernel' holds"),
        ("batch_normalization_1", "moving_variance", lambda a: -np.abs(a) - 1,
         "weight 'batch_normalization_1/moving_variance' (a BatchNorm variance) has negative values"),
    ]):
        bad = tmp_path / f"bad{i}.h5"
        shutil.copyfile(src, bad)
        with h5py.File(bad, "r+") as f:
            g = f["model_weights"][layer] if "model_weights" in f else f[layer]
            name = next(n for n in g.attrs["weight_names"] if n.decode().endswith(f"/{weight}:0")).decode()
            data = make(np.asarray(g[name]))
            del g[name]
            g.create_dataset(name, data=data)
        out = tmp_path / f"bad{i}.safetensors"
        assert main(["convert", str(bad), "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(bad) in err[0] and message in err[0], err
        assert not out.exists()


# ------------------------------------------------------------------ non-finite outputs never reach the user as NaN


def test_non_finite_outputs_become_null_with_a_reason():
    from test_estimator import TINY_SPEC, faces

    from agekit.inference.estimator import Estimator, ModelHead

    class Runner:
        backend = "fake"

        def __call__(self, x):
            n = len(x)
            return {"age": np.array([np.nan, 30.0][:n] + [30.0] * (n - 2), np.float32),
                    "uncertainty": np.full(n, np.inf, np.float32), "gender_female": np.full(n, 0.9, np.float32)}

    est = Estimator(ModelHead("fake", TINY_SPEC, Runner(), "fake"), detector="cropped")
    res = est.predict(list(faces(2)))
    bad, good = res[0]["faces"][0], res[1]["faces"][0]
    assert bad["age"] is None and bad["uncertainty"] is None and bad["gender"] == "female"
    assert "non-finite age, uncertainty" in bad["error"]
    assert good["age"] == 30.0 and good["uncertainty"] is None and "uncertainty" in good["error"]
    json.loads(json.dumps(res, allow_nan=False))  # valid JSON: no NaN anywhere
