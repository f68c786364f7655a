"""A teacher on dlib's face-recognition descriptors (experiments/face_embeddings.py): gender and age heads fitted on the
training faces of every dataset given, written as precomputed teacher outputs for distillation.

The heads are small: gender a logistic regression, age a 128-256-101 MLP trained as DLDL (KL to a Gaussian label
distribution, sigma 2, plus the L1 of its expectation). A head's answer for a training face comes from the heads fitted
on the other folds (out-of-fold, K folds), so a student distilled from them learns what the teacher makes of a face it
has not seen, never its labels echoed back; validation and test faces get the heads fitted on all training faces.
The weight decay of each head is chosen on the validation faces. ``--compare CKPT`` reports the checkpoint's gender
accuracy beside the teacher's and that of the two averaged (an ensemble no shipped tier can afford: the descriptor
network takes ~75 ms a face). Optionally a shipped or trained agekit checkpoint's
own flip-averaged outputs (``--with NAME=CKPT``) are stacked beside the descriptor, so the teacher combines both.

    python experiments/embedding_teacher.py --source utkface=caches/utkface:utkface:runs/embeddings/utkface \
        --source allagefaces=caches/allagefaces:allagefaces_fixed:runs/embeddings/allagefaces \
        --out runs/embedding_teacher --json experiments/results/embedding_teacher.json

writes OUT/DATASET.npz for each source (``age``, ``log_probs``, ``bin_ages``, ``gender_female`` and ``features``,
the descriptor standardised on the training faces; one row per cache row: a ``data.sources.NAME.teacher`` file) and
the validation and test figures to the JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

BINS = torch.arange(101, dtype=torch.float32)


def _splits(cache: str, protocol: str) -> dict[str, np.ndarray]:
    from agekit.data.cache import PreparedCache
    from agekit.data.protocols import make_splits

    c = PreparedCache(cache)
    return {k: np.asarray(v, dtype=np.int64) for k, v in make_splits(protocol, c.meta).items()}


def _age_head(dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, len(BINS)))


def fit_age(x: torch.Tensor, age: torch.Tensor, wd: float, epochs: int = 60, seed: int = 0) -> nn.Module:
    """DLDL head: KL to N(age, 2) over 0..100 plus the L1 of the expectation (AdamW, cosine, batch 256)."""
    torch.manual_seed(seed)
    net = _age_head(x.shape[1])
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=wd)
    steps = epochs * ((len(x) + 255) // 256)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    target = torch.softmax(-((BINS[None] - age[:, None]) ** 2) / (2 * 2.0 ** 2), 1)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(256):
            logp = net(x[idx]).log_softmax(1)
            loss = nn.functional.kl_div(logp, target[idx], reduction="batchmean") \
                + (logp.exp() @ BINS - age[idx]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def fit_gender(x: torch.Tensor, female: torch.Tensor, wd: float) -> nn.Module:
    """Logistic regression, L2 ``wd`` (L-BFGS)."""
    net = nn.Linear(x.shape[1], 1)
    opt = torch.optim.LBFGS(net.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(net(x)[:, 0], female) + wd * net.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return net.eval()


@torch.no_grad()
def age_out(net: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    logp = net(x).log_softmax(1)
    return (logp.exp() @ BINS).numpy(), logp.numpy()


@torch.no_grad()
def gender_out(net: nn.Module, x: torch.Tensor) -> np.ndarray:
    return torch.sigmoid(net(x)[:, 0]).numpy()


def _checkpoint_features(ckpt: str, cache: str) -> np.ndarray:
    """A checkpoint's flip-averaged decoded age (/ 100) and logit of P(female), per cache row."""
    from agekit.data.cache import PreparedCache
    from agekit.evaluation.evaluate import predict_split
    from agekit.models.checkpoint import load_checkpoint
    from agekit.training.teacher import method_for_loaded

    ld = load_checkpoint(ckpt, map_location="cpu")
    view = PreparedCache(cache).view(ld.preprocess.view_key)
    p = predict_split(ld, method_for_loaded(ld), view, np.arange(len(view)), flip=True)
    pf = np.clip(p["gender_female"].reshape(-1), 1e-4, 1 - 1e-4)
    return np.stack([p["age"].reshape(-1) / 100.0, np.log(pf / (1 - pf))], 1).astype(np.float32)


def metrics(age_pred: np.ndarray, female: np.ndarray, age: np.ndarray, gender: np.ndarray) -> dict[str, float]:
    known = gender >= 0
    return {"n": int(len(age)), "mae": round(float(np.abs(age_pred - age).mean()), 4),
            "gender_acc": round(float(((female[known] > 0.5).astype(int) == gender[known]).mean()), 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", action="append", required=True,
                   help="NAME=CACHE:PROTOCOL:EMBEDDINGS_DIR (repeatable)")
    p.add_argument("--with", dest="with_", action="append", default=[],
                   help="CKPT: stack this checkpoint's flip-averaged age and gender logit beside the descriptor")
    p.add_argument("--compare", default=None,
                   help="CKPT: report its flip-averaged gender accuracy on the validation and test faces beside the "
                        "teacher's and that of the two P(female) averaged (what the descriptor adds to it)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--age-wd", default="1e-4,1e-2,1e-1")
    p.add_argument("--gender-wd", default="1e-5,1e-4,1e-3")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--out", required=True)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.time()
    data = {}
    for spec in a.source:
        name, rest = spec.split("=", 1)
        cache, protocol, emb_dir = rest.split(":")
        from agekit.data.cache import PreparedCache

        meta = PreparedCache(cache).meta
        x = np.load(Path(emb_dir) / "embeddings.npy")
        feats = [x] + [_checkpoint_features(c, cache) for c in a.with_]
        x = np.concatenate(feats, 1)
        data[name] = {"cache": cache, "x": x, "emb_dir": emb_dir, "age": np.asarray(meta["age"], np.float32),
                      "gender": np.asarray(meta["gender"], np.int64), "splits": _splits(cache, protocol)}
        print(f"{name}: {x.shape}, {int(np.isnan(x[:, 0]).sum())} rows without a descriptor", file=sys.stderr)

    def rows(split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[str, np.ndarray]]]:
        xs, ages, genders, where = [], [], [], []
        for name, d in data.items():
            r = d["splits"][split]
            r = r[~np.isnan(d["x"][r, 0])]
            xs.append(d["x"][r])
            ages.append(d["age"][r])
            genders.append(d["gender"][r])
            where.append((name, r))
        return (torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ages)),
                torch.from_numpy(np.concatenate(genders)), where)

    xtr, atr, gtr, wtr = rows("train")
    xva, ava, gva, wva = rows("val")
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xva = (xtr - mu) / sd, (xva - mu) / sd
    gk = gtr >= 0
    ak = ~torch.isnan(atr)
    choice: dict[str, dict[str, float]] = {"age": {}, "gender": {}}
    for wd in map(float, a.age_wd.split(",")):
        pred, _ = age_out(fit_age(xtr[ak], atr[ak], wd, a.epochs), xva)
        choice["age"][str(wd)] = round(float(np.abs(pred - ava.numpy()).mean()), 4)
    for wd in map(float, a.gender_wd.split(",")):
        pf = gender_out(fit_gender(xtr[gk], gtr[gk].float(), wd), xva)
        choice["gender"][str(wd)] = round(float(((pf > 0.5) == gva.numpy()).mean()), 4)
    age_wd = float(min(choice["age"], key=choice["age"].get))
    gender_wd = float(max(choice["gender"], key=choice["gender"].get))
    print(f"validation: {choice}; chosen age wd {age_wd}, gender wd {gender_wd}", file=sys.stderr)

    desc_train = np.concatenate([np.load(Path(d["emb_dir"]) / "embeddings.npy")[d["splits"]["train"]]
                                 for d in data.values()])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, np.ndarray] = {n: {"age": np.full(len(d["x"]), np.nan, np.float32),
                                      "log_probs": np.zeros((len(d["x"]), len(BINS)), np.float32),
                                      "gender_female": np.full(len(d["x"]), np.nan, np.float32)}
                                  for n, d in data.items()}

    def put(where: list[tuple[str, np.ndarray]], age: np.ndarray, logp: np.ndarray, pf: np.ndarray) -> None:
        i = 0
        for name, r in where:
            res[name]["age"][r], res[name]["log_probs"][r] = age[i:i + len(r)], logp[i:i + len(r)]
            res[name]["gender_female"][r] = pf[i:i + len(r)]
            i += len(r)

    # out-of-fold answers for the training faces
    fold = torch.from_numpy(np.random.default_rng(0).integers(0, a.folds, len(xtr)))
    age_oof, logp_oof, pf_oof = np.zeros(len(xtr), np.float32), np.zeros((len(xtr), len(BINS)), np.float32), \
        np.zeros(len(xtr), np.float32)
    for k in range(a.folds):
        fit, held = fold != k, (fold == k).numpy()
        an = fit_age(xtr[fit & ak], atr[fit & ak], age_wd, a.epochs, seed=k)
        age_oof[held], logp_oof[held] = age_out(an, xtr[held])
        pf_oof[held] = gender_out(fit_gender(xtr[fit & gk], gtr[fit & gk].float(), gender_wd), xtr[held])
        print(f"fold {k + 1}/{a.folds} done ({time.time() - t0:.0f} s)", file=sys.stderr)
    put(wtr, age_oof, logp_oof, pf_oof)
    age_net = fit_age(xtr[ak], atr[ak], age_wd, a.epochs)
    gender_net = fit_gender(xtr[gk], gtr[gk].float(), gender_wd)
    report: dict[str, object] = {
        "command": "python experiments/embedding_teacher.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "features": "dlib_face_recognition_resnet_model_v1 descriptor (128)"
                    + "".join(f" + {c} (flip-averaged age, gender logit)" for c in a.with_),
        "validation_choice": choice, "age_wd": age_wd, "gender_wd": gender_wd, "folds": a.folds, "results": {}}
    for split in ("val", "test"):
        xs, _, _, where = rows(split)
        xs = (xs - mu) / sd
        age, logp = age_out(age_net, xs)
        put(where, age, logp, gender_out(gender_net, xs))
    for name, d in data.items():
        r = res[name]
        report["results"][name] = {
            split: metrics(r["age"][d["splits"][split]], r["gender_female"][d["splits"][split]],
                           d["age"][d["splits"][split]], d["gender"][d["splits"][split]])
            for split in ("train", "val", "test")}
        missing = np.isnan(r["age"])  # rows without a descriptor (or in no split): the training label stands in
        r["age"][missing] = np.nan_to_num(d["age"][missing], nan=30.0)
        r["gender_female"][missing] = np.where(d["gender"][missing] == 1, 1.0, 0.0)
        r["log_probs"][missing] = np.log(np.full(len(BINS), 1.0 / len(BINS)))
        desc = np.load(Path(d["emb_dir"]) / "embeddings.npy")  # the descriptor itself, standardised on the train faces
        dmu, dsd = np.nanmean(desc_train, 0), np.nanstd(desc_train, 0) + 1e-6
        feats = np.nan_to_num((desc - dmu) / dsd).astype(np.float16)
        np.savez(out / f"{name}.npz", age=r["age"], log_probs=r["log_probs"].astype(np.float16),
                 bin_ages=BINS.numpy(), gender_female=r["gender_female"], features=feats)
        print(f"{name}: {report['results'][name]}", file=sys.stderr)
    if a.compare:
        report["compare"] = {"checkpoint": a.compare}
        for name, d in data.items():
            pf_ckpt = torch.sigmoid(torch.from_numpy(_checkpoint_features(a.compare, d["cache"])[:, 1])).numpy()
            report["compare"][name] = {}
            for split in ("val", "test"):
                r = d["splits"][split]
                g = d["gender"][r]
                k = g >= 0
                both = (pf_ckpt[r] + res[name]["gender_female"][r]) / 2
                report["compare"][name][split] = {
                    k2: round(float(((v[k] > 0.5).astype(int) == g[k]).mean()), 4)
                    for k2, v in (("checkpoint", pf_ckpt[r]), ("teacher", res[name]["gender_female"][r]),
                                  ("average", both))}
            print(f"{name}: gender accuracy {report['compare'][name]}", file=sys.stderr)
    report["seconds"] = round(time.time() - t0, 1)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
