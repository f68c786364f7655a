"""The LightningModule: a registry network + a paper's method (+ a frozen teacher).

The network's outputs are cast to float32 and the method's loss and decoder run outside
autocast, so with ``precision: bf16-mixed`` only the convolutions and dense layers run in
bfloat16; the bin/expectation arithmetic of the method stays float32 (bf16 has 8 bits
of mantissa: ages near 60 would otherwise be rounded to 0.25-0.5 years).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Any

import lightning as L
import torch
import torch.nn as nn
from pydantic import BaseModel
from torch import Tensor

from agekit.methods import get_method
from agekit.models.checkpoint import load_checkpoint
from agekit.models.registry import create_model
from agekit.outputs import ModelOutput, output_to_float
from agekit.preprocessing import PreprocessSpec
from agekit.training.datamodule import age_groups_from_age
from agekit.training.recipes import (
    OPTIMIZER,
    SCHEDULER,
    SGD,
    Adam,
    AdamW,
    Cosine,
    MultiStep,
    NoSchedule,
    Plateau,
    RMSprop,
    Step,
    parse_recipe,
)
from agekit.training.teacher import PrecomputedTeacher, load_teacher


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """A context in which autocast is off on ``device``'s type (float32 method arithmetic)."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


FP32_CLASS_SUFFIXES = ("Head", "FusionBlock")


def keep_fp32(model: nn.Module, suffixes: tuple[str, ...] = FP32_CLASS_SUFFIXES) -> nn.Module:
    """Run every ``nn.Linear`` and every head module (class name ending in ``suffixes``) in float32.

    Under bf16 autocast the convolutions run in bfloat16, but the dense layers, softmax and
    bin/expectation products of the heads (HSR ``StageHead``, SSR-Net ``FusionBlock``, the
    baselines' heads) stay float32: a bfloat16 expectation rounds ages near 50 to 0.25-0.5 years.
    The dense layers of these compact networks are a negligible share of the MACs.
    """
    for m in model.modules():
        if getattr(m, "_agekit_fp32", False):
            continue
        if isinstance(m, nn.Linear) or type(m).__name__.endswith(tuple(suffixes)):
            orig = m.forward

            def forward(*args: Any, _orig=orig, **kwargs: Any) -> Any:
                t = next((a for a in args if isinstance(a, Tensor)), None)
                if t is None:
                    return _orig(*args, **kwargs)
                with torch.autocast(device_type=t.device.type, enabled=False):
                    args = tuple(a.float() if isinstance(a, Tensor) and a.is_floating_point() else a for a in args)
                    return _orig(*args, **kwargs)

            m.forward = forward
            m._agekit_fp32 = True
    return model


def build_optimizer(params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]], cfg: Any) -> torch.optim.Optimizer:
    """Adam (SSR-Net, C3AE) or SGD with momentum (HSR, LRN, LMTCNN) from a recipe's ``optimizer``.

    ``cfg`` is a :data:`agekit.training.recipes.Optimizer` section or its plain form (defaults: the schema's).
    """
    c = cfg if isinstance(cfg, BaseModel) else OPTIMIZER.validate_python(dict(cfg or {"name": "sgd"}))
    if isinstance(c, AdamW):  # agekit's own recipes (decoupled weight decay)
        return torch.optim.AdamW(params, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=c.weight_decay)
    if isinstance(c, Adam):
        return torch.optim.Adam(params, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=c.weight_decay)
    if isinstance(c, SGD):
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, nesterov=c.nesterov)
    if isinstance(c, RMSprop):
        return torch.optim.RMSprop(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
    raise ValueError(f"unknown optimizer {c!r}")


def cosine_with_warmup(opt: torch.optim.Optimizer, epochs: int, warmup: int = 0,
                       min_factor: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR: factor (e+1)/(warmup+1) for the first ``warmup`` epochs, then half a cosine from 1 to ``min_factor``."""
    def factor(e: int) -> float:
        if e < warmup:
            return (e + 1) / (warmup + 1)
        t = min(1.0, (e - warmup) / max(1, epochs - warmup))
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def build_scheduler(opt: torch.optim.Optimizer, cfg: Any, monitor: str) -> dict[str, Any] | None:
    """The papers' schedules as a Lightning ``lr_scheduler`` dict, from a recipe's ``scheduler``.

    ``multistep``: x gamma at the listed epochs (SSR-Net: x0.1 at 30 and 60 of 90);
    ``step``: x gamma every ``step_size`` epochs or steps (LRN: /10 every 40 epochs; LMTCNN:
    x0.1 every 10k steps, ``interval: step``); ``plateau``: ReduceLROnPlateau on the
    validation MAE (HSR: factor 0.1, patience 10, threshold 1e-4; C3AE alike); ``cosine``
    (agekit's own recipes): warm-up then cosine decay over ``epochs``.
    """
    c = cfg if isinstance(cfg, BaseModel) else SCHEDULER.validate_python(dict(cfg or {"name": "none"}))
    if isinstance(c, NoSchedule):
        return None
    if isinstance(c, Plateau):
        s = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode=c.mode, factor=c.factor, patience=c.patience, threshold=c.threshold,
            threshold_mode=c.threshold_mode, min_lr=c.min_lr,
        )
        return {"scheduler": s, "interval": "epoch", "monitor": c.monitor or monitor, "strict": True}
    if isinstance(c, MultiStep):
        s = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(c.milestones), gamma=c.gamma)
    elif isinstance(c, Step):
        s = torch.optim.lr_scheduler.StepLR(opt, step_size=c.step_size, gamma=c.gamma)
    elif isinstance(c, Cosine):
        # agekit recipes (not the papers): linear warm-up for ``warmup`` epochs, then cosine to ``min_factor``
        s = cosine_with_warmup(opt, c.epochs or 1, c.warmup, c.min_factor)
    else:
        raise ValueError(f"unknown scheduler {c!r}")
    return {"scheduler": s, "interval": c.interval}


class AgeModule(L.LightningModule):
    """Training/validation steps of one network with one method (and an optional frozen teacher).

    ``hparams`` hold what :func:`agekit.models.checkpoint.load_checkpoint` needs to rebuild the
    network from ``last.ckpt``: ``model``, ``config``, ``preprocess``, ``method``, ``card``
    and ``state_dict_prefix`` (``"model."``).
    """

    def __init__(
        self,
        model: str,
        config: dict[str, Any],
        preprocess: dict[str, Any],
        method: str,
        method_config: dict[str, Any] | None = None,
        recipe: dict[str, Any] | None = None,  # the plain recipe (hparams); validated into a Recipe
        card: dict[str, Any] | None = None,
        teacher: Any = None,
        state_dict_prefix: str = "model.",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()

        self.model = create_model(model, **(config or {}))
        self.spec = PreprocessSpec.from_dict(preprocess)
        self.model.preprocess = self.spec
        self.method = get_method(method, **(method_config or {}))
        self.recipe = parse_recipe({**(recipe or {}), "model": {"name": model, "config": dict(config or {})}})
        t = self.recipe.trainer
        self.channels_last = t.channels_last
        # trainer.compile: run the network through torch.compile in the training and evaluation
        # steps (true: Inductor; a string: that backend, e.g. "eager"); the state dict, checkpoints
        # and exports use the plain module.
        self.compile = False if t.compile == "auto" else t.compile  # "auto" is resolved by the probe before a run
        self.__dict__["_compiled"] = None
        self.monitor = t.monitor
        self.mixed = "16" in t.precision
        # data.age_groups: "adience" derives the 8 Adience groups from the age where a row has none (UTKFace LMTCNN)
        self.age_groups = self.recipe.data.age_groups
        self.__dict__["teacher"] = None  # not a submodule: never in the state dict or the optimiser
        self.hint: nn.Linear | None = None  # set_teacher's map to a teacher's features (feature_distill)
        if teacher:
            self.set_teacher(teacher)
        if self.mixed:
            keep_fp32(self.model)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def set_teacher(self, path: Any) -> None:
        """Load a frozen teacher (previous LRN generation, a distillation teacher, or a list: an ensemble).

        A precomputed teacher with ``features`` and a method with ``feature_distill`` get a linear map from the
        network's features to the teacher's (``hint``): trained with the network, kept in ``last.ckpt`` for
        resuming, never part of the network or its exports."""
        t = load_teacher(path, self.spec)
        self.__dict__["teacher"] = keep_fp32(t) if self.mixed else t
        feats = getattr(t, "features", None)
        if feats is not None and getattr(self.method, "feature_distill", 0) and self.hint is None:
            was = self.model.training
            self.model.eval()
            with torch.no_grad():
                probe = self.model(torch.zeros(1, *self.model.input_size))
            self.model.train(was)
            if probe.features is None:
                raise ValueError(f"feature_distill: network {self.hparams['model']!r} gives no features")
            self.hint = nn.Linear(probe.features.shape[1], feats.shape[1])

    def forward(self, x: Tensor) -> ModelOutput:
        return self.model(x)

    def _net(self, x: Tensor) -> ModelOutput:
        """The network's output for a step: compiled on first use when ``trainer.compile`` is set."""
        if not self.compile:
            return self.model(x)
        if self._compiled is None:
            backend = self.compile if isinstance(self.compile, str) else "inductor"
            self.__dict__["_compiled"] = torch.compile(self.model, backend=backend)
        return self._compiled(x)

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)
            if self.channels_last:
                self.teacher.to(memory_format=torch.channels_last)

    def _teacher_output(self, x: Tensor, batch: dict[str, Tensor] | None = None) -> ModelOutput | None:
        if self.teacher is None:
            return None

        self.teacher.eval()
        with torch.no_grad():
            if isinstance(self.teacher, PrecomputedTeacher):
                if batch is None or "index" not in batch:
                    raise ValueError("a precomputed teacher needs the batch's cache row indices (batch['index'])")
                return self.teacher(batch["index"])
            return output_to_float(self.teacher(x))

    def with_derived_labels(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``batch`` with ``age_group`` filled from ``age`` where unknown, when the recipe asks (``data.age_groups``)."""
        if not self.age_groups or "age" not in batch:
            return batch

        return {**batch, "age_group": age_groups_from_age(batch["age"], batch.get("age_group"), self.age_groups)}

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        batch = self.with_derived_labels(batch)
        x = batch["image"]
        out = output_to_float(self._net(x))
        if self.hint is not None and out.features is not None:
            out.extras["hint"] = self.hint(out.features.float())
        teacher = self._teacher_output(x, batch)
        with no_autocast(x.device):
            loss, parts = self.method.loss(out, batch, model=self.model, teacher=teacher)
        b = x.shape[0]
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=b, sync_dist=True)
        for k, v in parts.items():
            self.log(f"train/{k}", v, on_step=False, on_epoch=True, batch_size=b, sync_dist=True)
        return loss

    def _eval_step(self, batch: dict[str, Tensor], prefix: str) -> None:
        batch = self.with_derived_labels(batch)
        x = batch["image"]
        out = output_to_float(self._net(x))
        with no_autocast(x.device):
            if not self.method.needs_teacher:
                loss, _ = self.method.loss(out, batch, model=self.model)
                self.log(f"{prefix}/loss", loss, batch_size=x.shape[0], sync_dist=True, prog_bar=prefix == "val")
            pred = self.method.predict(out)
        for k, (v, n) in batch_metrics(pred, batch).items():
            self.log(f"{prefix}/{k}", v, batch_size=n, sync_dist=True, prog_bar=k == "mae")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> Any:
        params = list(self.model.parameters()) + (list(self.hint.parameters()) if self.hint is not None else [])
        opt = build_optimizer([p for p in params if p.requires_grad], self.recipe.optimizer)
        sched_cfg = self.recipe.scheduler
        if isinstance(sched_cfg, Cosine) and sched_cfg.epochs is None:  # decay over the run
            sched_cfg = sched_cfg.model_copy(update={"epochs": self.recipe.trainer.max_epochs or 1})
        sched = build_scheduler(opt, sched_cfg, self.monitor)
        return opt if sched is None else {"optimizer": opt, "lr_scheduler": sched}


def batch_metrics(pred: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, tuple[Tensor, int]]:
    """Per-batch MAE, CA(3), CA(5), gender and age-group accuracy with their sample counts.

    Lightning averages them over the epoch weighted by the counts, which gives the exact
    epoch figures (MAE: SSR-Net Eq. 8; CA(n): C3AE Sec. 4.1, share of |error| <= n years).
    """
    res: dict[str, tuple[Tensor, int]] = {}
    if "age" in pred and "age" in batch:
        true = batch["age"].float().reshape(-1)
        known = torch.isfinite(true)
        n = int(known.sum())
        if n:
            err = (pred["age"].float().reshape(-1)[known] - true[known]).abs()
            res["mae"] = (err.mean(), n)
            res["ca3"] = ((err <= 3).float().mean(), n)
            res["ca5"] = ((err <= 5).float().mean(), n)
    if "gender_female" in pred and "gender" in batch:
        g = batch["gender"].reshape(-1)
        known = g >= 0
        n = int(known.sum())
        if n:
            res["gender_acc"] = (((pred["gender_female"].reshape(-1)[known] > 0.5).long() == g[known]).float().mean(), n)
    if "age_group" in pred and "age_group" in batch:
        g = batch["age_group"].reshape(-1)
        known = g >= 0
        n = int(known.sum())
        if n:
            p = pred["age_group"].reshape(-1)[known]
            res["group_acc"] = ((p == g[known]).float().mean(), n)
            res["group_one_off"] = (((p - g[known]).abs() <= 1).float().mean(), n)
    return res


def load_matching_weights(model: nn.Module, path: str) -> tuple[list[str], list[str]]:
    """Copy every tensor of checkpoint ``path`` whose name and shape match ``model`` (chains, ``--init-from``).

    Returns (loaded names, skipped names): a k-resolution HSR initialised from a
    single-resolution model takes the shared backbone and keeps its own new heads.
    """
    src = load_checkpoint(path).model.state_dict()
    own = model.state_dict()
    loaded = [k for k, v in src.items() if k in own and own[k].shape == v.shape]
    skipped = [k for k in own if k not in loaded]
    model.load_state_dict({**own, **{k: src[k] for k in loaded}})
    if not loaded:
        raise ValueError(f"--init-from {path}: no tensor matches the model by name and shape")
    return loaded, skipped
