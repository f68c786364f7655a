"""ONNX export of an agekit checkpoint, with a parity check and optional int8 quantisation.

The exported graph is :class:`~agekit.methods.decode.ExportWrapper`: input ``input``
(batch, 3, H, W) or (batch, k, 3, H, W) of *normalised* crops (``spec.normalize``), outputs
``age`` [, ``gender_female``, ``uncertainty``, ``age_group_probs``, ``distribution``], with a
dynamic batch axis and opset >= 17 (legacy TorchScript exporter, ``dynamo=False``). A
``<stem>.json`` sidecar next to the file holds the model card plus the preprocessing spec,
output names and parity figures, so the ``.onnx`` is usable on its own.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from agekit.data.cache import PreparedCache
from agekit.export.int8 import quantize_int8
from agekit.face.pipeline import FacePipeline
from agekit.methods.decode import ExportWrapper, load_method
from agekit.models.checkpoint import LoadedModel, load_checkpoint
from agekit.preprocessing import PreprocessSpec, center_crop, network_input

ONNX_FORMAT = "agekit-onnx-1"
PARITY_ATOL = 1e-4  # years (and probability units for the other outputs)
# plus float32 rounding of large values: ~8 ulp relative (an untrained SSR-Net can output ages in the thousands,
# where one float32 ulp is 2.4e-4); at ages up to 100 this adds at most 1e-4
PARITY_RTOL = 1e-6
# the expectation of a distribution over ~100 age bins sums ~100 float32 products: the two runtimes' rounding
# reaches ~1e-4 years; 1e-3 years is 10x that and 10x below the precision agekit predict writes (0.01 years)
EXPECTATION_ATOL = 1e-3
# channel multiple for ONNX Runtime's NCHWc kernels (16 floats per AVX-512 register; also a multiple of AVX2's 8)
PAD_CHANNELS = 16


@dataclass
class ExportReport:
    """What an export wrote and how close it stays to PyTorch."""

    path: str
    outputs: list[str]
    opset: int
    parity: dict[str, float]  # output -> max |onnx - torch| over the check inputs
    parity_inputs: str
    int8_path: str | None = None
    int8_mode: str | None = None  # "static" or "dynamic"
    int8_drift: dict[str, float] = field(default_factory=dict)  # output -> mean/max |int8 - fp32|
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few printable lines."""
        lines = [f"exported {self.path} (opset {self.opset}, outputs {self.outputs})"]
        lines.append(
            "parity fp32 vs PyTorch on " + self.parity_inputs + ": "
            + ", ".join(f"{k} max|diff| {v:.2e}" for k, v in self.parity.items())
        )
        if self.int8_path:
            lines.append(
                f"int8 ({self.int8_mode}) {self.int8_path}: "
                + ", ".join(f"{k} {v:.4g}" for k, v in self.int8_drift.items())
            )
        lines += self.notes
        return "\n".join(lines)


def synthetic_faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 RGB face-like drawings (skin ellipse, eyes, brows, mouth) for calibration without data."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        bg = rng.integers(30, 220, 3)
        img = np.empty((size, size, 3), np.uint8)
        img[:] = bg
        skin = np.array([rng.integers(120, 240), rng.integers(80, 190), rng.integers(60, 160)])
        c = size // 2 + rng.integers(-size // 20, size // 20 + 1, 2)
        axes = (int(size * rng.uniform(0.26, 0.34)), int(size * rng.uniform(0.34, 0.42)))
        cv2.ellipse(img, (int(c[0]), int(c[1])), axes, 0, 0, 360, tuple(int(v) for v in skin), -1)
        dark = tuple(int(v) for v in rng.integers(10, 70, 3))
        ey = int(c[1] - axes[1] * 0.25)
        for sx in (-1, 1):
            ex = int(c[0] + sx * axes[0] * 0.4)
            cv2.circle(img, (ex, ey), max(1, size // 28), dark, -1)
            cv2.line(img, (ex - size // 16, ey - size // 14), (ex + size // 16, ey - size // 14), dark, max(1, size // 64))
        my = int(c[1] + axes[1] * 0.45)
        cv2.ellipse(img, (int(c[0]), my), (int(axes[0] * 0.35), max(1, size // 40)), 0, 0, 360, (150, 50, 60), -1)
        noise = rng.normal(0, 6, img.shape)
        out[i] = np.clip(cv2.GaussianBlur(img, (0, 0), size / 128 + 0.5) + noise, 0, 255).astype(np.uint8)
    return out


def _zoom(squares: np.ndarray, frac: float, size: int) -> np.ndarray:
    """Centre crops of side ``frac`` x the square's side, resized to ``size``."""
    side = max(1, int(round(squares.shape[1] * frac)))
    return np.stack([cv2.resize(q, (size, size), interpolation=cv2.INTER_AREA)
                     for q in center_crop(squares, side, channels_last=True)])


def crops_from_squares(squares: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 crops shaped as ``make_crops`` returns for ``spec`` from face squares (synthetic or pre-cropped faces).

    kres/C3AE context crops are zooms of the square (widest = the whole square): an
    approximation of the real crop geometry good enough for parity and calibration.
    """
    if spec.crops == "single":
        return _zoom(squares, 1.0, spec.size)
    if spec.crops == "lmtcnn":
        return _zoom(squares, 1.0, spec.resize or 256)
    ratios = spec.ratios if spec.crops == "kres" else (1.0, 1.45, 1.85)
    big = max(ratios)
    return np.stack([_zoom(squares, r / big, spec.size) for r in ratios], axis=1)


def sample_crops(spec: PreprocessSpec, n: int = 32, source: str | Path | None = None, seed: int = 0) -> tuple[np.ndarray, str]:
    """n uint8 crops for ``spec`` and a word on where they come from.

    ``source``: a prepared cache folder (its ``spec.view_key`` view), a folder of
    pre-cropped face images (through the face pipeline's ``cropped`` detector), or None
    for :func:`synthetic_faces`.
    """
    if source is not None:
        src = Path(source)
        if (src / "meta.npz").exists() or (src / "info.json").exists():
            cache = PreparedCache(src)
            view = cache.view(spec.view_key)
            rows = np.unique(np.linspace(0, len(view) - 1, min(n, len(view))).astype(int))
            return np.asarray(view[rows]), f"{len(rows)} faces of prepared cache {src}"

        pipe = FacePipeline([spec], detector="cropped")
        files = sorted(p for p in src.rglob("*") if p.is_file())
        crops = []
        for p in files:
            r = pipe.process_path(p)
            if r.faces:
                crops.append(r.faces[0].crops[spec.view_key])
            if len(crops) >= n:
                break
        if not crops:
            raise ValueError(f"{src}: no usable face image for calibration")
        return np.stack(crops), f"{len(crops)} face images from {src}"
    big = spec.resize or int(round(spec.size * (max(spec.ratios) if spec.crops != "single" else 1.0)))
    return crops_from_squares(synthetic_faces(n, max(big, spec.size), seed), spec), f"{n} synthetic sample faces"


def sidecar_path(onnx_path: str | Path) -> Path:
    """The ``.json`` card that goes with an exported ``.onnx``."""
    return Path(onnx_path).with_suffix(".json")


def median_decoder(method: Any) -> bool:
    """Whether a method decodes the age as the median of its distribution (a step function of it: an age can move
    by a bin's width when the distribution moves by a rounding error), itself or as a distillation's student."""
    return any(getattr(m, "decoder", None) == "median" for m in (method, getattr(method, "student_method", None)) if m)


def check_parity(
    wrapper: ExportWrapper, onnx_path: str | Path, x: np.ndarray, atol: float = PARITY_ATOL, rtol: float = PARITY_RTOL,
    bins: Sequence[float] | None = None, unchecked: Sequence[str] = (),
) -> tuple[dict[str, float], dict[str, float]]:
    """Max |ONNX Runtime - PyTorch| per output on ``x`` (batch 1 and full batch: the dynamic axis), and the outputs
    beyond their tolerance: ``atol + rtol * |PyTorch|``, plus, with a ``distribution`` over ``bins`` (ages), what
    the two runtimes' distribution difference can move an output decoded from it - ``sum_j |dp_j| |b_j|`` for the
    age (an expectation over the bins, C3AE's two-point code included) and ``min(dvar / sd, sqrt(dvar))`` with
    ``dvar = sum_j |dp_j| b_j^2 + |dmean| (|mean| + |mean'|)`` for its standard deviation. The distribution's
    ``expectation`` is compared too (key ``expectation``, within :data:`EXPECTATION_ATOL` years). Outputs in
    ``unchecked`` (a median decoder's age) are measured and reported, never failed."""
    runner = _OrtCheck(onnx_path)  # the whole batch in one run: checks the dynamic axis
    with torch.inference_mode():
        ref = {k: v.numpy().astype(np.float64) for k, v in wrapper.named(torch.from_numpy(x)).items()}
    b = None if bins is None else np.asarray(bins, dtype=np.float64).reshape(-1)
    diff: dict[str, float] = {}
    bad: dict[str, float] = {}

    def record(k: str, d: np.ndarray, tol: np.ndarray | float) -> None:
        diff[k] = max(diff.get(k, 0.0), float(d.max()) if d.size else 0.0)
        if k not in unchecked and d.size and np.any(~(d <= tol)):
            bad[k] = diff[k]

    for got in (runner(x), runner(x[:1])):
        extra: dict[str, np.ndarray] = {}
        if b is not None and "distribution" in got and got["distribution"].shape[-1] == len(b):
            p_onnx, p_torch = got["distribution"].astype(np.float64), ref["distribution"][: len(got["distribution"])]
            dp = np.abs(p_onnx - p_torch)
            m_onnx, m_torch = p_onnx @ b, p_torch @ b
            dm = np.abs(m_onnx - m_torch)
            record("expectation", dm, max(atol, EXPECTATION_ATOL) + rtol * np.abs(m_torch))
            dvar = dp @ (b * b) + dm * (np.abs(m_onnx) + np.abs(m_torch))
            extra["age"] = dp @ np.abs(b)
            sd = np.maximum(ref["uncertainty"][: len(dp)], 1e-12) if "uncertainty" in ref else None
            if sd is not None:
                extra["uncertainty"] = np.minimum(dvar / sd, np.sqrt(dvar))
        for k, v in got.items():
            r = ref[k][: len(v)]
            d = np.abs(v.astype(np.float64) - r)
            tol = atol + rtol * np.abs(r)
            if k in extra:
                tol = tol + extra[k].reshape(tol.shape)
            record(k, d, tol)
    return diff, bad


class _OrtCheck:
    """An exported graph on ONNX Runtime's CPU provider, one thread, the batch whole: named float outputs."""

    def __init__(self, path: str | Path):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.session.run(None, {"input": np.ascontiguousarray(x, dtype=np.float32)})))


def export_onnx(
    checkpoint: str | Path | LoadedModel,
    out: str | Path | None = None,
    *,
    opset: int = 17,
    int8: bool = False,
    calib: str | Path | None = None,
    n_samples: int = 32,
    atol: float = PARITY_ATOL,
    check: bool = True,
    pad_channels: int = PAD_CHANNELS,
) -> ExportReport:
    """Export a checkpoint to ONNX, check fp32 parity with PyTorch (asserted within ``atol``), optionally add int8.

    ``calib`` (prepared cache or folder of face images) supplies the parity and
    calibration faces; synthetic sample faces otherwise. ``pad_channels``: networks that offer
    ``padded(multiple)`` (the HSR family) are exported as their zero-padded equal with channel
    counts rounded up to this multiple, which ONNX Runtime's blocked-layout kernels need
    (SepHSR(30,10): 2-3x faster); the parity check still compares with the original network.
    0 exports the network as it is.

    ``out`` defaults to ``<checkpoint stem>.onnx`` in the current folder; a path inside the installed agekit
    package is refused (``PermissionError``). The graph, its ``.json`` sidecar (and the int8 graph) are written
    under temporary names and renamed only once the parity check has passed: a failed check leaves no file.
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    src_path = None
    if isinstance(checkpoint, LoadedModel):
        loaded = checkpoint
    else:
        src_path = Path(checkpoint)
        loaded = load_checkpoint(src_path)
    if out is None:
        if src_path is None:
            raise ValueError("give out= when exporting an in-memory model")
        out = Path.cwd() / f"{src_path.stem}.onnx"  # the current folder, never next to a shipped weight
    out = Path(out)
    refuse_package_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    final = out
    # everything is written under temporary names and renamed only once the parity check has passed
    out = out.with_name(f".{out.stem}.{os.getpid()}.partial.onnx")
    try:
        report = _export(loaded, src_path, out, final, opset, int8, calib, n_samples, atol, check, pad_channels)
    finally:
        for tmp in (out, sidecar_path(out), out.with_name(out.stem + ".int8.onnx"),
                    sidecar_path(out.with_name(out.stem + ".int8.onnx"))):
            tmp.unlink(missing_ok=True)
    return report


def refuse_package_path(out: str | Path) -> None:
    """Refuse to write an export into the installed agekit package (its shipped weights and cards)."""
    package = Path(__file__).resolve().parents[1]  # this file is agekit/export/onnx.py
    where = Path(out).resolve()
    if where == package or package in where.parents:
        raise PermissionError(f"{out}: inside the installed agekit package ({package}); exports never write there, "
                              "give --out elsewhere (default: the current folder)")


def _export(loaded: LoadedModel, src_path: Path | None, out: Path, final: Path, opset: int, int8: bool,
            calib: str | Path | None, n_samples: int, atol: float, check: bool, pad_channels: int) -> ExportReport:
    """:func:`export_onnx`'s work on the temporary name ``out``; renamed to ``final`` (and its sidecar, and the int8
    graph) only when the parity check passes."""
    spec = loaded.preprocess
    model = loaded.model.eval().float()
    method = load_method(loaded.method, loaded.name, loaded.card)
    wrapper = ExportWrapper(model, method).eval()
    padded = getattr(model, "padded", None)
    export_model = padded(pad_channels) if pad_channels and callable(padded) else model
    exported = ExportWrapper(export_model, method).eval() if export_model is not model else wrapper

    crops, where = sample_crops(spec, n_samples, calib)
    x = network_input(crops, spec)
    keys = wrapper.discover_keys(torch.from_numpy(x[:2]))
    exported.keys = keys
    if "age" not in keys and "gender_female" not in keys and "age_group_probs" not in keys:
        raise ValueError(f"{loaded.name}: the network gives neither age nor gender (outputs {keys})")
    names = {"input": {0: "batch"}, **{k: {0: "batch"} for k in keys}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            exported,
            (torch.from_numpy(x[:2]),),
            str(out),
            input_names=["input"],
            output_names=list(keys),
            dynamic_axes=names,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    report = ExportReport(str(final), list(keys), opset, {}, where)
    bins = _bin_ages(model, x[:1])
    unchecked = ("age",) if median_decoder(method) and bins is not None and "distribution" in keys else ()
    if check:
        report.parity, bad = check_parity(wrapper, out, x, atol, bins=bins, unchecked=unchecked)
        if bad:
            raise AssertionError(f"{final}: ONNX fp32 differs from PyTorch by more than {atol} years or probability "
                                 f"(+{PARITY_RTOL:g} x value, + what the distribution's difference explains): {bad}; "
                                 "nothing was written")
        if unchecked:
            report.notes.append(
                f"age: the median decoder is a step function of the distribution, so its age difference "
                f"({report.parity.get('age', 0.0):.2e} years) is reported, not checked; the distribution "
                f"({report.parity.get('distribution', 0.0):.2e}) and its expectation "
                f"({report.parity.get('expectation', 0.0):.2e} years) are checked")

    info = {
        **(loaded.card or {}),
        "format": ONNX_FORMAT,
        "model": loaded.name,
        "config": loaded.config,
        "preprocess": spec.to_dict(),
        "method": loaded.method,
        "onnx": {"outputs": list(keys), "opset": opset, "parity_max_abs_diff": report.parity, "parity_inputs": where},
    }
    if export_model is not model:
        info["onnx"]["padded_channels"] = {"multiple": pad_channels, "from": getattr(model, "p", None),
                                           "to": getattr(export_model, "p", None)}
    if bins is not None:
        info["onnx"]["distribution_bin_ages"] = bins
    if unchecked:
        info["onnx"]["unchecked"] = {"age": "median decoder: reported, not checked (the distribution and its "
                                            "expectation are)"}
    if src_path is not None:
        info["onnx"]["source_checkpoint"] = str(src_path)
    sidecar_path(out).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")

    if int8:
        q = out.with_name(out.stem + ".int8.onnx")
        mode, notes = quantize_int8(out, q, x)
        report.int8_path, report.int8_mode = str(q), mode
        report.notes += notes
        a, b = _OrtCheck(out)(x), _OrtCheck(q)(x)
        for k in a:
            d = np.abs(a[k].astype(np.float64) - b[k])
            report.int8_drift[f"{k} mean|diff|"] = float(d.mean())
            report.int8_drift[f"{k} max|diff|"] = float(d.max())
        qinfo = dict(info)
        qinfo["onnx"] = {**info["onnx"], "int8": {"mode": mode, "drift_vs_fp32": report.int8_drift, "fp32": final.name}}
        sidecar_path(q).write_text(json.dumps(qinfo, indent=1, sort_keys=True) + "\n")
        q_final = final.with_name(final.stem + ".int8.onnx")
        os.replace(sidecar_path(q), sidecar_path(q_final))
        os.replace(q, q_final)
        report.int8_path = str(q_final)
    os.replace(sidecar_path(out), sidecar_path(final))
    os.replace(out, final)
    return report


def _bin_ages(model: torch.nn.Module, x: np.ndarray) -> list[float] | None:
    with torch.inference_mode():
        out = model(torch.from_numpy(x))
    return None if out.bin_ages is None else [float(v) for v in out.bin_ages.reshape(-1)]


def read_sidecar(onnx_path: str | Path) -> dict[str, Any]:
    """The card of an exported ``.onnx`` (``<stem>.json``; ``x.int8.onnx`` falls back to ``x.json``)."""
    p = Path(onnx_path)
    for cand in (sidecar_path(p), p.with_name(p.name.replace(".int8.onnx", ".json"))):
        if cand.is_file():
            info = json.loads(cand.read_text())
            if "preprocess" in info and "model" in info:
                return info
    raise FileNotFoundError(f"{p}: no model card {sidecar_path(p).name} next to it (export with `agekit export`)")


def report_dict(r: ExportReport) -> dict[str, Any]:
    """The report as a JSON-able dict."""
    return asdict(r)


__all__: Sequence[str] = ("ExportReport", "export_onnx", "quantize_int8", "check_parity", "read_sidecar", "sample_crops")
