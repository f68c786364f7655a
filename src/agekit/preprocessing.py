"""Preprocessing described as data: it travels with a model and its weights.

A :class:`PreprocessSpec` says how the face pipeline crops a face (size, margin, crop set)
and how the uint8 crop becomes the network's input tensor (colour order, scale, mean/std,
per-image standardisation). It is stored in checkpoints and model cards, so that training
and inference cannot drift apart.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is needed only when a caller hands in or asks for tensors
    import torch

CROP_KINDS = ("single", "c3ae_triple", "kres", "lmtcnn")


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

    def __post_init__(self) -> None:
        if self.crops not in CROP_KINDS:
            raise ValueError(f"crops must be one of {CROP_KINDS}, got {self.crops!r}")
        if self.color not in ("RGB", "BGR"):
            raise ValueError(f"color must be RGB or BGR, got {self.color!r}")

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

        Leading dimensions are kept, so (B, k, H, W, 3) becomes (B, k, 3, H, W). The same float32 operations in
        the same order as the tensor path of :meth:`normalize` (bit for bit; per-image standardisation to
        within float32 rounding of the mean and deviation).
        """
        x = np.asarray(crops)
        if x.ndim < 3 or x.shape[-1] != 3:
            raise ValueError(f"expected channels-last crops (..., H, W, 3), got {tuple(x.shape)}")
        x = x.astype(np.float32)
        if input_color != self.color:
            x = x[..., ::-1]
        x = np.moveaxis(x, -1, -3)
        if self.per_image_standardize:
            axes = (-3, -2, -1)
            n = x.shape[-3] * x.shape[-2] * x.shape[-1]
            mu = x.mean(axis=axes, keepdims=True, dtype=np.float64).astype(np.float32)
            sd = x.std(axis=axes, keepdims=True, dtype=np.float64).astype(np.float32)
            out = (x - mu) / np.maximum(sd, np.float32(1.0 / float(n) ** 0.5))
        else:
            x = x * np.float32(self.scale)
            mean = np.asarray(self.mean, dtype=np.float32).reshape(3, 1, 1)
            std = np.asarray(self.std, dtype=np.float32).reshape(3, 1, 1)
            out = (x - mean) / std
        return np.ascontiguousarray(out, dtype=np.float32)

    def normalize(self, crops: np.ndarray | torch.Tensor, input_color: str = "RGB") -> torch.Tensor:
        """uint8 crops (..., H, W, 3) in ``input_color`` order -> float tensor (..., 3, H, W) (imports torch).

        Leading dimensions are kept, so (B, k, H, W, 3) becomes (B, k, 3, H, W). numpy crops go through
        :meth:`normalize_numpy`; tensors (for example on a GPU) stay on their device.
        """
        import torch

        if not isinstance(crops, torch.Tensor):
            return torch.from_numpy(self.normalize_numpy(crops, input_color))
        x = crops
        if x.shape[-1] != 3:
            raise ValueError(f"expected channels-last crops (..., H, W, 3), got {tuple(x.shape)}")
        x = x.to(torch.float32)
        if input_color != self.color:
            x = x.flip(-1)
        x = x.movedim(-1, -3)
        if self.per_image_standardize:
            dims = (-3, -2, -1)
            n = x.shape[-3] * x.shape[-2] * x.shape[-1]
            mu = x.mean(dim=dims, keepdim=True)
            sd = x.std(dim=dims, keepdim=True, unbiased=False)
            return (x - mu) / torch.clamp(sd, min=1.0 / float(n) ** 0.5)
        x = x * self.scale
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(3, 1, 1)
        return (x - mean) / std


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
