"""``train(recipe)``: the library behind ``agekit train`` (``agekit evaluate`` is :mod:`agekit.evaluation.evaluate`).

A run directory holds ``checkpoints/last.ckpt`` (Lightning; written atomically at every epoch's end
and every ``trainer.checkpoint_every_n_steps`` steps, what ``--resume`` continues from, in mid-epoch
too: see :mod:`agekit.training.resume`), ``logs/metrics.csv`` (CSVLogger; TensorBoard events too when
installed), ``recipe.yaml`` (the recipe as run) and ``final.safetensors`` (an agekit checkpoint with
its model card). Chains write one such directory per stage (``stages``) or generation
(``generations``) under the run directory.
"""
from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, WeightAveraging
from lightning.pytorch.loggers import CSVLogger
from torch.optim.swa_utils import get_ema_multi_avg_fn

from agekit.methods.base import default_method_for, get_registered
from agekit.methods.lrn import resolve_age_range
from agekit.models.checkpoint import check_resume_file, save_checkpoint
from agekit.models.complexity import complexity
from agekit.models.registry import create_model, model_entry
from agekit.preprocessing import PreprocessSpec
from agekit.training.datamodule import AgeDataModule
from agekit.training.module import AgeModule, load_matching_weights
from agekit.training.probe import resolve_auto
from agekit.training.recipes import Recipe, parse_recipe
from agekit.training.recipes import Trainer as TrainerSettings
from agekit.training.resume import AtomicCheckpointIO, LastCheckpoint, RngState, remove_stale_temporaries
from agekit.training.sampling import MultiCacheDataModule
from agekit.training.teacher import read_teacher_outputs


@dataclass
class TrainResult:
    """Paths and figures of one training run (or the last run of a chain, with ``runs`` listing all)."""

    out_dir: Path
    last_ckpt: Path | None
    final: Path
    metrics: dict[str, float] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    runs: list[TrainResult] = field(default_factory=list)
    is_global_zero: bool = True  # False in the other processes of a DDP run (they write nothing)


def resolve_spec(model_name: str, overrides: dict[str, Any] | None, config: dict[str, Any] | None = None) -> PreprocessSpec:
    """The model's :class:`PreprocessSpec` (as built with ``config``) with a recipe's ``preprocess`` overrides."""
    spec = getattr(create_model(model_name, **(config or {})), "preprocess", None) or model_entry(model_name).preprocess
    if spec is None:
        raise ValueError(f"model {model_name!r} has no preprocessing spec")
    if overrides:
        spec = PreprocessSpec.from_dict({**spec.to_dict(), **overrides})
    return spec


def method_name_for(recipe: Recipe | dict[str, Any]) -> str:
    """The recipe's method, or the model's default method."""
    if not isinstance(recipe, Recipe):
        recipe = parse_recipe(recipe)
    if recipe.method.name:
        return recipe.method.name
    return default_method_for(recipe.model.name)


def train(
    recipe: str | Path | dict[str, Any] | Recipe,
    out_dir: str | Path | None = None,
    *,
    overrides: list[str] | None = None,
    init_from: str | Path | None = None,
    resume: bool = False,
    generations: int | None = None,
) -> TrainResult:
    """Train a recipe (with its ``stages`` chain and LRN ``generations``); returns the paths written."""
    r = parse_recipe(recipe, overrides)
    if init_from is not None:
        r = r.updated(init_from=str(init_from))
    if generations is not None:
        r = r.updated(generations=int(generations))
    out = Path(out_dir or Path("runs") / str(r.name or "run"))
    out.mkdir(parents=True, exist_ok=True)
    if not r.stages:
        return _train_generations(r, out, resume)
    runs: list[TrainResult] = []
    prev = r.init_from
    for i in range(len(r.stages)):
        name, sub = r.stage(i)
        sub = sub.updated(name=f"{r.name}/{name}", **({"init_from": str(prev) if prev else None} if i > 0 or prev else {}))
        res = _train_generations(sub, out / name, resume)
        runs.append(res)
        prev = res.final
    last = runs[-1]
    return TrainResult(out, last.last_ckpt, last.final, last.metrics, last.card, runs, last.is_global_zero)


def _train_generations(r: Recipe, out: Path, resume: bool) -> TrainResult:
    if r.generations <= 1:
        return _train_one(r, out, resume)
    # LRN Alg. 1: generation t is initialised like the first (the pre-trained model) and
    # taught by generation t - 1; generation 1 learns from the labels alone.
    runs, teacher = [], None
    for g in range(1, r.generations + 1):
        method = r.method.model_dump(mode="json")
        if r.method.name == "lrn":
            method["config"] = {**method["config"], "generation": g}
        sub = r.updated(generations=1, teacher=str(teacher) if teacher else r.teacher, method=method,
                        name=f"{r.name}/gen{g}")
        res = _train_one(sub, out / f"gen{g}", resume)
        runs.append(res)
        teacher = res.final
    last = runs[-1]
    return TrainResult(out, last.last_ckpt, last.final, last.metrics, last.card, runs, last.is_global_zero)


def _scalar_metrics(d: dict[str, Any]) -> dict[str, float]:
    res = {}
    for k, v in d.items():
        try:
            res[k] = float(v)
        except (TypeError, ValueError):
            pass
    return res


class _Throughput:
    """Counts training images, the time spent in training batches (validation excluded) and the fit's wall time.

    The counts travel in every ``last.ckpt`` (callback state), so a run resumed after an interruption reports the
    images, seconds and wall time of all its parts, and resuming a finished run keeps its figures.
    """

    def __init__(self) -> None:
        outer = self

        class CB(L.Callback):
            @property
            def state_key(self) -> str:
                return "agekit_throughput"

            def state_dict(self):
                return {"images": outer.images, "seconds": outer.seconds, "fit_seconds": outer.fit_seconds()}

            def load_state_dict(self, state):
                outer.images, outer.seconds = int(state["images"]), float(state["seconds"])
                outer.prior_fit_s = float(state.get("fit_seconds", 0.0))

            def on_fit_start(self, trainer, pm):
                outer._fit_t0 = time.perf_counter()

            def on_train_epoch_start(self, trainer, pm):
                outer._t0 = time.perf_counter()

            def on_validation_start(self, trainer, pm):
                if trainer.training or trainer.state.fn == "fit":
                    outer.seconds += time.perf_counter() - outer._t0

            def on_validation_end(self, trainer, pm):
                outer._t0 = time.perf_counter()

            def on_train_batch_end(self, trainer, pm, outputs, batch, batch_idx):
                # every rank trains on an equal share (the sampler pads): count all ranks' images
                outer.images += int(batch["image"].shape[0]) * int(trainer.world_size)

            def on_train_epoch_end(self, trainer, pm):
                outer.seconds += time.perf_counter() - outer._t0
                outer._t0 = time.perf_counter()

        self.images, self.seconds, self._t0 = 0, 0.0, time.perf_counter()
        self.prior_fit_s, self._fit_t0 = 0.0, time.perf_counter()
        self.callback = CB()

    def fit_seconds(self) -> float:
        """Wall time of the fit so far, earlier (resumed) parts included."""
        return self.prior_fit_s + time.perf_counter() - self._fit_t0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def _ema_callback(decay: float, warmup: bool = True) -> Any:
    """EMA of the network's weights and BN statistics (Lightning ``WeightAveraging``; the teacher is no submodule).

    Step n (n >= 1 updates so far) moves the average by ``1 - d`` towards the weights, with ``d = decay`` or, with
    ``warmup`` (TensorFlow's ``ExponentialMovingAverage(num_updates=n)``), ``d = min(decay, (1 + n) / (10 + n))``,
    so the random initial weights do not linger in the average (at d = 0.9998, 5 % of them would remain after
    15,000 steps). The averaged weights are validated each epoch and go into ``final.safetensors``; every ``last.ckpt`` holds
    both the average and the raw weights, so ``--resume`` continues training and the average exactly. Unlike
    Lightning's callback, the average replaces the raw weights only in :meth:`apply` (called after the final
    ``last.ckpt`` is written), so that checkpoint still resumes from the raw weights.
    """
    if not 0.0 < decay < 1.0:
        raise ValueError(f"trainer.ema_decay must lie in (0, 1), got {decay}")

    def update(averaged: list, current: list, n: torch.Tensor) -> None:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n))) if warmup else decay
        get_ema_multi_avg_fn(d)(averaged, current, n)

    class EMA(WeightAveraging):
        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            pass

        def apply(self, pl_module: Any) -> None:
            self._copy_average_to_current(pl_module)

    return EMA(multi_avg_fn=update)


def _set_aside_logs(logs: Path) -> list[Path]:
    """Rename the CSV log of an interrupted run (the CSVLogger of the resumed run starts a new file)."""
    f = logs / "metrics.csv"
    if not f.is_file():
        return sorted(logs.glob("metrics.part*.csv"))
    k = len(list(logs.glob("metrics.part*.csv")))
    f.rename(logs / f"metrics.part{k}.csv")
    return sorted(logs.glob("metrics.part*.csv"))


def _merge_logs(logs: Path, parts: list[Path]) -> None:
    """``logs/metrics.csv`` = the interrupted runs' rows followed by the resumed run's (union of columns)."""
    rows: list[dict[str, str]] = []
    cols: list[str] = []
    for f in [*parts, logs / "metrics.csv"]:
        if f.is_file():
            with open(f, newline="") as fh:
                r = csv.DictReader(fh)
                cols += [c for c in r.fieldnames or [] if c not in cols]
                rows += list(r)
    with open(logs / "metrics.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    for f in parts:
        f.unlink()


def _train_one(r: Recipe, out: Path, resume: bool) -> TrainResult:
    """One training run in ``out``: a whole recipe, or one stage or generation of a chain.

    The steps, in this order (each draws from the seeded RNGs as it always has, so runs and their resumption
    stay reproducible): what ``--resume`` finds in ``out``; the data the run reads (:func:`_one_cache`); the
    network, method and card (:func:`_plan`, :func:`_build_module`, :func:`_init_from`); the data module
    (:func:`_build_data`); loggers, callbacks and the Lightning trainer (:func:`_build_callbacks`,
    :func:`_build_trainer`); the fit; the final card and weights (:func:`_finish_card`, :func:`_write_final`).
    """
    out.mkdir(parents=True, exist_ok=True)
    final = out / "final.safetensors"
    last = out / "checkpoints" / "last.ckpt"
    if resume and final.is_file() and not last.is_file():
        # a finished stage of a chain whose last.ckpt was removed (under DDP, Lightning's launcher sets the ranks)
        rank0 = os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"
        return TrainResult(out, None, final, is_global_zero=rank0)
    remove_stale_temporaries(last.parent)  # left by a process killed while it saved
    resuming = resume and last.is_file()
    if resume and not resuming:
        print(f"--resume: no checkpoint {last}: {r.name} starts from the beginning")
    r = _one_cache(r)
    if r.trainer.seed is not None:
        L.seed_everything(r.trainer.seed, workers=True, verbose=False)
    plan = _plan(r)
    if "auto" in (r.trainer.precision, r.trainer.channels_last, r.trainer.compile):  # measured at the start (probe)
        r, plan.card["probe"] = resolve_auto(r, out, plan.config, plan.spec)
    module = _build_module(r, plan)
    # data only unless --trust-pickle; a refusal is one line naming the file
    weights_only = check_resume_file(last) if resuming else None
    if r.init_from and not resuming:
        _init_from(module, r.init_from)
    dm = _build_data(r, plan)
    if r.data.sources and any(src.teacher for src in r.data.sources.values()):
        module.set_teacher(str(_join_source_teachers(r, dm, out)))
    has_val = _keep_validation(dm, module)
    (out / "recipe.yaml").write_text(r.to_yaml())

    parts = _set_aside_logs(out / "logs") if resuming else []
    callbacks, speed, ema = _build_callbacks(r.trainer, last)
    trainer = _build_trainer(r.trainer, out, callbacks, has_val)
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resuming else None, weights_only=weights_only)
    fit_s = speed.fit_seconds()
    if parts and trainer.is_global_zero:
        _merge_logs(out / "logs", parts)
    metrics = {k: v for k, v in _scalar_metrics(trainer.callback_metrics).items() if k.startswith("val/")}
    if not metrics and resume and (out / "card.json").is_file():  # resumed a run that had already finished
        metrics = json.loads((out / "card.json").read_text()).get("val_metrics", {})
    _finish_card(plan, r.trainer, trainer, module, speed, fit_s, metrics)
    return _write_final(plan, r.trainer, trainer, module, ema, out, last, final, metrics)


@dataclass
class _Plan:
    """What the steps of one run share: the network's registry name and its (resolved) config, its preprocessing,
    the method's name and the model card (filled in as the run goes; the module's hyper-parameters hold it)."""

    name: str
    config: dict[str, Any]
    spec: PreprocessSpec
    method: str
    card: dict[str, Any]


def _one_cache(r: Recipe) -> Recipe:
    """The recipe on the data the run reads: ``data.cache``, or ``data.sources`` when there is no cache.

    ``--data DIR`` on a multi-dataset recipe trains on that one cache (its ``data.sources`` dropped)."""
    data = r.data
    if not data.cache and not data.sources:
        raise ValueError(f"recipe {r.name!r}: no data.cache (use --data DIR or --set data.cache=DIR)")
    if data.cache and data.sources:  # --data DIR: the recipe on that one cache (e.g. a multi-dataset recipe on one)
        print(f"data.cache {data.cache}: trained on it alone with protocol {data.protocol}; data.sources not used")
        r = r.model_copy(deep=True)
        r.data.sources = {}
    return r


def _plan(r: Recipe) -> _Plan:
    """The network's config (LRN Eq. 1's age range resolved from the training data), spec, method and first card."""
    data = r.data
    config = dict(r.model.config)
    if "train" in (config.get("min_age"), config.get("max_age")):  # LRN Eq. 1: l_1, l_k of the training set
        config = resolve_age_range(config, data)
    spec = resolve_spec(r.model.name, r.preprocess.overrides(), config)
    card = {
        "recipe": r.name,
        "paper": r.paper,
        "data": {"cache": data.cache, **({"age_groups": data.age_groups} if data.age_groups else {})},
        "protocol": data.protocol,
        "init_from": r.init_from,
        "teacher": r.teacher,
        "method_config": dict(r.method.config),
    }
    if r.model.config != config:  # resolved from the training data (LRN Eq. 1)
        card["age_range"] = [config.get("min_age"), config.get("max_age")]
    return _Plan(r.model.name, config, spec, method_name_for(r), card)


def _build_module(r: Recipe, plan: _Plan) -> AgeModule:
    """The LightningModule: the network, the method (with its options) and the teacher a distillation needs."""
    module = AgeModule(plan.name, plan.config, plan.spec.to_dict(), plan.method, plan.card["method_config"],
                       r.to_dict(), plan.card, r.teacher)
    if module.method.needs_teacher and module.teacher is None:
        raise ValueError(f"recipe {r.name!r}: method {plan.method!r} needs a teacher: set `teacher` to a checkpoint "
                         "or a list of checkpoints (e.g. --set 'teacher=[a/final.safetensors,b/final.safetensors]')")
    return module


def _init_from(module: AgeModule, path: str) -> None:
    """Start from the weights of checkpoint ``path`` that match the network by name and shape (chains,
    ``--init-from``)."""
    loaded, skipped = load_matching_weights(module.model, path)
    print(f"init from {path}: {len(loaded)} tensors loaded, {len(skipped)} kept ({skipped[:6]}...)"
          if skipped else f"init from {path}: all {len(loaded)} tensors loaded")


def _build_data(r: Recipe, plan: _Plan) -> AgeDataModule:
    """The data module (one cache, or several drawn by weight), set up for fitting; the card records the data."""
    data, t, seed = r.data, r.trainer, r.trainer.seed
    if data.require is not None:
        require = tuple(data.require)
    else:  # the labels the method trains on must be known (each method states them)
        require = tuple(get_registered(plan.method).required_labels)
    common = dict(train_split=data.train_split, val_split=data.val_split, test_split=data.test_split,
                  batch_size=data.batch_size, eval_batch_size=data.eval_batch_size, augment=r.augment.options(),
                  require=require, seed=int(seed or 0), drop_last=data.drop_last, channels_last=t.channels_last,
                  reseed=seed is not None, balance=data.balance)
    if data.sources:  # several caches, each dataset drawn with its weight (agekit.training.sampling)
        teachers = [r.teacher] if isinstance(r.teacher, str) else list(r.teacher or [])
        if any(str(x).endswith(".npz") for x in teachers):
            raise ValueError(f"recipe {r.name!r}: precomputed teacher outputs (.npz) index one cache's rows, not "
                             "data.sources; give each source its own (data.sources.NAME.teacher) or checkpoints")
        dm: AgeDataModule = MultiCacheDataModule(data.sources, plan.spec, **common)
    else:
        dm = AgeDataModule(data.cache, plan.spec, protocol=data.protocol, **common)
    dm.setup("fit")
    card = plan.card
    card["protocol"] = dm.protocol
    card["data"]["dataset"] = (dm.cache.info or {}).get("dataset")
    card["data"]["train_rows"] = len(dm.splits["train"])
    if data.sources:
        card["data"]["sources"] = {n: {**src.model_dump(), "protocol": dm.children[n].protocol,
                                       "train_rows": dm.source_rows["train"][n]} for n, src in data.sources.items()}
    return dm


def _join_source_teachers(r: Recipe, dm: AgeDataModule, out: Path) -> Path:
    """The sources' precomputed teacher outputs (``data.sources.NAME.teacher``, each over its cache's rows) taken at
    each source's training rows and joined in the order of the joined training split, so that a batch's ``index``
    finds its face's answer; written to OUT/teacher_train.npz."""
    if r.teacher:
        raise ValueError(f"recipe {r.name!r}: give a top-level teacher or per-source teacher outputs, not both")
    missing = [n for n, src in r.data.sources.items() if not src.teacher]
    if missing:
        raise ValueError(f"recipe {r.name!r}: data.sources {missing} have no teacher outputs; every source needs one")
    parts: list[dict[str, np.ndarray]] = []
    for name, rows in dm.joined_rows("train").items():
        child = dm.children[name]
        z = read_teacher_outputs(r.data.sources[name].teacher)
        if len(z["age"]) != len(child.cache.meta["age"]):
            raise ValueError(f"data.sources.{name}.teacher: {len(z['age'])} rows, the cache "
                             f"{child.cache.root} has {len(child.cache.meta['age'])}")
        parts.append({k: (v if k == "bin_ages" else v[rows]) for k, v in z.items()})
    keys = set(parts[0])
    if any(set(p) != keys for p in parts) or ("bin_ages" in keys
                                              and any(not np.array_equal(p["bin_ages"], parts[0]["bin_ages"])
                                                      for p in parts)):
        raise ValueError(f"recipe {r.name!r}: the sources' teacher outputs hold different arrays or bins")
    joined = {k: parts[0][k] if k == "bin_ages" else np.concatenate([p[k] for p in parts]) for k in keys}
    if len(joined["age"]) != len(dm.splits["train"]):
        raise ValueError(f"the sources' teacher outputs give {len(joined['age'])} training rows, the joined training "
                         f"split has {len(dm.splits['train'])}")
    path = out / "teacher_train.npz"
    out.mkdir(parents=True, exist_ok=True)
    np.savez(path, **joined)
    return path


def _keep_validation(dm: AgeDataModule, module: AgeModule) -> bool:
    """Whether the run validates: without validation rows, the val split is dropped and a ``val/`` monitor
    becomes the training loss."""
    has_val = "val" in dm.splits and len(dm.splits["val"]) > 0
    if not has_val:
        dm.splits.pop("val", None)
    if not has_val and module.monitor.startswith("val/"):
        module.monitor = "train/loss_epoch"
    return has_val


def _build_callbacks(t: TrainerSettings, last: Path) -> tuple[list[Any], _Throughput, Any]:
    """The callbacks (``last.ckpt``, throughput, RNG state, learning rate, the weights' EMA), the throughput
    counter and the EMA callback (None without ``trainer.ema_decay``)."""
    speed = _Throughput()
    callbacks = [LastCheckpoint(last.parent, t.checkpoint_every_n_steps), speed.callback, RngState(),
                 LearningRateMonitor("epoch")]
    ema = _ema_callback(t.ema_decay, t.ema_warmup) if t.ema_decay else None
    if ema is not None:  # validation and final.safetensors use the exponential moving average of the weights
        callbacks.append(ema)
    return callbacks, speed, ema


def _build_trainer(t: TrainerSettings, out: Path, callbacks: list[Any], has_val: bool) -> Any:
    """The Lightning trainer of the recipe's ``trainer`` section, logging to ``out/logs`` (CSV) and ``out/tb``
    (TensorBoard, when installed)."""
    loggers: list[Any] = [CSVLogger(str(out), name="", version="logs")]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out), name="", version="tb"))
    except ImportError:
        pass
    return L.Trainer(
        default_root_dir=str(out),
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        max_time=t.max_time,  # e.g. "00:00:05:00": stop (and still write final.safetensors) after this wall time
        deterministic=t.deterministic,
        gradient_clip_val=t.gradient_clip_val,
        gradient_clip_algorithm=t.gradient_clip_algorithm if t.gradient_clip_val else None,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches if has_val else 0,
        log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        num_sanity_val_steps=0,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        use_distributed_sampler=False,  # AgeDataModule shards its own (seed, epoch) permutation
        logger=loggers,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )


def _finish_card(plan: _Plan, t: TrainerSettings, trainer: Any, module: AgeModule, speed: _Throughput, fit_s: float,
                 metrics: dict[str, float]) -> None:
    """The card's figures of the finished fit: epochs, steps, validation metrics, time, throughput, settings and
    the network's complexity."""
    card, spec = plan.card, plan.spec
    card.update(
        {
            "epochs": int(trainer.current_epoch),
            "steps": int(trainer.global_step),
            "val_metrics": metrics,
            "train_seconds": round(fit_s, 2),
            "train_images": int(speed.images),
            "train_images_per_s": round(speed.images_per_s, 1),
            "precision": t.precision,
            "world_size": int(trainer.world_size),
            "channels_last": t.channels_last,
            "compile": t.compile,
            "ema_decay": t.ema_decay,
            "ema_warmup": t.ema_warmup if t.ema_decay else None,
            "finished": True,
        }
    )
    try:
        size = (spec.num_crops, 3, spec.size, spec.size) if spec.num_crops > 1 else (3, spec.size, spec.size)
        card["complexity"] = complexity(module.model, size).to_dict()
    except Exception as e:  # complexity is informative only
        card["complexity_error"] = str(e)


def _write_final(plan: _Plan, t: TrainerSettings, trainer: Any, module: AgeModule, ema: Any, out: Path, last: Path,
                 final: Path, metrics: dict[str, float]) -> TrainResult:
    """``last.ckpt`` with the final card, then (the EMA weights swapped in) ``final.safetensors`` and ``card.json``."""
    card = plan.card
    module.hparams["card"] = card
    # hyper_parameters now carry the final card (collective: every rank calls it)
    trainer.save_checkpoint(str(last), weights_only=False)
    if ema is not None:
        ema.apply(module)
    if trainer.is_global_zero:
        model = module.model
        if t.channels_last:
            model = model.to(memory_format=torch.contiguous_format)
        save_checkpoint(final, model, name=plan.name, config=plan.config, preprocess=plan.spec, method=plan.method,
                        card=card)
        (out / "card.json").write_text(json.dumps(card, indent=1, default=str))
    if trainer.world_size > 1:  # the next run of a chain (another rank's teacher or init) reads final.safetensors
        trainer.strategy.barrier("agekit-final-written")
    return TrainResult(out, last, final, metrics, card, is_global_zero=bool(trainer.is_global_zero))
