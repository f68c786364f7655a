"""Import of the authors' released Keras HDF5 weights into agekit networks (h5py only, no TensorFlow).

Supported files (see ``../shared/weights/README.md``):

- SSR-Net (shamangary/SSR-Net, Apache-2.0): Keras 2.0/2.1 ``save_weights`` files of the age
  models (``age_*.h5``, -> ``ssrnet``) and the gender models (``gender_*.h5``, ->
  ``ssrnet_gender``). They hold no model config: layers are matched by their Keras
  auto-names, which follow the creation order of ``SSRNET_model.py``.
- C3AE (StevenBanama/C3AE re-implementation, BSD-2-Clause): full-model Keras 2.2.4 files
  of the context models (``c3ae_imdb_v84.h5`` -> ``c3ae_full``, ``c3ae_imdb_v89_se.h5`` ->
  ``c3ae_full_se``); layers are matched through the stored model config.

Layout conversions: convolution kernels HWIO -> OIHW; dense kernels (in, out) -> (out, in);
a dense layer after a Keras ``Flatten``/``Reshape`` reads its input in (H, W, C) order, so its
rows are permuted to PyTorch's (C, H, W) flatten order; BatchNorm gamma/beta/moving
mean/variance -> weight/bias/running_mean/running_var with Keras' eps (1e-3).
Both released families take raw BGR 0..255 input: the converted checkpoints carry that
preprocessing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from agekit.models.checkpoint import SUFFIX, load_checkpoint, save_checkpoint
from agekit.models.complexity import complexity
from agekit.models.registry import create_model
from agekit.preprocessing import C3AE_CONTEXT, SSRNET, PreprocessSpec
from agekit.weightfile import add_trust_pickle_argument, file_sha256

SSRNET_AUTHORS = "Tsun-Yi Yang, Yi-Hsuan Huang, Yen-Yu Lin, Pi-Cheng Hsiu, Yung-Yu Chuang"
C3AE_AUTHORS = "Chao Zhang, Shuaicheng Liu, Xun Xu, Ce Zhu (paper); StevenBanama (re-implementation and weights)"

# What the weights README and the release say about each known file.
KNOWN_FILES: dict[str, dict[str, Any]] = {
    "age_imdb.h5": {"training_data": "IMDB (IMDB-WIKI, random 80 % split)", "reported_val_mae": 6.96},
    "age_wiki.h5": {"training_data": "WIKI (IMDB-WIKI, random 80 % split), initialised from the IMDB model",
                    "reported_val_mae": 6.77},
    "age_morph2.h5": {"training_data": "MORPH2 (random 80 % split), initialised from the WIKI model",
                      "reported_val_mae": 3.19},
    "age_megaface_asian.h5": {"training_data": "an Asian face set ('megaface_asian')", "reported_val_mae": 4.45},
    "gender_imdb.h5": {"training_data": "IMDB gender (1 = male)"},
    "gender_wiki.h5": {"training_data": "WIKI gender (1 = male)"},
    "gender_morph.h5": {"training_data": "MORPH gender (metadata 0 = male: the raw output is P(female))",
                        "invert_gender": True},
    "c3ae_imdb_v84.h5": {"training_data": "IMDB (IMDB-WIKI)", "reported_imdb_mae": 6.77},
    "c3ae_imdb_v89_se.h5": {"training_data": "IMDB (IMDB-WIKI)", "reported_imdb_mae": 6.58},
}


MAX_WEIGHT_ELEMENTS = 1 << 27  # 512 MiB of float32 in one weight: far beyond the released models (< 1 M in all)


class KerasFile:
    """The weights (``layer/weight`` -> array), model config and Keras version of a Keras HDF5 file."""

    def __init__(self, path: str | Path) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file")
        try:
            f = h5py.File(self.path, "r")
        except OSError as e:
            raise ValueError(f"{self.path}: not an HDF5 file ({e})") from None
        with f:
            cfg = f.attrs.get("model_config")
            self.config: dict | None = json.loads(_str(cfg)) if cfg is not None else None
            root = f["model_weights"] if "model_weights" in f else f
            self.keras_version = _str(root.attrs.get("keras_version", f.attrs.get("keras_version", "")))
            if "layer_names" not in root.attrs:
                raise ValueError(f"{self.path}: not a Keras weights file (no layer_names attribute)")
            self.layer_names = [_str(n) for n in root.attrs["layer_names"]]
            self.weights: dict[str, np.ndarray] = {}
            for layer in self.layer_names:
                g = root[layer]
                for wn in g.attrs.get("weight_names", []):
                    wn = _str(wn)
                    key = wn[:-2] if wn.endswith(":0") else wn
                    if key in self.weights:
                        raise ValueError(f"{self.path}: weight {key!r} appears twice")
                    self.weights[key] = self._read(g, wn, key)

    def _read(self, group: Any, name: str, key: str) -> np.ndarray:
        """One weight as float32, read only when it is a plain numeric dataset stored inside this file."""
        import h5py

        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise ValueError(f"{self.path}: weight {key!r} is a link to elsewhere ({type(link).__name__}), not data "
                             "in this file")
        d = group[name]
        if not isinstance(d, h5py.Dataset) or d.external:
            raise ValueError(f"{self.path}: weight {key!r} is not a dataset stored in this file")
        if d.dtype.kind not in "fiu":
            raise ValueError(f"{self.path}: weight {key!r} has dtype {d.dtype}, not a number type")
        if d.size > MAX_WEIGHT_ELEMENTS:
            raise ValueError(f"{self.path}: weight {key!r} has {d.size} values, more than any released model "
                             f"({MAX_WEIGHT_ELEMENTS})")
        return np.asarray(d[()], dtype=np.float32)

    def get(self, layer: str, weight: str) -> np.ndarray:
        """The array of ``layer/weight``; a clear error naming the file when missing."""
        key = f"{layer}/{weight}"
        if key not in self.weights:
            raise ValueError(f"{self.path}: has no weight {key!r} (is this the architecture you meant?)")
        return self.weights[key]


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def conv_kernel(k: np.ndarray) -> torch.Tensor:
    """Keras conv kernel (kh, kw, in, out) -> PyTorch (out, in, kh, kw)."""
    return _t(k.transpose(3, 2, 0, 1))


def dense_kernel(k: np.ndarray, hwc: tuple[int, int, int] | None = None, blocks: int = 1) -> torch.Tensor:
    """Keras dense kernel (in, out) -> PyTorch (out, in); rows read in Keras (H, W, C) flatten order
    (``hwc``, repeated ``blocks`` times for a concatenation) are reordered to PyTorch's (C, H, W)."""
    k = k.reshape(-1, k.shape[-1])
    if hwc is not None:
        h, w, c = hwc
        n = h * w * c
        if k.shape[0] != n * blocks:
            raise ValueError(f"dense kernel has {k.shape[0]} inputs, expected {blocks} x {h}x{w}x{c}")
        k = k.reshape(blocks, h, w, c, -1).transpose(0, 3, 1, 2, 4).reshape(blocks * n, -1)
    return _t(k.T)


def _copy(dst: torch.Tensor, src: torch.Tensor, kf: KerasFile, key: str) -> None:
    """``dst[...] = src`` with the exact shape (no broadcasting) and only finite values; else one line naming the weight."""
    if tuple(src.shape) != tuple(dst.shape):
        raise ValueError(f"{kf.path}: weight {key!r} has shape {tuple(src.shape)}, the network needs {tuple(dst.shape)}")
    if not bool(torch.isfinite(src).all()):
        bad = int((~torch.isfinite(src)).sum())
        raise ValueError(f"{kf.path}: weight {key!r} holds {bad} non-finite value(s) (NaN or inf) of {src.numel()}")
    dst.copy_(src)


def _load_conv(mod: nn.Conv2d, kf: KerasFile, layer: str) -> None:
    if kf.get(layer, "kernel").ndim != 4:
        raise ValueError(f"{kf.path}: weight {layer + '/kernel'!r} has shape {kf.get(layer, 'kernel').shape}, a "
                         "convolution kernel has 4 dimensions")
    _copy(mod.weight.data, conv_kernel(kf.get(layer, "kernel")), kf, f"{layer}/kernel")
    if mod.bias is not None:
        _copy(mod.bias.data, _t(kf.get(layer, "bias")), kf, f"{layer}/bias")
    elif f"{layer}/bias" in kf.weights:
        raise ValueError(f"{kf.path}: {layer} has a bias but the target convolution has none")


def _load_dense(mod: nn.Linear, kf: KerasFile, layer: str, hwc=None, blocks: int = 1) -> None:
    k = kf.get(layer, "kernel")
    if k.ndim < 2 or int(np.prod(k.shape[:-2])) != 1:  # (in, out), or a 1x1 convolution's (1, 1, in, out)
        raise ValueError(f"{kf.path}: weight {layer + '/kernel'!r} has shape {k.shape}, not a dense kernel "
                         "(in, out) or a 1x1 convolution's")
    _copy(mod.weight.data, dense_kernel(kf.get(layer, "kernel"), hwc, blocks), kf, f"{layer}/kernel")
    _copy(mod.bias.data, _t(kf.get(layer, "bias")), kf, f"{layer}/bias")


def _load_bn(mod: nn.BatchNorm2d, kf: KerasFile, layer: str, eps: float = 1e-3) -> None:
    _copy(mod.weight.data, _t(kf.get(layer, "gamma")), kf, f"{layer}/gamma")
    _copy(mod.bias.data, _t(kf.get(layer, "beta")), kf, f"{layer}/beta")
    _copy(mod.running_mean, _t(kf.get(layer, "moving_mean")), kf, f"{layer}/moving_mean")
    var = _t(kf.get(layer, "moving_variance"))
    if var.numel() and float(var.min()) < 0:  # NaN is caught by _copy
        raise ValueError(f"{kf.path}: weight {layer + '/moving_variance'!r} (a BatchNorm variance) has negative "
                         f"values (min {float(var.min()):g})")
    _copy(mod.running_var, var, kf, f"{layer}/moving_variance")
    mod.eps = eps


# ---------------------------------------------------------------------------------------- SSR-Net


def _ssrnet_config(kf: KerasFile) -> tuple[str, dict[str, Any]]:
    names = set(kf.layer_names)
    if "pred_a" in names:
        arch, pred = "ssrnet", "pred_age_stage"
    elif "pred" in names:
        arch, pred = "ssrnet_gender", "pred_stage"
    else:
        raise ValueError(f"{kf.path}: no 'pred_a' or 'pred' layer: not an SSR-Net weights file")
    stage_num = [int(kf.get(f"{pred}{k}", "bias").shape[0]) for k in (1, 2, 3)]
    config: dict[str, Any] = {}
    if stage_num != [3, 3, 3]:
        config["stage_num"] = stage_num
    return arch, config


def load_ssrnet(model: nn.Module, kf: KerasFile) -> None:
    """Copy a released SSR-Net weights file into :class:`agekit.models.ssrnet.SSRNet` (layers by creation order)."""
    pred = "pred_age_stage" if "pred_a" in kf.layer_names else "pred_stage"
    for i, block in enumerate(model.x_stream.blocks):  # stream x: conv2d_1..4, batch_normalization_1..4
        _load_conv(block.conv, kf, f"conv2d_{i + 1}")
        _load_bn(block.bn, kf, f"batch_normalization_{i + 1}")
    for i, block in enumerate(model.s_stream.blocks):  # stream s: conv2d_5..8
        _load_conv(block.conv, kf, f"conv2d_{i + 5}")
        _load_bn(block.bn, kf, f"batch_normalization_{i + 5}")
    for k, st in enumerate(model.stages):
        side = int(round((st.num_features / 10) ** 0.5))
        hwc = (side, side, 10)
        _load_conv(st.s_conv, kf, f"conv2d_{9 + 2 * k}")
        _load_conv(st.x_conv, kf, f"conv2d_{10 + 2 * k}")
        _load_dense(st.s_mix, kf, f"dense_{1 + 3 * k}", hwc)
        _load_dense(st.x_mix, kf, f"dense_{2 + 3 * k}", hwc)
        _load_dense(st.feat, kf, f"dense_{3 + 3 * k}")
        _load_dense(st.pred, kf, f"{pred}{k + 1}")
        if st.dynamic_range:
            _load_dense(st.delta, kf, f"delta_s{k + 1}", hwc)
            _load_dense(st.local, kf, f"local_delta_stage{k + 1}")


# ------------------------------------------------------------------------------------------- C3AE


def _layers(cfg: dict) -> list[dict]:
    return cfg["config"]["layers"]


def _c3ae_parts(kf: KerasFile) -> tuple[dict, list[dict]]:
    if kf.config is None:
        raise ValueError(f"{kf.path}: no model config: not a full-model C3AE file")
    outer = _layers(kf.config)
    subs = [l for l in outer if l["class_name"] in ("Model", "Functional")]
    if len(subs) != 1:
        raise ValueError(f"{kf.path}: expected one shared sub-model (the C3AE backbone), found {len(subs)}")
    return subs[0], outer


def _c3ae_config(kf: KerasFile) -> tuple[str, dict[str, Any]]:
    sub, outer = _c3ae_parts(kf)
    inner = _layers(sub)
    se = any(l["class_name"] == "Dense" for l in inner)
    crops = sum(1 for l in outer if l["class_name"] == "InputLayer")
    if crops != 3:
        raise ValueError(f"{kf.path}: C3AE full model with {crops} inputs is not supported (expected 3)")
    return ("c3ae_full_se" if se else "c3ae_full"), {}


def load_c3ae(model: nn.Module, kf: KerasFile) -> None:
    """Copy a released C3AE full model into :class:`agekit.models.c3ae.C3AENet` (layers via the model config)."""
    sub, outer = _c3ae_parts(kf)
    inner = _layers(sub)
    sname = sub["config"]["name"] if "name" in sub["config"] else sub["name"]
    bb = model.backbone
    convs = [l for l in inner if l["class_name"] == "Conv2D"]
    bns = [l for l in inner if l["class_name"] == "BatchNormalization"]
    dense = [l for l in inner if l["class_name"] == "Dense"]
    ours_convs = [bb.conv1, bb.conv2, bb.conv3, bb.conv4, bb.conv5]
    if len(convs) != 5 or len(bns) != 4:
        raise ValueError(
            f"{kf.path}: backbone has {len(convs)} convolutions and {len(bns)} BN layers, expected 5 and 4"
        )
    for mod, l in zip(ours_convs, convs):
        if (mod.bias is not None) != bool(l["config"].get("use_bias", True)):
            raise ValueError(f"{kf.path}: {l['config']['name']} use_bias differs from the target network")
        _load_conv(mod, kf, l["config"]["name"])
    for i, l in enumerate(bns):
        _load_bn(getattr(bb, f"bn{i + 1}"), kf, l["config"]["name"], float(l["config"].get("epsilon", 1e-3)))
    if (bb.se is not None) != bool(dense):
        raise ValueError(f"{kf.path}: SE blocks present in the file: {bool(dense)}, in the target: {bb.se is not None}")
    if bb.se is not None:
        if len(dense) != 2 * len(bb.se):
            raise ValueError(f"{kf.path}: {len(dense)} SE dense layers, expected {2 * len(bb.se)}")
        for j, se in enumerate(bb.se):
            _load_dense(se.fc1, kf, dense[2 * j]["config"]["name"])
            _load_dense(se.fc2, kf, dense[2 * j + 1]["config"]["name"])
    # Head: the layers with weights after the concatenation, in order: W1 (Dense or 1x1 Conv), W2.
    head = [l for l in outer if l["class_name"] in ("Dense", "Conv2D") and l["config"]["name"] != sname]
    if len(head) != 2:
        raise ValueError(f"{kf.path}: expected the cascade head W1, W2 after the backbone, found {len(head)} layers")
    side = int(round((model.feature_dim / 32) ** 0.5))
    _load_dense(model.w1, kf, head[0]["config"]["name"], (side, side, 32), blocks=model.num_crops)
    _load_dense(model.w2, kf, head[1]["config"]["name"])


# ------------------------------------------------------------------------------------------ API


def detect_arch(kf: KerasFile) -> tuple[str, dict[str, Any]]:
    """The agekit model name and config matching a released Keras file."""
    if kf.config is not None:
        return _c3ae_config(kf)
    return _ssrnet_config(kf)


def convert_keras(path: str | Path, arch: str | None = None) -> nn.Module:
    """A released Keras HDF5 file -> the agekit network with its weights, in eval mode.

    ``arch`` (``ssrnet``, ``ssrnet_gender``, ``c3ae_full``, ``c3ae_full_se``) is detected from the
    file when not given. The model's ``preprocess`` is the released models' input: BGR, raw 0..255.
    """
    kf = KerasFile(path)
    detected, config = detect_arch(kf)
    arch = arch or detected
    if arch != detected:
        raise ValueError(f"{kf.path}: holds a {detected!r} network, not {arch!r}")
    known = KNOWN_FILES.get(kf.path.name, {})
    if known.get("invert_gender"):
        config["invert_gender"] = True
    model = create_model(arch, **config)
    model.eval()
    with torch.no_grad():
        if arch.startswith("ssrnet"):
            load_ssrnet(model, kf)
        else:
            load_c3ae(model, kf)
    model.preprocess = _released_spec(arch)  # type: ignore[attr-defined]
    model.keras_version = kf.keras_version  # type: ignore[attr-defined]
    return model


def _released_spec(arch: str) -> PreprocessSpec:
    if arch.startswith("ssrnet"):
        return SSRNET  # BGR, raw 0..255
    return dataclasses.replace(C3AE_CONTEXT, scale=1.0)  # the released graphs have no white_norm: raw 0..255


def model_card(model: nn.Module, src: str | Path) -> dict[str, Any]:
    """Model card of a converted release: source file, authors, licence, training data, conversion notes."""
    src = Path(src)
    arch = model.agekit_name  # type: ignore[attr-defined]
    known = KNOWN_FILES.get(src.name, {})
    if arch.startswith("ssrnet"):
        card: dict[str, Any] = {
            "paper": "SSR-Net: A Compact Soft Stagewise Regression Network for Age Estimation (IJCAI 2018)",
            "authors": SSRNET_AUTHORS,
            "source_repository": "https://github.com/shamangary/SSR-Net",
            "license": "Apache-2.0",
        }
    else:
        card = {
            "paper": "C3AE: Exploring the Limits of Compact Model for Age Estimation (CVPR 2019)",
            "authors": C3AE_AUTHORS,
            "source_repository": "https://github.com/StevenBanama/C3AE",
            "license": "BSD-2-Clause",
        }
    c = complexity(model, tuple(model.input_size))  # type: ignore[attr-defined]
    card.update(
        {
            "source_file": src.name,
            "source_sha256": file_sha256(src),
            "keras_version": getattr(model, "keras_version", None),
            "training_data": known.get("training_data", "unknown (not a file agekit knows)"),
            "reported": {k: v for k, v in known.items() if k.startswith("reported")},
            "converted_by": "agekit.models.convert (h5py; HWIO->OIHW, (in,out)->(out,in), HWC->CHW flatten, BN eps 1e-3)",
            "input": "BGR, raw 0..255, no mean/std",
            "complexity": c.to_dict(),
        }
    )
    if arch == "ssrnet_gender":
        card["output"] = "gender_prob = P(male)" + (" (1 - raw output)" if known.get("invert_gender") else "")
    return card


def convert_to_checkpoint(src: str | Path, out: str | Path, arch: str | None = None) -> Path:
    """Convert ``src`` and write an agekit checkpoint (weights, config, BGR 0..255 spec, model card) to ``out``."""
    model = convert_keras(src, arch)
    name = model.agekit_name  # type: ignore[attr-defined]
    method = {"ssrnet": "ssr", "ssrnet_gender": "ssr_gender"}.get(name, "c3ae")
    return save_checkpoint(
        out,
        model,
        name=name,
        config=model.agekit_config,  # type: ignore[attr-defined]
        preprocess=model.preprocess,  # type: ignore[attr-defined]
        method=method,
        card=model_card(model, src),
    )


def _cmd(args: argparse.Namespace) -> int:
    try:
        path = convert_to_checkpoint(args.src, args.out, args.arch)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"agekit convert: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


def _convert_checkpoint_cmd(args: argparse.Namespace) -> int:
    src, dst = Path(args.src), Path(args.dst)
    if dst.suffix != SUFFIX:
        print(f"agekit convert-checkpoint: {dst}: the output is a {SUFFIX} file; name it so", file=sys.stderr)
        return 2
    if dst.exists() and dst.resolve() == src.resolve():
        print(f"agekit convert-checkpoint: {dst}: write the converted file next to the original, not over it",
              file=sys.stderr)
        return 2
    try:
        ld = load_checkpoint(src, trust_pickle=args.trust_pickle)
        save_checkpoint(dst, ld.model, name=ld.name, config=ld.config, preprocess=ld.preprocess, method=ld.method,
                        card=ld.card)
    except (FileNotFoundError, ValueError) as e:
        print(f"agekit convert-checkpoint: {e}", file=sys.stderr)
        return 2
    print(f"wrote {dst} ({ld.name}, {len(ld.model.state_dict())} tensors; data only, loads without --trust-pickle)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``agekit convert SRC.h5 [--arch NAME] --out FILE.safetensors`` and ``agekit convert-checkpoint OLD NEW``."""
    p = subparsers.add_parser("convert", help="import the authors' released Keras weights (SSR-Net, C3AE)")
    p.add_argument("src", help="Keras HDF5 file (SSR-Net age_*/gender_*.h5, C3AE c3ae_imdb_*.h5)")
    p.add_argument("--arch", default=None, help="ssrnet, ssrnet_gender, c3ae_full or c3ae_full_se (default: detect)")
    p.add_argument("--out", required=True, help="agekit checkpoint to write (.safetensors)")
    p.set_defaults(func=_cmd)

    c = subparsers.add_parser(
        "convert-checkpoint", help="rewrite an agekit .pt / Lightning .ckpt checkpoint as a data-only .safetensors file",
        description="Rewrite an old agekit checkpoint (.pt) or a Lightning checkpoint written by `agekit train` "
                    "(.ckpt) as an agekit .safetensors file: tensors plus JSON, nothing executable. Files that hold "
                    "only tensors and plain data convert as they are; a file that needs other Python objects is "
                    "refused unless --trust-pickle (its code then runs: only for files you made or trust).")
    c.add_argument("src", help="old checkpoint (.pt, .pth or .ckpt)")
    c.add_argument("dst", help="new checkpoint (.safetensors)")
    add_trust_pickle_argument(c)
    c.set_defaults(func=_convert_checkpoint_cmd)
