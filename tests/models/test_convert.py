"""Import of the released Keras weights: layout conversions by hand, parity with the golden Keras outputs."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agekit.models import convert
from agekit.models.checkpoint import load_checkpoint
from agekit.models.convert import KerasFile, conv_kernel, convert_keras, convert_to_checkpoint, dense_kernel

SSR_AGE = ["age_imdb", "age_wiki", "age_morph2", "age_megaface_asian"]
SSR_GENDER = ["gender_imdb", "gender_wiki", "gender_morph"]
C3AE_FILES = {"c3ae_imdb_v84": "c3ae_full", "c3ae_imdb_v89_se": "c3ae_full_se"}


def test_dense_kernel_reorders_keras_flatten() -> None:
    rng = np.random.default_rng(0)
    fmap = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)  # NHWC, as Keras holds it
    k = rng.standard_normal((3 * 4 * 5, 7)).astype(np.float32)  # rows in (H, W, C) order
    keras_out = fmap.reshape(2, -1) @ k
    torch_in = torch.from_numpy(fmap).permute(0, 3, 1, 2).flatten(1)  # (C, H, W) order
    ours = torch_in @ dense_kernel(k, (3, 4, 5)).T
    assert np.allclose(ours.numpy(), keras_out, atol=1e-5)
    # Two concatenated blocks (the C3AE context head).
    k2 = rng.standard_normal((2 * 60, 7)).astype(np.float32)
    keras2 = np.concatenate([fmap[0].reshape(-1), fmap[1].reshape(-1)]) @ k2
    ours2 = torch.cat([torch_in[0], torch_in[1]]) @ dense_kernel(k2, (3, 4, 5), blocks=2).T
    assert np.allclose(ours2.numpy(), keras2, atol=1e-5)


def test_conv_kernel_hwio_to_oihw() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 5, 5, 2)).astype(np.float32)  # NHWC
    k = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)  # HWIO
    # Keras "valid" cross-correlation at output (i, j): sum_{a,b,c} x[i+a, j+b, c] k[a, b, c, :]
    ref = np.stack([[np.einsum("abc,abco->o", x[0, i : i + 3, j : j + 3], k) for j in range(3)] for i in range(3)])
    ours = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), conv_kernel(k))[0].permute(1, 2, 0)
    assert np.allclose(ours.numpy(), ref, atol=1e-5)


def test_bad_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        KerasFile(tmp_path / "nope.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="junk.h5: not an HDF5 file"):
        KerasFile(junk)
    parser = argparse.ArgumentParser()
    convert.register(parser.add_subparsers())
    args = parser.parse_args(["convert", str(junk), "--out", str(tmp_path / "x.safetensors")])
    assert args.func(args) == 1 and not (tmp_path / "x.safetensors").exists()


# ------------------------------------------------------------------ parity with the released models


@pytest.fixture
def golden(weights_dir: Path) -> Path:
    return weights_dir / "golden"


def _inputs(golden: Path) -> torch.Tensor:
    x = np.load(golden / "ssrnet_inputs_bgr_uint8.npy")  # (16, 64, 64, 3) BGR uint8, raw 0..255 input
    return torch.from_numpy(x).float().permute(0, 3, 1, 2)


@pytest.mark.parametrize("name", SSR_AGE)
def test_ssrnet_age_parity(weights_dir: Path, golden: Path, name: str) -> None:
    model = convert_keras(weights_dir / "ssrnet" / f"{name}.h5")
    assert model.agekit_name == "ssrnet"
    with torch.no_grad():
        age = model(_inputs(golden)).age.numpy()
    np.testing.assert_allclose(age, np.load(golden / f"ssrnet_{name}.npy"), atol=1e-3, rtol=0)


@pytest.mark.parametrize("name", SSR_GENDER)
def test_ssrnet_gender_parity(weights_dir: Path, golden: Path, name: str) -> None:
    model = convert_keras(weights_dir / "ssrnet" / f"{name}.h5")
    assert model.agekit_name == "ssrnet_gender"
    with torch.no_grad():
        prob = model(_inputs(golden)).gender_prob.numpy()
    ref = np.load(golden / f"ssrnet_{name}.npy")
    if name == "gender_morph":  # trained with MORPH's 0 = male: the raw output is P(female)
        assert model.invert_gender
        ref = 1.0 - ref
    np.testing.assert_allclose(prob, ref, atol=1e-5, rtol=0)


def test_ssrnet_stage_outputs(weights_dir: Path, golden: Path) -> None:
    model = convert_keras(weights_dir / "ssrnet" / "age_imdb.h5")
    ref = np.load(golden / "ssrnet_age_imdb_stages.npz")
    feats: dict[str, torch.Tensor] = {}

    def keep(key):
        return lambda mod, inp, out: feats.__setitem__(key, out)

    for k, st in enumerate(model.stages, start=1):
        st.s_mix.register_forward_hook(keep(f"s_mix_stage{k}"))
        st.x_mix.register_forward_hook(keep(f"x_mix_stage{k}"))
        st.feat.register_forward_hook(keep(f"feat_stage{k}"))
    with torch.no_grad():
        out = model(_inputs(golden))
    for k, st in enumerate(out.stages, start=1):
        np.testing.assert_allclose(st["p"].numpy(), ref[f"p_stage{k}"], atol=1e-5)
        np.testing.assert_allclose(st["eta"].numpy(), ref[f"eta_stage{k}"], atol=1e-5)
        np.testing.assert_allclose(st["delta"].numpy(), ref[f"delta_s{k}"], atol=1e-5)
        for key in (f"s_mix_stage{k}", f"x_mix_stage{k}", f"feat_stage{k}"):
            np.testing.assert_allclose(F.relu(feats[key]).numpy(), ref[key], atol=1e-4, err_msg=key)
    np.testing.assert_allclose(out.age.numpy(), ref["age"], atol=1e-3)


@pytest.mark.parametrize("name", sorted(C3AE_FILES))
def test_c3ae_parity(weights_dir: Path, golden: Path, name: str) -> None:
    model = convert_keras(weights_dir / "c3ae" / f"{name}.h5")
    assert model.agekit_name == C3AE_FILES[name]
    x = _inputs(golden)
    with torch.no_grad():
        same = model(x.unsqueeze(1).expand(-1, 3, -1, -1, -1))  # the same image on all three inputs
        i = torch.arange(16)
        mixed = model(torch.stack([x[i], x[(i + 1) % 16], x[(i + 2) % 16]], dim=1))
        trunk = model.backbone(x).permute(0, 2, 3, 1).flatten(1)  # Keras' (H, W, C) flatten
    np.testing.assert_allclose(same.age.numpy(), np.load(golden / f"{name}.npy"), atol=1e-3, rtol=0)
    np.testing.assert_allclose(same.probs.numpy(), np.load(golden / f"{name}_bins.npy"), atol=1e-5, rtol=0)
    np.testing.assert_allclose(mixed.age.numpy(), np.load(golden / f"{name}_mixed.npy"), atol=1e-3, rtol=0)
    np.testing.assert_allclose(trunk.numpy(), np.load(golden / f"{name}_trunk_feat.npy"), atol=1e-3, rtol=1e-4)


def test_wrong_arch_is_refused(weights_dir: Path) -> None:
    with pytest.raises(ValueError, match="age_imdb.h5: holds a 'ssrnet' network, not 'c3ae_full'"):
        convert_keras(weights_dir / "ssrnet" / "age_imdb.h5", arch="c3ae_full")


def test_checkpoint_roundtrip_and_card(weights_dir: Path, golden: Path, tmp_path: Path) -> None:
    src = weights_dir / "ssrnet" / "age_morph2.h5"
    out = convert_to_checkpoint(src, tmp_path / "ssrnet_morph2.safetensors")
    loaded = load_checkpoint(out)
    assert loaded.name == "ssrnet" and loaded.method == "ssr"
    assert loaded.preprocess.color == "BGR" and loaded.preprocess.scale == 1.0
    card = loaded.card
    assert card["license"] == "Apache-2.0" and "Yung-Yu Chuang" in card["authors"]
    assert card["source_file"] == "age_morph2.h5" and "MORPH2" in card["training_data"]
    assert card["complexity"]["params_with_bn_stats"] == 40_915
    with torch.no_grad():
        age = loaded.model(_inputs(golden)).age.numpy()
    np.testing.assert_allclose(age, np.load(golden / "ssrnet_age_morph2.npy"), atol=1e-3)


def test_cli_converts_c3ae(weights_dir: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    convert.register(parser.add_subparsers())
    target = tmp_path / "c3ae.safetensors"
    args = parser.parse_args(["convert", str(weights_dir / "c3ae" / "c3ae_imdb_v84.h5"), "--out", str(target)])
    assert args.func(args) == 0
    loaded = load_checkpoint(target)
    assert loaded.name == "c3ae_full" and loaded.card["license"] == "BSD-2-Clause"
    assert loaded.preprocess.crops == "c3ae_triple" and loaded.preprocess.scale == 1.0
    assert loaded.card["reported"] == {"reported_imdb_mae": 6.77}
