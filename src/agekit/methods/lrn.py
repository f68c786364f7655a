"""LRN, the label refinery network (Pattern Recognition 2020), and knowledge distillation.

Each generation t has two heads: a k-way distribution over the ages l_1..l_k (``out.logits``,
softened by the temperature tau, Eq. 3/6) and a regression of the normalised age
y = (l - l_1)/(l_k - l_1) (``out.regression``, Eq. 1/10).

- Generation 1 (ancestor), Eq. 16: L = CE(one-hot, p^1) + lambda * |s^1 - y|.
- Generation t > 1, Eq. 7-17: L = alpha * CE(p^{t-1}, p^t) + (1 - alpha) * CE(one-hot, p^t)
  + lambda * max(0, |s^t - y| - |s^{t-1} - y|), with p^{t-1} and s^{t-1} taken from the
  previous generation's output on the same batch (``teacher``).
- Age, Eq. 18-20: the mean of sum_i p_i l_i and (l_k - l_1) s + l_1.

Defaults tau = 2, alpha = 0.5, lambda = 4 (Section 4.3.2).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from agekit.data.cache import PreparedCache
from agekit.methods.base import (
    Method,
    age_mask,
    distribution_mean_std,
    gaussian_label_distribution,
    get_registered,
    masked_mean,
    nearest_bin,
    project_distribution,
    register_method,
    soft_cross_entropy,
)
from agekit.methods.hsr import stage_targets_from_distribution
from agekit.outputs import ModelOutput

if TYPE_CHECKING:
    from torch import nn

TRAIN = "train"  # model.config min_age / max_age: the training set's youngest / oldest age (LRN Eq. 1)


def training_age_range(data: Any) -> tuple[int, int]:
    """l_1 and l_k of LRN Eq. 1 from a recipe's data section: the youngest and oldest known age of its training rows.

    ``data`` is a recipe's ``data`` section (one ``cache`` or several ``sources``); ages are rounded
    down / up to whole years (the distribution head has one output per year).
    """
    parts = [(data.cache, data.protocol, data.train_split)] if data.cache else [
        (s.cache, s.protocol, s.train_split or data.train_split) for s in data.sources.values()]
    ages = []
    for cache_dir, protocol, split in parts:
        cache = PreparedCache(cache_dir)
        if protocol is None:
            if len(cache.protocols) != 1:
                raise ValueError(f"{cache_dir}: name a protocol (the cache has {cache.protocols})")
            protocol = cache.protocols[0]
        splits = cache.splits(protocol)
        for name in (x.strip() for x in split.split("+")):
            if name not in splits:
                raise KeyError(f"{cache_dir}: protocol {protocol!r} has no split {name!r}; has {sorted(splits)}")
            a = np.asarray(cache.meta["age"], dtype=np.float64)[splits[name]]
            ages.append(a[np.isfinite(a) & (a >= 0)])
    known = np.concatenate(ages) if ages else np.zeros(0)
    if known.size == 0:
        raise ValueError("min_age/max_age 'train': the training split has no known age")
    lo, hi = int(math.floor(known.min())), int(math.ceil(known.max()))
    return lo, max(hi, lo + 1)


def resolve_age_range(config: dict, data: Any) -> dict:
    """A model config with ``min_age`` / ``max_age`` = "train" replaced by the training set's range (LRN Eq. 1)."""
    if TRAIN not in (config.get("min_age"), config.get("max_age")):
        return config
    lo, hi = training_age_range(data)
    out = dict(config)
    if out.get("min_age") == TRAIN:
        out["min_age"] = lo
    if out.get("max_age") == TRAIN:
        out["max_age"] = hi
    return out


def soft_target(logits: Tensor, tau: float = 2.0) -> Tensor:
    """Temperature-softened distribution p_i = exp(z_i/tau) / sum_j exp(z_j/tau), LRN Eq. 3/6."""
    return (logits.float() / tau).softmax(dim=1)


def slack_l1(s: Tensor, y: Tensor, slack: Tensor) -> Tensor:
    """Per-sample slack L1, LRN Eq. 15: max(0, |s - y| - slack), slack = |s^{t-1} - y| (Eq. 12)."""
    return ((s - y).abs() - slack).clamp_min(0.0)


@register_method("lrn", models=("lrn*",))
class LRN(Method):
    """Label refinery network loss (LRN Eq. 16 for generation 1, Eq. 17 for t > 1) and Eq. 20 decoder.

    Options: ``generation`` t (1 = ancestor), ``tau``, ``alpha``, ``lam`` (lambda_1 = lambda_t),
    ``age_min``/``age_max`` (l_1, l_k; default: the first and last of ``out.bin_ages``),
    ``label`` = "onehot" (paper) or "gaussian" (sigma = the sample's ``age_std`` when known,
    else ``label_sigma``), ``decoder`` = "mean" (Eq. 20), "ldl" (Eq. 18) or "reg" (Eq. 19).
    """

    defaults = {
        "generation": 1,
        "tau": 2.0,
        "alpha": 0.5,
        "lam": 4.0,
        "age_min": None,
        "age_max": None,
        "label": "onehot",
        "label_sigma": 2.0,
        "decoder": "mean",
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        if self.label not in ("onehot", "gaussian"):
            raise ValueError(f"lrn label must be 'onehot' or 'gaussian', got {self.label!r}")
        if self.decoder not in ("mean", "ldl", "reg"):
            raise ValueError(f"lrn decoder must be 'mean', 'ldl' or 'reg', got {self.decoder!r}")
        self.needs_teacher = int(self.generation) > 1

    def _bins(self, out: ModelOutput) -> Tensor:
        if out.bin_ages is not None:
            return out.bin_ages.float().to(out.logits.device)
        lo = 0.0 if self.age_min is None else float(self.age_min)
        return torch.arange(out.logits.shape[1], dtype=torch.float32, device=out.logits.device) + lo

    def _range(self, bins: Tensor) -> tuple[float, float]:
        lo = float(bins[0]) if self.age_min is None else float(self.age_min)
        hi = float(bins[-1]) if self.age_max is None else float(self.age_max)
        if hi <= lo:
            raise ValueError(f"lrn needs age_max > age_min, got {lo}..{hi}")
        return lo, hi

    def hard_target(self, age: Tensor, bins: Tensor, age_std: Tensor | None = None) -> Tensor:
        """o of Eq. 4 (one-hot of the label's age bin), or a Gaussian label distribution."""
        if self.label == "gaussian":
            sigma = torch.full_like(age.float(), float(self.label_sigma))
            if age_std is not None:
                std = age_std.float().to(sigma.device)
                sigma = torch.where(torch.isfinite(std) & (std > 0), std, sigma)
            return gaussian_label_distribution(age, bins, sigma)
        return F.one_hot(nearest_bin(age, bins), bins.numel()).float()

    def age_loss(self, out: ModelOutput, batch: dict[str, Tensor], model: nn.Module | None = None,
                 teacher: ModelOutput | None = None) -> dict[str, Tensor]:
        """``ce`` (Eq. 4 or 9), ``l1`` (Eq. 11) or ``slack_l1`` (Eq. 15), each with its weight."""
        if out.logits is None:
            raise ValueError("lrn needs the distribution logits (out.logits)")
        z = out.logits.float()
        bins = self._bins(out)
        lo, hi = self._range(bins)
        age = batch["age"].float().to(z.device)
        known = age_mask(age)
        age = torch.where(known, age, torch.full_like(age, lo))  # unknown ages are masked out below
        target = self.hard_target(age, bins, batch.get("age_std"))
        ce = soft_cross_entropy(target, z, self.tau)
        parts = {}
        if self.needs_teacher:
            if teacher is None or teacher.logits is None:
                raise ValueError(f"lrn generation {self.generation} needs the previous generation's logits (teacher)")
            p_prev = soft_target(teacher.logits.detach(), self.tau).to(z.device)
            ldl = self.alpha * soft_cross_entropy(p_prev, z, self.tau) + (1.0 - self.alpha) * ce
            parts["ce"] = masked_mean(ldl, known)
        else:
            parts["ce"] = masked_mean(ce, known)
        if out.regression is not None:
            y = (age - lo) / (hi - lo)
            s = out.regression.float().reshape(-1)
            if self.needs_teacher:
                if teacher.regression is None:
                    raise ValueError("lrn generation > 1 needs the previous generation's regression (teacher)")
                slack = (teacher.regression.detach().float().reshape(-1).to(z.device) - y).abs()
                parts["slack_l1"] = self.lam * masked_mean(slack_l1(s, y, slack), known)
            else:
                parts["l1"] = self.lam * masked_mean((s - y).abs(), known)
        return parts

    def predict_age(self, out: ModelOutput) -> tuple[Tensor | None, Tensor | None]:
        """Eq. 20 (mean of Eq. 18 and Eq. 19); uncertainty = std of the tau-softened distribution."""
        if out.logits is None:
            return out.age, None
        bins = self._bins(out)
        lo, hi = self._range(bins)
        y_ldl, unc = distribution_mean_std(soft_target(out.logits, self.tau), bins)
        if out.regression is None or self.decoder == "ldl":
            return y_ldl, unc
        y_reg = (hi - lo) * out.regression.float().reshape(-1) + lo
        if self.decoder == "reg":
            return y_reg, unc
        return (y_ldl + y_reg) / 2.0, unc


def distillation_loss(
    student: ModelOutput, teacher: ModelOutput, tau: float = 2.0, teacher_age: Tensor | None = None
) -> dict[str, Tensor]:
    """Knowledge-distillation terms (Hinton et al. 2015, as in LRN Eq. 7) from a teacher to a student.

    - ``kd_kl``: tau^2 * KL(softmax(t/tau) || softmax(s/tau)) when both have logits over the
      same number of bins; when both have logits and ``bin_ages`` but on different bins (e.g.
      a 101-bin teacher and C3AE's 12 two-point bins), the teacher's softened distribution is
      first moved onto the student's bins by :func:`project_distribution` (C3AE Eq. 2-3);
    - ``kd_stage``: for a stagewise student (``stages`` with ``probs`` and ``bins``, e.g.
      HSR), KL from the teacher's tau-softened age distribution marginalised onto each
      stage's bins (:func:`stage_targets_from_distribution`) to the stage probabilities;
    - ``kd_l1``: |student age - teacher age| (the teacher's decoded age, ``teacher_age``
      or ``teacher.age``).
    """
    parts: dict[str, Tensor] = {}
    if student.logits is not None and teacher.logits is not None and student.logits.shape == teacher.logits.shape:
        p_t = soft_target(teacher.logits.detach(), tau)
        log_s = F.log_softmax(student.logits.float() / tau, dim=1)
        kl = (p_t * (p_t.clamp_min(1e-12).log() - log_s)).sum(1)
        parts["kd_kl"] = tau**2 * kl.mean()
    elif (student.logits is not None and teacher.logits is not None and student.bin_ages is not None
          and teacher.bin_ages is not None):
        p_t = project_distribution(soft_target(teacher.logits.detach(), tau), teacher.bin_ages, student.bin_ages)
        log_s = F.log_softmax(student.logits.float() / tau, dim=1)
        kl = torch.where(p_t > 0, p_t * (p_t.clamp_min(1e-12).log() - log_s), torch.zeros_like(p_t)).sum(1)
        parts["kd_kl"] = tau**2 * kl.mean()
    elif student.stages and teacher.logits is not None and teacher.bin_ages is not None and all(
        "probs" in s and "bins" in s for s in student.stages
    ):
        p_t = soft_target(teacher.logits.detach(), tau)
        targets = stage_targets_from_distribution(p_t, teacher.bin_ages, [s["bins"] for s in student.stages])
        kl = 0.0
        for tgt, st in zip(targets, student.stages):
            q = st["probs"].float().clamp_min(1e-7)
            kl = kl + torch.where(tgt > 0, tgt * (tgt.clamp_min(1e-12).log() - q.log()), torch.zeros_like(tgt)).sum(1)
        parts["kd_stage"] = kl.mean()
    t_age = teacher_age if teacher_age is not None else teacher.age
    if student.age is not None and t_age is not None:
        parts["kd_l1"] = (student.age.float().reshape(-1) - t_age.detach().float().reshape(-1)).abs().mean()
    return parts


@register_method("distill")
class Distill(Method):
    """Teacher (e.g. LRN) -> compact student (e.g. HSR): (1 - alpha) * student loss + alpha * KD terms.

    ``student`` names the student's own method (default "hsr") and ``student_config`` its
    options; ``teacher_method``/``teacher_config`` decode the teacher's age (default "lrn",
    Eq. 20; None takes the teacher output's ``age``, as for an ensemble teacher, see
    :class:`agekit.training.teacher.TeacherEnsemble`); ``tau`` softens the teacher's
    distribution (default 2, as LRN).
    """

    defaults = {"student": "hsr", "student_config": None, "teacher_method": "lrn", "teacher_config": None,
                "tau": 2.0, "alpha": 0.5}
    needs_teacher = True

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.student_method = get_registered(self.student)(**(self.student_config or {}))
        self.teacher_decoder = (get_registered(self.teacher_method)(**(self.teacher_config or {}))
                                if self.teacher_method else None)

    def age_loss(self, out: ModelOutput, batch: dict[str, Tensor], model: nn.Module | None = None,
                 teacher: ModelOutput | None = None) -> dict[str, Tensor]:
        """Student terms times (1 - alpha) and distillation terms times alpha."""
        parts = {k: (1.0 - self.alpha) * v for k, v in self.student_method.age_loss(out, batch, model=model).items()}
        t_age = self.teacher_decoder.predict_age(teacher)[0] if self.teacher_decoder is not None else teacher.age
        for k, v in distillation_loss(out, teacher, self.tau, t_age).items():
            parts[k] = self.alpha * v
        return parts

    def predict_age(self, out: ModelOutput) -> tuple[Tensor | None, Tensor | None]:
        """The student's own decoder."""
        return self.student_method.predict_age(out)
