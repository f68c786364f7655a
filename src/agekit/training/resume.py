"""What makes a run resumable after a crash or a ``kill -9``: atomic ``last.ckpt`` files, written often.

:class:`LastCheckpoint` writes ``checkpoints/last.ckpt`` every ``trainer.checkpoint_every_n_steps`` optimiser
steps and at the end of every epoch; :class:`AtomicCheckpointIO` writes each file to a temporary name in the
same folder, flushes it to disk and renames it over the old one, so ``last.ckpt`` is always a whole
checkpoint (the previous one or the new one). :class:`RngState` carries the global random generators
(torch, CUDA, numpy, Python) in the checkpoint. The position inside an epoch travels with the training
loader (:class:`agekit.training.datamodule.ResumableLoader`), so a run resumed from a mid-epoch checkpoint
skips the batches it had already trained on.
"""
from __future__ import annotations

import contextlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

TMP_PREFIX = ".tmp-"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` that never leaves ``path`` half-written: temp file, fsync, ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # the rename itself reaches the disk
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a process killed while saving left in ``folder``; returns them."""
    stale = sorted(Path(folder).glob(f"{TMP_PREFIX}*")) if Path(folder).is_dir() else []
    for p in stale:
        with contextlib.suppress(OSError):
            p.unlink()
    return stale


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, saving through :func:`atomic_torch_save` (local paths)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_torch_save(checkpoint, path)


class LastCheckpoint(Checkpoint):
    """``dirpath/last.ckpt`` every ``every_n_steps`` optimiser steps (0: never mid-epoch) and at every epoch's end.

    A :class:`~lightning.pytorch.callbacks.Checkpoint`, so Lightning runs it after the other callbacks
    (their states, the EMA among them, are up to date when it writes). The step checkpoint is not written
    on an epoch's last batch: the epoch's own checkpoint follows, after validation.
    """

    def __init__(self, dirpath: str | os.PathLike, every_n_steps: int = 0) -> None:
        super().__init__()
        if every_n_steps < 0:
            raise ValueError(f"checkpoint every_n_steps must be >= 0, got {every_n_steps}")
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = int(every_n_steps)
        self.saved_steps: list[int] = []  # global steps written by this process (for tests and logs)

    def _save(self, trainer: L.Trainer) -> None:
        from lightning.pytorch.trainer.states import TrainerFn

        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        trainer.save_checkpoint(str(self.path), weights_only=False)  # collective under DDP: rank 0 writes
        self.saved_steps.append(int(trainer.global_step))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        n = self.every_n_steps
        if n and trainer.global_step % n == 0 and batch_idx + 1 < trainer.num_training_batches:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)


class RngState(L.Callback):
    """The global random generators' states in every checkpoint, restored when training resumes.

    (With ``trainer.seed`` set, each training batch also reseeds torch from the seed, the step and the rank,
    which makes augmentation and dropout independent of where a run was interrupted; under DDP that is
    the only guarantee, since the file holds rank 0's generators.)
    """

    def __init__(self) -> None:
        self._loaded: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return "agekit_rng"

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                           "has_gauss": int(has_gauss), "gauss": float(gauss)}}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._loaded = state

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        s, self._loaded = self._loaded, None
        if not s or trainer.world_size > 1:  # the file holds rank 0's generators: other ranks must not share them
            return
        torch.set_rng_state(s["torch"])
        py = s["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        n = s["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        if "cuda" in s and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(s["cuda"])
