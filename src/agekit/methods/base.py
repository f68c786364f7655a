"""The :class:`Method` base class: head outputs -> loss, and head outputs -> age.

A method is the part of a paper that is not the network: the target encoding, the loss
and the decoder (Paplham and Franc's split of "head, loss, decoder"). Networks return an
:class:`agekit.outputs.ModelOutput`; a method reads only its documented fields.

Labels follow the agekit conventions: unknown age is NaN, unknown gender / age group is -1.
Samples with an unknown label do not contribute to the loss term of that label.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agekit.outputs import ModelOutput

_METHODS: dict[str, type[Method]] = {}
# (fnmatch glob on a model's registry name, method): the method a model trains with unless a recipe says otherwise
_DEFAULT_FOR: list[tuple[str, str]] = []
FALLBACK_METHOD = "l1"


def register_method(name: str, *, models: tuple[str, ...] = ()) -> Callable[[type[Method]], type[Method]]:
    """Class decorator adding a :class:`Method` subclass under ``name``.

    ``models``: globs on registry names of the models this method is the default for (see
    :func:`default_method_for`); the method's own class states the labels it trains on (``required_labels``).
    """

    def deco(cls: type[Method]) -> type[Method]:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is already registered")
        cls.name = name
        _METHODS[name] = cls
        _DEFAULT_FOR.extend((pattern, name) for pattern in models)
        return cls

    return deco


def _specificity(pattern: str) -> tuple[bool, int]:
    """Exact names first, then the glob with the most literal characters (``ssrnet*gender*`` before ``ssrnet*``)."""
    return (not any(c in pattern for c in "*?["), len(pattern.replace("*", "").replace("?", "")))


def default_method_for(model_name: str) -> str:
    """The method a model trains with unless told otherwise: the registered method whose ``models`` glob matches its
    name most specifically (other age regressors: ``l1``)."""
    hits = [(pattern, method) for pattern, method in _DEFAULT_FOR if fnmatch.fnmatchcase(model_name, pattern)]
    if not hits:
        return FALLBACK_METHOD
    best = max(_specificity(p) for p, _ in hits)
    methods = {m for p, m in hits if _specificity(p) == best}
    if len(methods) > 1:
        raise ValueError(f"model {model_name!r}: methods {sorted(methods)} both claim it; make one glob more specific")
    return methods.pop()


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` is true; a graph-connected zero when none is."""
    mask = mask.to(values.device)
    if bool(mask.any()):
        return values[mask].mean()
    return values.sum() * 0.0


def age_mask(age: Tensor) -> Tensor:
    """Samples whose age is known (agekit: unknown age is NaN)."""
    return torch.isfinite(age)


def masked_l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error over samples with a known target (SSR-Net Eq. 1, C3AE Eq. 5)."""
    pred = pred.reshape(-1)
    target = target.reshape(-1).to(pred.dtype).to(pred.device)
    mask = age_mask(target)
    return masked_mean((pred - torch.where(mask, target, torch.zeros_like(target))).abs(), mask)


def masked_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy over samples whose class is known (label -1 is ignored)."""
    target = target.reshape(-1).long().to(logits.device)
    mask = target >= 0
    if not bool(mask.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[mask], target[mask])


def soft_cross_entropy(target: Tensor, logits: Tensor, tau: float = 1.0) -> Tensor:
    """Per-sample -sum_i target_i log softmax(logits/tau)_i (LRN Eq. 4, 7, 8; Hinton et al. 2015, Eq. 2)."""
    return -(target * F.log_softmax(logits / tau, dim=1)).sum(1)


def nearest_bin(age: Tensor, bin_ages: Tensor) -> Tensor:
    """Index of the bin whose age is nearest to ``age`` (clamped to the range of the bins)."""
    age = torch.nan_to_num(age.reshape(-1, 1).to(bin_ages.dtype), nan=float(bin_ages[0]))
    return (age - bin_ages.reshape(1, -1)).abs().argmin(dim=1)


def distribution_mean_std(probs: Tensor, bin_ages: Tensor) -> tuple[Tensor, Tensor]:
    """Expectation (DEX Eq. / SSR-Net Eq. 2) and standard deviation in years of a distribution."""
    bin_ages = bin_ages.to(probs.dtype).to(probs.device).reshape(1, -1)
    mean = (probs * bin_ages).sum(1)
    var = (probs * (bin_ages - mean.unsqueeze(1)) ** 2).sum(1)
    return mean, var.clamp_min(0).sqrt()


def distribution_median(probs: Tensor, bin_ages: Tensor) -> Tensor:
    """Median in years of a binned distribution, each bin's mass spread evenly over its width (continuous, not a bin).

    The L1-optimal point estimate of a predictive distribution (the expectation is the L2-optimal one). Bin ``i``
    covers ``bin_ages[i] -+ w_i / 2`` with ``w_i`` the distance to its neighbours; only cumsum, comparisons and
    gathers, so it exports to ONNX.
    """
    probs = probs.float()
    b = bin_ages.to(probs.dtype).to(probs.device).reshape(-1)
    k = b.numel()
    if k == 1:
        return b.expand(probs.shape[0]).clone()
    gaps = b[1:] - b[:-1]
    w = torch.cat([gaps[:1], (gaps[1:] + gaps[:-1]) / 2, gaps[-1:]])  # width of each bin
    c = probs.cumsum(1)
    half = 0.5 * c[:, -1:]  # the total mass (1 up to rounding)
    i = (c < half).sum(1, keepdim=True).clamp(max=k - 1)
    p_i = probs.gather(1, i)
    below = c.gather(1, i) - p_i  # mass of the bins before bin i
    frac = ((half - below) / p_i.clamp_min(1e-12)).clamp(0.0, 1.0)
    return (b[i] - w[i] / 2 + frac * w[i]).reshape(-1)


def gaussian_label_distribution(age: Tensor, bin_ages: Tensor, sigma: Tensor | float) -> Tensor:
    """Normalised Gaussian over the bins centred on the age (a label-distribution alternative to one-hot)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=bin_ages.device).reshape(-1, 1).clamp_min(1e-3)
    d = bin_ages.reshape(1, -1).float() - torch.nan_to_num(age.float(), nan=0.0).reshape(-1, 1)
    g = torch.exp(-0.5 * (d / sigma) ** 2)
    return g / g.sum(1, keepdim=True).clamp_min(1e-12)


def project_distribution(probs: Tensor, src_bins: Tensor, dst_bins: Tensor) -> Tensor:
    """An age distribution moved onto other bins by linear interpolation (C3AE's two-point rule, Eq. 2-3).

    Each source bin's mass goes to the two destination bins around its age, split by distance
    (age 68 onto bins 0, 10, ..., 110 gives 0.2 on 60 and 0.8 on 70); ages outside the
    destination bins go to the end bin. ``dst_bins`` must be ascending. The expectation is
    kept for ages inside the destination range.
    """
    src = src_bins.to(probs.device, torch.float32).reshape(-1)
    dst = dst_bins.to(probs.device, torch.float32).reshape(-1)
    if dst.numel() == 1:
        return probs.sum(1, keepdim=True)
    a = src.clamp(float(dst[0]), float(dst[-1]))
    hi = torch.searchsorted(dst, a, right=True).clamp(1, dst.numel() - 1)
    lo = hi - 1
    w_hi = (a - dst[lo]) / (dst[hi] - dst[lo]).clamp_min(1e-12)
    m = torch.zeros(src.numel(), dst.numel(), device=probs.device)
    rows = torch.arange(src.numel(), device=probs.device)
    m.index_put_((rows, lo), 1.0 - w_hi, accumulate=True)
    m.index_put_((rows, hi), w_hi, accumulate=True)
    return probs.float() @ m


def uniform_bins(n: int, start: float = 0.0, step: float = 1.0, device: torch.device | str | None = None) -> Tensor:
    """Bin ages ``start, start + step, ...`` (n of them)."""
    return start + step * torch.arange(n, dtype=torch.float32, device=device)


class Method:
    """A paper's training method: ``loss(out, batch)`` and ``predict(out)``.

    Subclasses set ``name`` (via :func:`register_method`) and override :meth:`age_loss`
    and, where the age is not simply ``out.age``, :meth:`predict_age`. The base class
    adds a gender cross-entropy whenever the network has ``gender_logits`` (multi-task
    heads; weight ``gender_weight``) and decodes gender and age groups for every method. With a
    teacher that gives gender (``gender_logits``) and ``gender_distill`` > 0 it adds the
    cross-entropy to the teacher's gender probabilities (Hinton et al. 2015, Eq. 2 at T = 1) on every
    sample, labelled or not. With a teacher that gives ``features`` and ``feature_distill`` > 0 it
    adds 1 - cos(hint, teacher features) (a FitNets-style hint, Romero et al. 2015, on the pooled
    features): ``out.extras["hint"]`` is the student's features through a linear map that only
    training holds (:class:`agekit.training.module.AgeModule`).
    """

    name: str = "method"
    needs_teacher: bool = False
    # labels a training sample must have (rows without them are left out of training): "age", "gender", "age_group"
    required_labels: tuple[str, ...] = ("age",)
    defaults: dict[str, Any] = {"gender_weight": 1.0, "gender_distill": 0.0, "feature_distill": 0.0}

    def __init__(self, **config: Any) -> None:
        merged = {**Method.defaults, **type(self).defaults}
        unknown = set(config) - set(merged)
        if unknown:
            raise TypeError(f"method {self.name!r} has no options {sorted(unknown)}; it takes {sorted(merged)}")
        merged.update(config)
        self.config: dict[str, Any] = merged
        for k, v in merged.items():
            setattr(self, k, v)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({opts})"

    # ------------------------------------------------------------------ loss
    def loss(
        self,
        out: ModelOutput,
        batch: dict[str, Tensor],
        model: nn.Module | None = None,
        teacher: ModelOutput | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar training loss and its named parts (for logging)."""
        if self.needs_teacher and teacher is None:
            raise ValueError(f"method {self.name!r} needs the teacher's ModelOutput (teacher=...)")
        parts = self.age_loss(out, batch, model=model, teacher=teacher)
        if out.gender_logits is not None and "gender" in batch and self.gender_weight:
            parts["gender_ce"] = self.gender_weight * masked_cross_entropy(out.gender_logits, batch["gender"])
        if self.gender_distill and out.gender_logits is not None and teacher is not None \
                and teacher.gender_logits is not None:
            soft = teacher.gender_logits.float().softmax(1)
            parts["gender_kd"] = self.gender_distill * soft_cross_entropy(soft, out.gender_logits.float()).mean()
        if self.feature_distill and "hint" in out.extras and teacher is not None and teacher.features is not None:
            cos = nn.functional.cosine_similarity(out.extras["hint"].float(), teacher.features.float(), dim=1)
            parts["feature_kd"] = self.feature_distill * (1.0 - cos).mean()
        if not parts:
            raise ValueError(f"method {self.name!r}: the network output has none of the fields this method trains")
        total = sum(parts.values())
        return total, {k: v.detach() for k, v in parts.items()}

    def age_loss(self, out: ModelOutput, batch: dict[str, Tensor], model: nn.Module | None = None,
                 teacher: ModelOutput | None = None) -> dict[str, Tensor]:
        """Named loss terms of the method (overridden by each paper's method)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- decode
    def predict_age(self, out: ModelOutput) -> tuple[Tensor | None, Tensor | None]:
        """Age in years and its uncertainty (std in years, or None) from the network output."""
        unc = None
        if out.probs is not None and out.bin_ages is not None:
            mean, unc = distribution_mean_std(out.probs, out.bin_ages)
            if out.age is None:
                return mean, unc
        return out.age, unc

    def predict(self, out: ModelOutput) -> dict[str, Tensor]:
        """Decoded predictions: ``age``, ``uncertainty``, ``gender_female``, ``age_group(_probs)``."""
        res: dict[str, Tensor] = {}
        with torch.no_grad():
            age, unc = self.predict_age(out)
            if age is not None:
                res["age"] = age.reshape(-1).float()
            if unc is not None:
                res["uncertainty"] = unc.reshape(-1).float()
            if out.gender_logits is not None:
                res["gender_female"] = out.gender_logits.float().softmax(1)[:, 1]
            elif out.gender_prob is not None:
                res["gender_female"] = (1.0 - out.gender_prob.float().reshape(-1)).clamp(0.0, 1.0)
            if out.age_group_logits is not None:
                probs = out.age_group_logits.float().softmax(1)
                res["age_group_probs"] = probs
                res["age_group"] = probs.argmax(1)
        return res


def get_registered(name: str) -> type[Method]:
    """The :class:`Method` class registered as ``name``; raises ``KeyError`` listing the names."""
    try:
        return _METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {sorted(_METHODS)}") from None
