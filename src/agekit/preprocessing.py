"""Preprocessing described as data: it travels with a model and its weights.

A :class:`PreprocessSpec` says how the face pipeline crops a face (size, margin, crop set)
and how the uint8 crop becomes the network's input tensor (colour order, scale, mean/std,
per-image standardisation). It is stored in checkpoints and model cards, so that training
and inference cannot drift apart.

The operations are written once for numpy arrays and torch tensors (on any device), and used by training,
evaluation, export and prediction: :func:`channels_first` (uint8 channels-last -> float channels-first),
:func:`normalize` (the spec's normalisation of float crops on the 0..255 scale), :func:`center_crop`,
:func:`ten_views` (LMTCNN's test-time views) and :func:`network_input` (all of it, with an optional
augmentation). This module imports torch only when it is handed a tensor.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:  # torch is needed only when a caller hands in or asks for tensors
    import torch

Array = TypeVar("Array")  # a numpy array or a torch tensor: each function returns the kind it is given

CROP_KINDS = ("single", "c3ae_triple", "kres", "lmtcnn")
BORDERS = ("constant", "replicate")


@dataclass(frozen=True)
class PreprocessSpec:
    """Crop geometry and input normalisation of one model.

    - ``size``: side of each square crop fed to the network.
    - ``margin``: extra border around the face box, as a fraction of its width/height on
      each side (0.4 in the SSR-Net and HSR code).
    - ``crops``: ``single``; ``c3ae_triple`` (C3AE's three context boxes); ``kres`` (HSR's
      k-resolution crops at ``ratios`` centred on the face); ``lmtcnn`` (resize to
      ``resize`` then ``size`` crops: random in training, ten-view at test).
    - ``color``: channel order of the network input, ``RGB`` or ``BGR``.
    - ``scale``, ``mean``, ``std``: ``x = (uint8 * scale - mean) / std`` per channel.
    - ``per_image_standardize``: TensorFlow's per-image standardisation (LMTCNN).
    - ``align``: similarity-align on landmarks before cropping.
    - ``border``: what fills a crop where it reaches past the photo: ``constant`` (black, as C3AE's 200 px
      padding and most released code) or ``replicate`` (the photo's edge pixels repeated, as IMDB-WIKI's own
      crops were cut); view keys of replicated crops end in ``_edge``.
    """

    size: int = 64
    margin: float = 0.4
    crops: str = "single"
    ratios: tuple[float, ...] = (1.0,)
    resize: int | None = None
    color: str = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    per_image_standardize: bool = False
    align: bool = True
    extras: dict[str, Any] = field(default_factory=dict)
    border: str = "constant"

    def __post_init__(self) -> None:
        if self.crops not in CROP_KINDS:
            raise ValueError(f"crops must be one of {CROP_KINDS}, got {self.crops!r}")
        if self.color not in ("RGB", "BGR"):
            raise ValueError(f"color must be RGB or BGR, got {self.color!r}")
        if self.border not in BORDERS:
            raise ValueError(f"border must be one of {BORDERS}, got {self.border!r}")

    @property
    def num_crops(self) -> int:
        """How many crops of ``size`` the network takes per face."""
        if self.crops == "c3ae_triple":
            return 3
        if self.crops == "kres":
            return len(self.ratios)
        return 1

    @property
    def view_key(self) -> str:
        """Name of the prepared-cache view holding this spec's uint8 crops (before normalisation).

        Two specs with the same crop geometry share a view, whatever their normalisation.
        LMTCNN's view stores the ``resize`` square (256) from which 227 crops are cut.
        """
        key = f"{self.crops}_{self.size}_m{self.margin:g}"
        if self.crops == "kres":
            key += "_r" + "-".join(f"{r:g}" for r in self.ratios)
        if self.resize:
            key += f"_z{self.resize}"
        mode = self.extras.get("align_mode", "similarity")
        if self.align and mode != "similarity":
            key += f"_{mode}"
        if not self.align:
            key += "_noalign"
        if self.border != "constant":
            key += "_edge"
        return key

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratios"] = list(self.ratios)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        d = dict(d)
        for k in ("ratios", "mean", "std"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    def normalize_numpy(self, crops: np.ndarray, input_color: str = "RGB") -> np.ndarray:
        """uint8 crops (..., H, W, 3) in ``input_color`` order -> float32 array (..., 3, H, W), in numpy (no torch).

        Leading dimensions are kept, so (B, k, H, W, 3) becomes (B, k, 3, H, W): :func:`normalize` of
        :func:`channels_first`, the same float32 operations as the tensor path of :meth:`normalize` (bit for bit;
        per-image standardisation to within float32 rounding of the mean and deviation).
        """
        return np.ascontiguousarray(normalize(channels_first(np.asarray(crops)), self, input_color), np.float32)

    def normalize(self, crops: np.ndarray | torch.Tensor, input_color: str = "RGB") -> torch.Tensor:
        """uint8 crops (..., H, W, 3) in ``input_color`` order -> float tensor (..., 3, H, W) (imports torch).

        Leading dimensions are kept, so (B, k, H, W, 3) becomes (B, k, 3, H, W). numpy crops go through
        :meth:`normalize_numpy`; tensors (for example on a GPU) stay on their device.
        """
        import torch

        if not isinstance(crops, torch.Tensor):
            return torch.from_numpy(self.normalize_numpy(crops, input_color))
        return normalize(channels_first(crops), self, input_color)


# The families' specs, from ../shared/reference/authors-code-facts.md.
SSRNET = PreprocessSpec(size=64, margin=0.4, color="BGR", scale=1.0)
C3AE = PreprocessSpec(size=64, margin=0.4, color="BGR", scale=1.0 / 255.0)
C3AE_CONTEXT = PreprocessSpec(size=64, margin=0.4, crops="c3ae_triple", color="BGR", scale=1.0 / 255.0)
HSR = PreprocessSpec(size=64, margin=0.4, color="RGB", scale=1.0 / 255.0)
# agekit's compact models: the aligned face with margin 0.1 (crop side 1.2 x the detector box). On
# UTKFace's 200x200 face images a 0.4 margin reaches past the photo: only ~41 % of a 64x64 crop
# is face (a ~40 px face in black padding); at 0.1 the face fills the crop.
AGEKIT = PreprocessSpec(size=64, margin=0.1, color="RGB", scale=1.0 / 255.0)
IMAGENET = PreprocessSpec(
    size=224, margin=0.4, color="RGB", scale=1.0 / 255.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)
LMTCNN = PreprocessSpec(size=227, resize=256, margin=0.4, crops="lmtcnn", color="RGB", per_image_standardize=True)


def hsr_kres(k: int) -> PreprocessSpec:
    """HSR's k-resolution spec: crops at ratios 1.0, 1.45, 1.85 (first k) centred on the face."""
    ratios = (1.0, 1.45, 1.85)
    if not 1 <= k <= 3:
        raise ValueError(f"k-resolution setting supports k in 1..3, got {k}")
    return PreprocessSpec(size=64, margin=0.4, crops="kres", ratios=ratios[:k], color="RGB", scale=1.0 / 255.0)


# ------------------------------------------------------------------------------------------------ the operations
# Written once over a small backend shim: numpy arrays stay numpy (no torch import), tensors stay on their device.
class _NumpyOps:
    """numpy: per-image statistics accumulated in float64, constants in the array's dtype."""

    @staticmethod
    def float32(x: Any) -> Any:
        return x.astype(np.float32)

    @staticmethod
    def moveaxis(x: Any, src: int, dst: int) -> Any:
        return np.moveaxis(x, src, dst)

    @staticmethod
    def flip(x: Any, axis: int) -> Any:
        return np.flip(x, axis)

    @staticmethod
    def stack(xs: list[Any], axis: int) -> Any:
        return np.stack(xs, axis=axis)

    @staticmethod
    def mean_std(x: Any, axes: tuple[int, ...]) -> tuple[Any, Any]:
        mu = x.mean(axis=axes, keepdims=True, dtype=np.float64).astype(x.dtype)
        sd = x.std(axis=axes, keepdims=True, dtype=np.float64).astype(x.dtype)
        return mu, sd

    @staticmethod
    def clamp_min(x: Any, low: float) -> Any:
        return np.maximum(x, x.dtype.type(low))

    @staticmethod
    def scalar(value: float, like: Any) -> Any:
        return like.dtype.type(value)

    @staticmethod
    def channels(values: tuple[float, ...], like: Any) -> Any:
        return np.asarray(values, dtype=like.dtype).reshape(-1, 1, 1)

    @staticmethod
    def contiguous(x: Any, channels_last: bool = False) -> Any:
        return np.ascontiguousarray(x)  # a memory format is torch's notion


class _TorchOps:
    """torch: native reductions in the tensor's dtype, constants on its device."""

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def float32(self, x: Any) -> Any:
        return x.to(self.torch.float32)

    @staticmethod
    def moveaxis(x: Any, src: int, dst: int) -> Any:
        return x.movedim(src, dst)

    @staticmethod
    def flip(x: Any, axis: int) -> Any:
        return x.flip(axis)

    def stack(self, xs: list[Any], axis: int) -> Any:
        return self.torch.stack(xs, dim=axis)

    @staticmethod
    def mean_std(x: Any, axes: tuple[int, ...]) -> tuple[Any, Any]:
        return x.mean(dim=axes, keepdim=True), x.std(dim=axes, keepdim=True, unbiased=False)

    def clamp_min(self, x: Any, low: float) -> Any:
        return self.torch.clamp(x, min=low)

    @staticmethod
    def scalar(value: float, like: Any) -> Any:
        return float(value)  # a Python number: torch applies it in the tensor's dtype

    def channels(self, values: tuple[float, ...], like: Any) -> Any:
        return self.torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1)

    def contiguous(self, x: Any, channels_last: bool = False) -> Any:
        fmt = self.torch.channels_last if channels_last and x.dim() == 4 else self.torch.contiguous_format
        return x.contiguous(memory_format=fmt)


_NUMPY = _NumpyOps()
_TORCH: list[_TorchOps] = []  # built on first use (importing torch only then)


def _ops(x: Any) -> _NumpyOps | _TorchOps:
    if isinstance(x, np.ndarray):
        return _NUMPY
    if not _TORCH:
        _TORCH.append(_TorchOps())
    if not isinstance(x, _TORCH[0].torch.Tensor):
        raise TypeError(f"expected a numpy array or a torch tensor, got {type(x).__name__}")
    return _TORCH[0]


def channels_first(crops: Array) -> Array:
    """uint8 crops (..., H, W, 3) -> float32 (..., 3, H, W) on the 0..255 scale (a view of the cast, not a copy)."""
    if crops.ndim < 3 or crops.shape[-1] != 3:
        raise ValueError(f"expected channels-last crops (..., H, W, 3), got {tuple(crops.shape)}")
    ops = _ops(crops)
    return ops.moveaxis(ops.float32(crops), -1, -3)


def normalize(x: Array, spec: PreprocessSpec, input_color: str = "RGB") -> Array:
    """Float crops (..., 3, H, W) on the 0..255 scale in ``input_color`` order -> the network's input for ``spec``.

    ``(x * scale - mean) / std`` per channel in ``spec.color`` order, or TensorFlow's per-image standardisation
    ``(x - mean) / max(std, 1 / sqrt(N))`` over each image's N = 3HW values (LMTCNN). numpy accumulates the
    per-image mean and deviation in float64, torch in the tensor's dtype; the result keeps ``x``'s dtype (and device).
    """
    ops = _ops(x)
    if input_color != spec.color:
        x = ops.flip(x, -3)
    if spec.per_image_standardize:
        n = x.shape[-3] * x.shape[-2] * x.shape[-1]
        mu, sd = ops.mean_std(x, (-3, -2, -1))
        return (x - mu) / ops.clamp_min(sd, 1.0 / float(n) ** 0.5)
    x = x * ops.scalar(spec.scale, x)
    if spec.mean == (0.0, 0.0, 0.0) and spec.std == (1.0, 1.0, 1.0):
        return x
    return (x - ops.channels(spec.mean, x)) / ops.channels(spec.std, x)


def center_crop(x: Array, size: int, channels_last: bool = False) -> Array:
    """The central ``size`` x ``size`` window of (..., H, W) images, or of (..., H, W, C) with ``channels_last``
    (a view; LMTCNN's test crop of the 256 square: offset (256 - 227) // 2 = 14)."""
    h, w = x.shape[-3:-1] if channels_last else x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from {h}x{w}")
    return _window(x, (h - size) // 2, (w - size) // 2, size, channels_last)


def ten_views(x: Array, size: int, channels_last: bool = False) -> Array:
    """Levi and Hassner's test-time oversampling (LMTCNN too): the four corner crops of ``size`` and the centre crop,
    then the five mirrored left-right, stacked before the image axes: (..., 3, R, R) -> (..., 10, 3, S, S), or
    (..., R, R, 3) -> (..., 10, S, S, 3) with ``channels_last``. Order: top-left, top-right, bottom-left,
    bottom-right, centre."""
    h, w = x.shape[-3:-1] if channels_last else x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot cut {size}x{size} views from {h}x{w}")
    ops = _ops(x)
    hl, wl = h - size, w - size
    views = [_window(x, t, left, size, channels_last) for t, left in ((0, 0), (0, wl), (hl, 0), (hl, wl),
                                                                       (hl // 2, wl // 2))]
    views += [ops.flip(v, -2 if channels_last else -1) for v in views]
    return ops.stack(views, -4)


def network_input(crops: Array, spec: PreprocessSpec, augment: Callable[[Any], Any] | None = None,
                  input_color: str = "RGB", *, channels_last_memory: bool = False) -> Array:
    """uint8 crops (..., H, W, 3) -> the network's contiguous float32 input (..., 3, S, S), numpy or torch alike.

    ``augment`` (training) takes and returns float (B, [k,] 3, H, W) on the 0..255 scale. Crops larger than
    ``spec.size`` (LMTCNN's 256 square) are cut to it: by the augmentation's random crop, else at the centre.
    ``channels_last_memory``: a 4-D tensor comes back in torch's channels_last memory format (same values).
    """
    x = channels_first(crops)
    if augment is not None:
        x = augment(x)
    if x.shape[-2] != spec.size or x.shape[-1] != spec.size:
        x = center_crop(x, spec.size)
    return _ops(x).contiguous(normalize(x, spec, input_color), channels_last_memory)


def _window(x: Array, top: int, left: int, size: int, channels_last: bool) -> Array:
    if channels_last:
        return x[..., top : top + size, left : left + size, :]
    return x[..., top : top + size, left : left + size]
