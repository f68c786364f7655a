"""Complexity accounting for any model and input size.

What is counted, exactly:

- ``params``: trainable parameters (PyTorch's ``parameters()`` with ``requires_grad``).
- ``params_with_bn_stats``: ``params`` plus BatchNorm running mean and variance (the Keras
  convention: Keras lists BN moving statistics as non-trainable parameters, and several
  papers print that total). ``num_batches_tracked`` is not counted.
- ``fp32_bytes``: 4 bytes per parameter and per floating-point buffer (what a float32
  state dict holds, without container overhead).
- ``macs``: multiply-accumulates of ``nn.Conv*`` and ``nn.Linear`` layers for one input
  sample (batch 1): ``Cout * Hout * Wout * (Cin / groups) * kh * kw`` for a convolution and
  ``in * out`` for a linear layer. Bias additions, BatchNorm, activations, pooling,
  softmax and the small bin/expectation products are not counted; layers that run several
  times (shared backbones on k crops) are counted each time they run.
- ``macs_ptflops``: the convention behind the HSR paper's MACC columns (ptflops' rules):
  ``macs`` plus one operation per bias addition (each output element of a conv or linear
  layer with a bias), two per BatchNorm element, one per ReLU output element and one per
  average-pooling input element. It reproduces every MACC of HSR Tables 5, 6 and 10 within
  0.2 % (54 of the 60 rows within 0.1 %; the largest gap, SepHSR(30,15): 12.82M against the printed 12.8M).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from agekit.models.registry import create_model, model_entry

if TYPE_CHECKING:  # torch is imported where it is used, so that ``import agekit`` stays light
    import torch
    import torch.nn as nn


@dataclass(frozen=True)
class Complexity:
    """The figures of one model at one input size."""

    params: int
    params_with_bn_stats: int
    fp32_bytes: int
    macs: int
    macs_ptflops: int
    input_size: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_bn_running_stats(model: nn.Module) -> int:
    """Number of BatchNorm running-mean and running-variance entries."""
    import torch.nn as nn

    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            if m.running_mean is not None:
                n += m.running_mean.numel() + m.running_var.numel()
    return n


def fp32_bytes(model: nn.Module) -> int:
    """Bytes of a float32 copy of all parameters and floating-point buffers."""
    n = sum(p.numel() for p in model.parameters())
    n += sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return 4 * n


def _conv_macs(m: nn.modules.conv._ConvNd, out: torch.Tensor) -> int:
    k = 1
    for s in m.kernel_size:
        k *= s
    spatial = out[0, 0].numel() * out.shape[0]  # a shared backbone may fold k crops into the batch
    return int(m.out_channels * spatial * (m.in_channels // m.groups) * k)


MAC_CONVENTIONS = ("conv_linear", "ptflops")


def _mac_counts(model: nn.Module, input_size: tuple[int, ...], example: Any | None = None) -> dict[str, int]:
    """Both MAC conventions from one forward pass of one sample (no batch dim)."""
    import torch
    import torch.nn as nn

    counts = dict.fromkeys(MAC_CONVENTIONS, 0)

    def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        macs, extra = 0, 0
        if isinstance(mod, nn.modules.conv._ConvNd):
            macs = _conv_macs(mod, out)
        elif isinstance(mod, nn.Linear):
            macs = int(mod.in_features * mod.out_features * (out.numel() // out.shape[-1]))
        if isinstance(mod, (nn.modules.conv._ConvNd, nn.Linear)):
            extra = out.numel() if mod.bias is not None else 0
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            extra = 2 * inp[0].numel()
        elif isinstance(mod, nn.ReLU):
            extra = out.numel()
        elif isinstance(mod, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            extra = inp[0].numel()
        counts["conv_linear"] += macs
        counts["ptflops"] += macs + extra

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    was_training = model.training
    model.eval()
    try:
        if example is None:
            first = next(iter(model.parameters()), None)
            example = torch.zeros((1, *input_size), device=first.device if first is not None else "cpu")
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return counts


def count_macs(
    model: nn.Module, input_size: tuple[int, ...], example: Any | None = None, convention: str = "conv_linear"
) -> int:
    """MACs for one sample of shape ``input_size`` (no batch dim); see the module doc for conventions."""
    if convention not in MAC_CONVENTIONS:
        raise ValueError(f"convention must be one of {MAC_CONVENTIONS}, got {convention!r}")
    return _mac_counts(model, input_size, example)[convention]


def complexity(model: nn.Module, input_size: tuple[int, ...]) -> Complexity:
    """All figures of ``model`` for one sample of ``input_size`` (C, H, W) or (k, C, H, W)."""
    p = count_params(model)
    macs = _mac_counts(model, input_size)
    return Complexity(
        params=p,
        params_with_bn_stats=p + count_bn_running_stats(model),
        fp32_bytes=fp32_bytes(model),
        macs=macs["conv_linear"],
        macs_ptflops=macs["ptflops"],
        input_size=tuple(input_size),
    )


def model_complexity(name: str, **config: Any) -> Complexity:
    """Figures of a registered model at its default input size."""
    model = create_model(name, **config)
    size = getattr(model, "input_size", None) or model_entry(name).input_size
    return complexity(model, tuple(size))
