"""Frozen teachers for distillation: one checkpoint, or an ensemble of several.

An ensemble teacher (Hinton et al. 2015, Sec. 1: "an ensemble ... distilled into a single
model") averages its members: the age is the mean of each member's decoded age (its own
method's decoder, e.g. LRN Eq. 20 or C3AE's W2), and the distribution is the mean of the
members' probabilities on the finest bins among them (members on other bins, such as C3AE's
12 two-point bins next to 101-bin DLDL members, give their age but not their distribution). ``logits`` is the log of that
mean, so ``softmax(logits / tau)`` is the tau-softened ensemble distribution.
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from agekit.data.cache import PreparedCache
from agekit.methods.decode import load_method
from agekit.models.checkpoint import load_checkpoint
from agekit.outputs import ModelOutput, output_to_float
from agekit.preprocessing import network_input, normalize

__all__ = ["PrecomputedTeacher", "Renormalize", "TeacherEnsemble", "load_teacher", "mean_distribution",
           "method_for_loaded", "read_teacher_outputs", "save_teacher_outputs",
           "teacher_paths"]


def method_for_loaded(loaded: Any) -> Any:
    """The decoding method of a loaded checkpoint, built with its card's method options."""
    return load_method(loaded.method, loaded.name, loaded.card)


def teacher_paths(teacher: str | Path | Sequence[str | Path]) -> list[str]:
    """``teacher`` as a list of checkpoint paths: a list, or one string with paths joined by commas."""
    if isinstance(teacher, (str, Path)):
        items = [p for p in str(teacher).split(",")]
    else:
        items = [str(p) for p in teacher]
    paths = [p.strip() for p in items if p and p.strip()]
    if not paths:
        raise ValueError(f"teacher: no checkpoint path in {teacher!r}")
    return paths


class TeacherEnsemble(nn.Module):
    """Members' mean age and mean distribution (see the module docstring)."""

    def __init__(self, members: Sequence[nn.Module], methods: Sequence[Any]) -> None:
        super().__init__()
        if not members or len(members) != len(methods):
            raise ValueError("TeacherEnsemble needs one decoding method per member, and at least one member")
        self.members = nn.ModuleList(members)
        self.methods = list(methods)

    def forward(self, x: Tensor) -> ModelOutput:
        ages, dists = [], []
        for m, method in zip(self.members, self.methods):
            out = output_to_float(m(x))
            age = method.predict_age(out)[0]
            if age is None:
                raise ValueError(f"teacher member {type(m).__name__} gives no age")
            ages.append(age.reshape(-1).float())
            if out.logits is not None and out.bin_ages is not None:
                dists.append((out.bin_ages.float().reshape(-1), out.logits.float().softmax(1)))
        age = torch.stack(ages).mean(0)
        if not dists:
            return ModelOutput(age=age)
        grid, p = mean_distribution(dists)
        return ModelOutput(age=age, logits=p.clamp_min(1e-12).log(), probs=p, bin_ages=grid)


def mean_distribution(dists: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """(bins, probs) of an ensemble: the finest members' bins and the mean of the members on exactly those bins."""
    grid = max((b for b, _ in dists), key=lambda b: b.numel())
    return grid, torch.stack([q for b, q in dists if b.shape == grid.shape and torch.allclose(b, grid)]).mean(0)


def _norm_key(spec: Any) -> tuple:
    return (spec.color, float(spec.scale), tuple(spec.mean), tuple(spec.std), bool(spec.per_image_standardize))


class Renormalize(nn.Module):
    """A member network fed the student's input: undo the student's normalisation, apply the member's.

    C3AE's checkpoints take BGR, AgeNet's RGB, on the same crops; a teacher member must see
    its own input format. A per-image-standardised student input cannot be undone (refused).
    """

    def __init__(self, net: nn.Module, student_spec: Any, member_spec: Any) -> None:
        super().__init__()
        if student_spec.per_image_standardize:
            raise ValueError("a per-image-standardised student input cannot be converted for a teacher on "
                             "another normalisation")
        self.net = net
        self.student_spec, self.member_spec = student_spec, member_spec

    def forward(self, x: Tensor) -> Any:
        s = self.student_spec
        mean = torch.tensor(s.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
        std = torch.tensor(s.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
        raw = (x * std + mean) / s.scale  # 0..255 in the student's channel order
        return self.net(normalize(raw, self.member_spec, input_color=s.color))


def read_teacher_outputs(path: str | Path) -> dict[str, Any]:
    """The arrays of a teacher output file (``.npz``, never unpickled), checked before use.

    ``age`` (N,); optionally ``log_probs`` (N, K) with ``bin_ages`` (K,), both or neither, and
    ``gender_female`` (N,), the teacher's P(female) in [0, 1], and ``features`` (N, D), a
    representation of each face for feature distillation; real numbers (float or integer),
    every value finite. Returned as float32. A bad file is one line naming the file and the array.
    """

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such teacher output file")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array")
            names = set(z.files)
            raw = {k: z[k] for k in ("age", "log_probs", "bin_ages", "gender_female", "features") if k in names}
    except AttributeError:  # np.load gave a plain array: no context manager
        raise ValueError(f"{path}: not a teacher output file (a single .npy array, not an .npz archive)") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        msg = " ".join(str(e).split())
        raise ValueError(f"{path}: not a teacher output file ({msg})") from None
    if "age" not in raw:
        raise ValueError(f"{path}: no 'age' array (written by `agekit teacher-outputs`)")
    if ("log_probs" in raw) != ("bin_ages" in raw):
        raise ValueError(f"{path}: 'log_probs' and 'bin_ages' go together; the file has only one of them")
    want = {"age": 1, "log_probs": 2, "bin_ages": 1, "gender_female": 1, "features": 2}
    out: dict[str, Any] = {}
    for k, a in raw.items():
        if a.dtype.kind not in "fiu":
            raise ValueError(f"{path}: array {k!r} has dtype {a.dtype}, not a real number type")
        if a.ndim != want[k]:
            raise ValueError(f"{path}: array {k!r} has shape {a.shape}, expected {want[k]} dimension(s)")
        if not np.isfinite(a).all():
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            raise ValueError(f"{path}: array {k!r} holds {bad} non-finite value(s) (NaN or inf) of {a.size}")
        out[k] = np.ascontiguousarray(a, dtype=np.float32)
    if "features" in out and (len(out["features"]) != len(out["age"]) or out["features"].shape[1] == 0):
        raise ValueError(f"{path}: array 'features' has shape {out['features'].shape}, expected "
                         f"({len(out['age'])}, D) from 'age'")
    if "gender_female" in out:
        g = out["gender_female"]
        lo, hi = (float(g.min()), float(g.max())) if len(g) else (0.0, 0.0)
        if len(g) != len(out["age"]) or lo < 0.0 or hi > 1.0:
            raise ValueError(f"{path}: array 'gender_female' must hold one probability in [0, 1] per row of 'age' "
                             f"({len(out['age'])}); it has {len(g)} values in [{lo:g}, {hi:g}]")
    if "log_probs" in out:
        n, bins = out["log_probs"].shape
        if n != len(out["age"]) or bins != len(out["bin_ages"]) or bins == 0:
            raise ValueError(f"{path}: array 'log_probs' has shape {out['log_probs'].shape}, expected "
                             f"({len(out['age'])}, {len(out['bin_ages'])}) from 'age' and 'bin_ages'")
    return out


class PrecomputedTeacher(nn.Module):
    """A teacher's outputs computed once per cache row (``.npz`` files), looked up by the batch's row ``index``.

    Each file holds ``age`` (N,) - the teacher's decoded age per cache row - and optionally
    ``log_probs`` (N, K) with ``bin_ages`` (K,), the log of its age distribution (written by
    :func:`save_teacher_outputs` / ``agekit teacher-outputs``: flip-averaged, no augmentation). Several files form an ensemble as
    in :class:`TeacherEnsemble`: mean age, mean distribution over the members on the finest bins.
    Distillation then costs no teacher forward pass; the target is the teacher's answer for the
    unaugmented face (as LRN's refinery uses the previous generation's predictions as labels)
    rather than for the augmented batch.
    """

    def __init__(self, files: Sequence[str | Path]) -> None:
        super().__init__()

        ages, dists, females, feats = [], [], [], []
        for f in files:
            z = read_teacher_outputs(f)
            ages.append(torch.from_numpy(z["age"]))
            if "log_probs" in z:
                dists.append((torch.from_numpy(z["bin_ages"]), torch.from_numpy(z["log_probs"]).softmax(1)))
            if "gender_female" in z:
                females.append(torch.from_numpy(z["gender_female"]))
            if "features" in z:
                feats.append(torch.from_numpy(z["features"]))
        if len(feats) > 1:
            raise ValueError("teacher outputs: only one member may give features (they are matched, not averaged)")
        if len({len(a) for a in ages}) != 1:
            raise ValueError(f"teacher output files {list(map(str, files))} cover different numbers of rows")
        self.register_buffer("age", torch.stack(ages).mean(0), persistent=False)
        grid, p = mean_distribution(dists) if dists else (None, None)
        self.register_buffer("probs", p, persistent=False)
        self.register_buffer("bin_ages", grid, persistent=False)
        # gender: the mean P(female) of the members that give one
        self.register_buffer("female", torch.stack(females).mean(0) if females else None, persistent=False)
        self.register_buffer("features", feats[0] if feats else None, persistent=False)

    def forward(self, index: Tensor) -> ModelOutput:
        """The teacher's output for the cache rows ``index``."""
        i = index.to(self.age.device).long()
        if i.numel() and int(i.max()) >= len(self.age):
            raise IndexError(f"row {int(i.max())} beyond the {len(self.age)} rows of the teacher outputs")
        gender = None
        if self.female is not None:
            f = self.female[i]
            gender = torch.stack([1.0 - f, f], 1).clamp_min(1e-6).log()
        feats = self.features[i] if self.features is not None else None
        if self.probs is None:
            return ModelOutput(age=self.age[i], gender_logits=gender, features=feats)
        p = self.probs[i]
        return ModelOutput(age=self.age[i], logits=p.clamp_min(1e-12).log(), probs=p, bin_ages=self.bin_ages,
                           gender_logits=gender, features=feats)


def load_teacher(teacher: str | Path | Sequence[str | Path], spec: Any = None) -> nn.Module:
    """A frozen teacher in eval mode: the network of one checkpoint, or a :class:`TeacherEnsemble` of several.

    Paths ending in ``.npz`` are precomputed outputs (:class:`PrecomputedTeacher`).
    ``spec`` (the student's :class:`~agekit.preprocessing.PreprocessSpec`): every member must take
    the same crops (view); a member with another normalisation or channel order is fed through
    :class:`Renormalize`.
    """
    paths = teacher_paths(teacher)
    npz = [p for p in paths if p.endswith(".npz")]
    if npz:
        if len(npz) != len(paths):
            raise ValueError("teacher: give checkpoints or precomputed output files (.npz), not both")
        return PrecomputedTeacher(npz).eval()
    loaded = [load_checkpoint(p) for p in paths]
    nets = []
    for p, t in zip(paths, loaded):
        if spec is not None and t.preprocess.view_key != spec.view_key:
            raise ValueError(f"teacher {p} takes crops {t.preprocess.view_key!r}, the student {spec.view_key!r}")
        for q in t.model.parameters():
            q.requires_grad_(False)
        same = spec is None or _norm_key(t.preprocess) == _norm_key(spec)
        nets.append(t.model if same else Renormalize(t.model, spec, t.preprocess))
    if len(loaded) == 1:
        return nets[0].eval()
    return TeacherEnsemble(nets, [method_for_loaded(t) for t in loaded]).eval()


def save_teacher_outputs(ckpt: str | Path, cache: Any, out: str | Path, *, device: str = "cpu", flip: bool = True,
                         batch_size: int = 512, progress: bool = False) -> Path:
    """A checkpoint's outputs for every row of a prepared cache, as a :class:`PrecomputedTeacher` file.

    Writes ``age`` (N,) - the decoded age with the checkpoint's own method (averaged with the
    mirror image when ``flip``) - and, for networks with an age distribution, ``log_probs`` (N, K,
    float16: log of the (flip-averaged) distribution) and ``bin_ages`` (K,). No augmentation.
    """

    c = cache if isinstance(cache, PreparedCache) else PreparedCache(cache)
    ld = load_checkpoint(ckpt, map_location="cpu")
    model = ld.model.to(device).eval()
    method = method_for_loaded(ld)
    view = c.view(ld.preprocess.view_key)
    logp: list[np.ndarray] = []
    ages: list[np.ndarray] = []
    bins = None
    starts = range(0, len(view), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"teacher outputs {Path(ckpt).name}", unit="batch")
    with torch.no_grad():
        for s in starts:
            x = network_input(torch.from_numpy(np.array(view[s:s + batch_size])).to(device), ld.preprocess)
            outs = [output_to_float(model(x))] + ([output_to_float(model(x.flip(-1)))] if flip else [])
            ages.append(torch.stack([method.predict_age(o)[0].reshape(-1) for o in outs]).mean(0).cpu().numpy())
            if outs[0].logits is not None or outs[0].probs is not None:
                p = torch.stack([o.logits.softmax(1) if o.logits is not None else o.probs for o in outs]).mean(0)
                logp.append(p.clamp_min(1e-12).log().half().cpu().numpy())
                bins = outs[0].bin_ages.float().cpu().numpy() if outs[0].bin_ages is not None else None
    arrays: dict[str, Any] = {"age": np.concatenate(ages).astype(np.float32), "checkpoint": np.array(str(ckpt)),
                              "flip": np.array(bool(flip))}
    if logp and bins is not None:
        arrays["log_probs"], arrays["bin_ages"] = np.concatenate(logp), bins
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:  # written under a temporary name, then renamed: a crash never leaves a half-written file
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
