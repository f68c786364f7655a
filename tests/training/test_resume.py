"""Training that resumes in fact: a kill -9 in mid-epoch, a crash while saving, the loader's place in the epoch."""
from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agekit.models.checkpoint import load_checkpoint
from agekit.training.datamodule import CacheSplit, EpochShuffleSampler, ResumableLoader
from agekit.training.resume import LastCheckpoint, atomic_torch_save, remove_stale_temporaries
from killing import one_thread_main, train_and_kill

RECIPE = "sephsr_30_10_utkface"
TRAIN_ROWS, BATCH = 24, 2
STEPS_PER_EPOCH = TRAIN_ROWS // BATCH
EPOCHS = 3


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """28 random 64x64 faces (24 train, 4 val) in the view SepHSR(30,10) reads."""
    from agekit.data.cache import write_cache
    from agekit.training.engine import resolve_spec

    spec = resolve_spec("sephsr_30_10", None, {"p": 8, "q": 4})
    n = TRAIN_ROWS + 4
    rng = np.random.default_rng(0)
    meta = {"age": rng.uniform(1, 90, n).astype(np.float32), "hash": np.array([f"{i:040x}" for i in range(n)]),
            "source": np.array([f"{i}.jpg" for i in range(n)])}
    root = tmp_path_factory.mktemp("resume_cache")
    write_cache(root, meta, {spec.view_key: rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)},
                {"utkface": {"train": np.arange(TRAIN_ROWS), "val": np.arange(TRAIN_ROWS, n)}})
    return root


def _overrides(cache: Path, every: int = 1) -> list[str]:
    # augmentation (the recipe's HSR jitter), EMA and an LR halved every epoch: all must resume exactly
    return ["trainer.progress_bar=false", f"data.batch_size={BATCH}", "trainer.seed=3", "trainer.deterministic=true",
            f"data.cache={cache}", "model.config.p=8", "model.config.q=4", f"trainer.max_epochs={EPOCHS}",
            f"trainer.checkpoint_every_n_steps={every}", "trainer.ema_decay=0.6",
            "scheduler={name: step, step_size: 1, gamma: 0.5}"]


def _cli(out: Path, overrides: list[str], *extra: str) -> list[str]:
    args = ["train", "--recipe", RECIPE, "--out", str(out), *extra]
    for o in overrides:
        args += ["--set", o]
    return args


def test_kill_9_in_mid_epoch_then_resume_equals_an_uninterrupted_run(cache, tmp_path):
    """`agekit train` is SIGKILLed in the middle of its second epoch; `--resume` ends with the weights of an
    uninterrupted run of the same seed. Tolerance: none (bit-identical, one CPU thread, deterministic)."""
    over = _overrides(cache)
    out = tmp_path / "killed"
    # killed at a step checkpoint inside the second epoch
    killed_at = train_and_kill(_cli(out, over), out, tmp_path / "killed.log", at_step=STEPS_PER_EPOCH + 2,
                               accept=lambda step: step % STEPS_PER_EPOCH != 0 and step < EPOCHS * STEPS_PER_EPOCH)
    assert killed_at % STEPS_PER_EPOCH != 0 and killed_at < EPOCHS * STEPS_PER_EPOCH
    assert not (out / "final.safetensors").exists()

    assert one_thread_main(_cli(out, over, "--resume")) == 0
    assert one_thread_main(_cli(tmp_path / "whole", over)) == 0
    a, b = load_checkpoint(tmp_path / "whole" / "final.safetensors"), load_checkpoint(out / "final.safetensors")
    assert a.card["steps"] == b.card["steps"] == EPOCHS * STEPS_PER_EPOCH
    wa, wb = a.model.state_dict(), b.model.state_dict()
    diff = max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)
    assert diff == 0.0, f"resumed from step {killed_at}: weights differ by {diff}"
    # the raw (non-averaged) weights and the optimiser state agree as well
    ca, cb = (torch.load(p / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
              for p in (tmp_path / "whole", out))
    assert all(torch.equal(ca["current_model_state"][k], cb["current_model_state"][k]) for k in ca["current_model_state"])
    assert ca["optimizer_states"][0]["param_groups"][0]["lr"] == cb["optimizer_states"][0]["param_groups"][0]["lr"]


def test_resume_without_a_checkpoint_says_so(cache, tmp_path, capsys):
    from agekit.training.engine import train

    over = _overrides(cache) + ["trainer.max_epochs=1", "trainer.limit_train_batches=1"]
    res = train(RECIPE, tmp_path / "fresh", overrides=over, resume=True)
    lines = [x for x in capsys.readouterr().out.splitlines() if "no checkpoint" in x]
    assert len(lines) == 1 and str(tmp_path / "fresh" / "checkpoints" / "last.ckpt") in lines[0]
    assert res.card["steps"] == 1


def test_a_crash_while_saving_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    import agekit.training.resume as resume

    path = tmp_path / "checkpoints" / "last.ckpt"
    atomic_torch_save({"global_step": 1, "w": torch.arange(4.0)}, path)

    def full_disk(obj, f):  # half the bytes reach the file, then the disk is full
        f.write(b"\x80\x02half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(resume.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        atomic_torch_save({"global_step": 2, "w": torch.zeros(4)}, path)
    monkeypatch.undo()
    kept = torch.load(path, weights_only=True)
    assert kept["global_step"] == 1 and torch.equal(kept["w"], torch.arange(4.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary left behind
    # a process killed mid-save leaves its temporary; the next run removes it and keeps last.ckpt
    stale = path.parent / ".tmp-last.ckpt.abc123"
    stale.write_bytes(b"partial")
    assert remove_stale_temporaries(path.parent) == [stale]
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_checkpoints_every_n_steps_and_every_epoch():
    """12 batches an epoch, every 5 steps: at steps 5, 10, 15, 20, 25, 30, 35 and at each epoch's end (12, 24, 36);
    never on an epoch's last batch (the epoch's own checkpoint follows)."""
    from lightning.pytorch.trainer.states import TrainerFn

    saved: list[int] = []
    tr = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING), sanity_checking=False, global_step=0,
                         num_training_batches=12, save_checkpoint=lambda p, **kw: saved.append(tr.global_step))
    cb = LastCheckpoint("unused", every_n_steps=5)
    for _epoch in range(3):
        for i in range(12):
            tr.global_step += 1
            cb.on_train_batch_end(tr, None, None, None, i)
        cb.on_train_epoch_end(tr, None)
    assert saved == [5, 10, 12, 15, 20, 24, 25, 30, 35, 36]
    saved.clear()
    LastCheckpoint("unused", every_n_steps=0).on_train_batch_end(tr, None, None, None, 3)
    assert saved == []
    with pytest.raises(ValueError):
        LastCheckpoint("unused", every_n_steps=-1)


def test_loader_state_skips_the_batches_already_trained():
    """The loader's state names the epoch and the batches trained; a new loader then yields only the rest."""
    ds = CacheSplit(np.zeros((10, 2, 2, 3), np.uint8), {"age": np.arange(10, dtype=np.float32)}, np.arange(10))

    def loader() -> ResumableLoader:
        return ResumableLoader(ds, batch_size=3, sampler=EpochShuffleSampler(10, seed=4), collate_fn=lambda b: b)

    full = loader()
    full.sampler.set_epoch(2)
    batches = [b["index"].tolist() for b in full]
    first = loader()
    first.sampler.set_epoch(2)
    it = iter(first)
    next(it), next(it), next(it)  # three fetched (one only prefetched) ...
    first.note_trained_batch(), first.note_trained_batch()  # ... two trained
    state = first.state_dict()
    assert state == {"epoch": 2, "batches": 2, "samples": 6}
    again = loader()
    again.load_state_dict(state)
    again.sampler.set_epoch(2)
    rest = [b["index"].tolist() for b in again]
    assert rest == batches[2:]
    again.note_trained_batch()
    assert again.state_dict() == {"epoch": 2, "batches": 3, "samples": 9}  # counts on from the skipped batches
    again.sampler.set_epoch(3)  # the next epoch is whole again
    assert len(list(again)) == 4
    other = loader()
    other.load_state_dict({"epoch": 1, "batches": 2, "samples": 6})  # a state from an epoch that ended: nothing skipped
    other.sampler.set_epoch(2)
    assert [b["index"].tolist() for b in other] == batches


def test_rng_states_travel_in_the_checkpoint():
    """The global torch, numpy and Python generators are saved and, when training resumes, restored."""
    import random

    from agekit.training.resume import RngState

    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    state = RngState().state_dict()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    cb = RngState()
    cb.load_state_dict(torch.load(_roundtrip(state), weights_only=True))  # plain data: loads without pickles
    cb.on_train_start(SimpleNamespace(world_size=1), None)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]
    cb.load_state_dict(state)  # under DDP the file holds rank 0's generators: they are not restored
    torch.manual_seed(1)
    cb.on_train_start(SimpleNamespace(world_size=2), None)
    assert not torch.equal(torch.rand(3), expected[0])


def _roundtrip(obj) -> io.BytesIO:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf
