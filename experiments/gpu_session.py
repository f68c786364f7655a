"""One timed GPU session: training throughput, the LRN teachers, the paper networks and the distilled students.

Everything runs through ``agekit train`` (Lightning, bf16 autocast + channels-last) as parallel
processes on one GPU, each with a wall-time guard (``trainer.max_time``), inside ``--budget``
seconds; then every ``final.safetensors`` is evaluated on the validation and test splits (flip-averaged)
and the results are packed for the trip back.

1. ``benchmarks/train_throughput.py --device cuda``: SepHSR(30,10) training images/s, the step loop at
   batch 50 / 256 / 1024 and the Lightning engine at batch 50 (the GPU alone, nothing else running).
2. Phase A: the teachers - LRN ResNet-18 and ResNet-10-Tiny (small stem, 64 px), four refinery
   generations each (LRN generations t = 1..4), and agekit's AgeNet + gender head - next to the
   papers' single-crop networks (SSR-Net, C3AE plain, HSR(30,10), SepHSR(60,10), SepHSR(90,30),
   MobileNetV1(0.25)) with their recipes.
3. Phase B, once the teachers are done (or at their deadline, with the last finished generation):
   each student trained alone and distilled, with the same epochs side by side - SepHSR(30,10)
   from the LRN ResNet-18 teacher (HSR's future work), and AgeNet-MT and C3AE-wide from the
   ensemble teacher (LRN ResNet-18 + LRN ResNet-10-Tiny + AgeNet + gender).
4. Evaluation of every run (val and test, flip), teacher logits for every row (for distillation
   without the teacher's forward passes), one ``results.json``.

Epoch counts come from the measured engine throughput and an assumed slow-down for the
processes sharing the GPU (``--contention``); every figure written says how many epochs a run
had. Usage, on the GPU machine from the repository root:

    python experiments/gpu_session.py --packed PACKED.npz --work /tmp/gpu --out $OUT [--budget 560]

(``agekit pack-cache caches/utkface PACKED.npz --views single_64_m0.1 --codec webp`` makes the
packed cache: 39 MB for UTKFace.)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

T0 = time.time()
LOG: list[str] = []
EXTRA_SETS: list[str] = []  # --set: overrides for every run


def log(msg: str, out: Path | None = None) -> None:
    line = f"[{time.time() - T0:7.1f}s] {msg}"
    print(line, flush=True)
    LOG.append(line)
    if out is not None:
        (out / "session.log").write_text("\n".join(LOG) + "\n")


def hms(seconds: float) -> str:
    s = max(1, int(seconds))
    return f"00:{s // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}"


class Job:
    def __init__(self, name: str, recipe: str, run_dir: Path, cache: Path, sets: list[str]):
        self.name, self.recipe, self.dir = name, recipe, run_dir
        self.cmd = [sys.executable, "-m", "agekit.cli", "train", "--recipe", recipe, "--data", str(cache),
                    "--out", str(run_dir)]
        for s in ["trainer.progress_bar=false", "trainer.log_every_n_steps=50", *sets, *EXTRA_SETS]:
            self.cmd += ["--set", s]
        self.proc: subprocess.Popen | None = None
        self.t_start = self.t_end = None

    def start(self) -> Job:
        self.dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.logf = open(self.dir / "train.log", "w")
        self.logf.write(" ".join(self.cmd) + "\n")
        self.logf.flush()
        self.proc = subprocess.Popen(self.cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        self.t_start = time.time()
        return self

    def poll(self) -> int | None:
        rc = self.proc.poll() if self.proc else None
        if rc is not None and self.t_end is None:
            self.t_end = time.time()
        return rc

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.t_end = time.time()

    def summary(self) -> dict:
        return {"name": self.name, "recipe": self.recipe, "cmd": " ".join(self.cmd), "rc": self.poll(),
                "seconds": round((self.t_end or time.time()) - (self.t_start or time.time()), 1)}


def finals(run_dir: Path) -> list[Path]:
    """final.safetensors files of a run (one, or one per generation gen1..genN in order)."""
    gens = sorted(run_dir.glob("gen*/final.safetensors"), key=lambda p: int(p.parent.name[3:]))
    return gens or ([run_dir / "final.safetensors"] if (run_dir / "final.safetensors").is_file() else [])


def probe(out: Path, cache: Path, device: str = "cuda") -> dict:
    """benchmarks/train_throughput.py on the GPU (loop at 50/256/1024, engine at 50), alone."""
    res: dict = {}
    cmd = [sys.executable, "benchmarks/train_throughput.py", "--device", device, "--batch", "50,256,1024", "--steps", "40",
           "--warmup", "10", "--threads", "4", "--json", str(cache.parent / "throughput_loop.json")]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
        log("throughput loop:\n" + p.stdout[-3000:] + p.stderr[-1500:], out)
        res["loop"] = json.loads((cache.parent / "throughput_loop.json").read_text())
    except Exception as e:  # the session goes on without it
        log(f"throughput loop failed: {e!r}", out)
    cmd = [sys.executable, "benchmarks/train_throughput.py", "--device", device, "--batch", "50", "--steps", "150",
           "--warmup", "10", "--threads", "4", "--engine", "--variants", "best", "--json",
           str(cache.parent / "throughput_engine.json")]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        log("throughput engine:\n" + p.stdout[-3000:] + p.stderr[-1500:], out)
        res["engine"] = json.loads((cache.parent / "throughput_engine.json").read_text())
    except Exception as e:
        log(f"throughput engine failed: {e!r}", out)
    return res


def engine_img_s(res: dict, default: float = 4000.0) -> float:
    rows = (res.get("engine") or {}).get("rows") or []
    best = [r.get("engine_img_s", 0) for r in rows if r.get("channels_last") and r.get("bf16")]
    return float(best[0]) if best and best[0] > 0 else default


def clamp(x: float, lo: int, hi: int) -> int:
    return int(max(lo, min(hi, x)))


def evaluate_all(runs: Path, cache: Path, out: Path, deadline: float, results: dict) -> dict:
    import torch

    from agekit.evaluation.evaluate import evaluate

    reports = results.setdefault("eval", {})
    # the LRN generations first: their weights do not travel back (all but the last), so only this evaluates them
    for f in sorted(runs.rglob("final.safetensors"), key=lambda p: (not str(p.relative_to(runs)).startswith("lrn"), str(p))):
        if time.time() > deadline:
            log(f"evaluation: deadline, {f} and later not evaluated", out)
            break
        key = str(f.parent.relative_to(runs))
        try:
            r = {}
            for split in ("val", "test"):
                rep = evaluate(f, cache, split, flip=True, device="cuda" if torch.cuda.is_available() else "cpu")
                m = rep["metrics"]
                r[split] = {k: m.get(k) for k in ("mae", "ca", "gender_accuracy", "mae_by_decade", "mae_by_gender",
                                                  "mae_by_race") if k in m}
            card = json.loads((f.parent / "card.json").read_text()) if (f.parent / "card.json").is_file() else {}
            r["card"] = {k: card.get(k) for k in ("recipe", "epochs", "steps", "train_seconds", "train_images_per_s",
                                                  "val_metrics", "teacher", "complexity", "method_config")}
            reports[key] = r
            log(f"eval {key}: test MAE {r['test'].get('mae')}, CA(5) {(r['test'].get('ca') or {}).get('5')}, "
                f"epochs {card.get('epochs')}", out)
        except Exception as e:
            log(f"eval {key} failed: {e!r}", out)
            reports[key] = {"error": repr(e)}
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))  # as it goes: a kill loses nothing
    return reports


def teacher_logits(ckpts: dict[str, Path], cache: Path, dest: Path, device: str = "cuda",
                   deadline: float = float("inf")) -> None:
    """Per teacher, every cache row: flip-averaged age and log-distribution (agekit.training.teacher)."""
    from agekit.training.teacher import save_teacher_outputs

    for name, path in ckpts.items():
        if time.time() > deadline:
            log(f"teacher outputs: deadline, {name} and later left out")
            break
        try:
            save_teacher_outputs(path, cache, dest / f"{name}.npz", device=device, batch_size=1024)
            log(f"teacher outputs {name}: {path}")
        except Exception as e:
            log(f"teacher outputs {name} failed: {e!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packed", help="the packed cache (agekit pack-cache)")
    ap.add_argument("--pack-only", action="store_true", help="only stage and split the results of --work into --out")
    ap.add_argument("--work", default="/tmp/gpu")
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=560.0, help="seconds for the whole session")
    ap.add_argument("--contention", type=float, default=4.0, help="assumed slow-down of a run sharing the GPU")
    ap.add_argument("--max-parts-mb", type=float, default=56.0)
    ap.add_argument("--device", default="cuda", help="cuda; cpu for a dry run of the whole session")
    ap.add_argument("--set", action="append", default=[], help="recipe override for every run (dry runs: "
                    "trainer.limit_train_batches=2)")
    args = ap.parse_args()
    out, work = Path(args.out), Path(args.work)
    EXTRA_SETS.extend(args.set)
    out.mkdir(parents=True, exist_ok=True)
    if args.pack_only:
        if (out / "session.log").is_file():
            LOG.extend((out / "session.log").read_text().splitlines())
        pack(work, out, args.max_parts_mb)
        return 0
    work.mkdir(parents=True, exist_ok=True)
    end = T0 + args.budget
    cache = work / "cache"
    runs = work / "runs"
    import torch

    log(f"torch {torch.__version__}, cuda {torch.cuda.is_available()}, "
        f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-'}", out)
    from agekit.data.portable import unpack_cache

    c = unpack_cache(args.packed, cache)
    n_train = len(c.splits("utkface")["train"])
    log(f"unpacked {c}", out)

    results: dict = {"budget_s": args.budget, "contention": args.contention,
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    results["throughput"] = probe(out, cache, args.device) if args.device != "cpu" else {}
    R = engine_img_s(results["throughput"])  # SepHSR(30,10), batch 50, engine, GPU alone
    step_s = 50.0 / R  # the engine's per-step time for a compact network (overhead-bound)
    log(f"engine {R:.0f} img/s at batch 50 -> {step_s * 1e3:.1f} ms per step", out)

    def epoch_s(batch: int, factor: float = 1.0) -> float:
        return (n_train / batch) * step_s * factor * args.contention

    now = time.time()
    t_train_end = end - 90  # leave time to evaluate
    span = t_train_end - now
    t_b = now + 0.5 * span  # the SepHSR distillation pair starts with the LRN ResNet-18 generation finished by then
    jobs: dict[str, Job] = {}

    # ---- teachers: two LRN chains of four generations over the whole span; the teacher-ensemble members
    gen_budget = span / 4
    g_epochs = clamp(gen_budget / epoch_s(128, 1.5), 4, 30)
    ms = [max(1, round(g_epochs * 0.5)), max(2, round(g_epochs * 0.8))]
    for name, recipe in (("lrn18", "lrn_resnet18_64_g4_utkface"), ("lrn10t", "lrn_resnet10_tiny_64s_g4_utkface")):
        jobs[name] = Job(name, recipe, runs / name, cache,
                         [f"trainer.max_epochs={g_epochs}", f"scheduler.milestones=[{ms[0]},{ms[1]}]",
                          f"trainer.max_time={hms(gen_budget)}"]).start()
    log(f"LRN chains: 4 generations of {g_epochs} epochs (milestones {ms}), at most {gen_budget:.0f} s each", out)
    e_compact = clamp(span / epoch_s(64), 10, 60)
    for name, recipe in (("agenet_gender", "agenet_gender_utkface"), ("agenet_mt_alone", "agenet_mt_utkface"),
                         ("c3ae_wide_alone", "c3ae_wide_cosine_utkface")):
        jobs[name] = Job(name, recipe, runs / name, cache,
                         [f"trainer.max_epochs={e_compact}", f"trainer.max_time={hms(span)}"]).start()
        log(f"compact {name}: {e_compact} of the recipe's 60 epochs", out)

    # ---- paper networks on the margin-0.1 crops
    paper = [("ssrnet", "ssrnet_utkface", [], 90), ("c3ae_plain", "c3ae_plain_utkface", [], 160),
             ("hsr_30_10", "hsr_30_10_utkface", [], 160),
             ("sephsr_90_30", "sephsr_30_10_utkface", ["model.name=sephsr_90_30"], 160)]
    for name, recipe, extra, paper_epochs in paper:
        e = clamp(span / epoch_s(50), 10, paper_epochs)
        sets = ["preprocess.margin=0.1", "trainer.precision=bf16-mixed", "trainer.channels_last=true",
                f"trainer.max_epochs={e}", f"trainer.max_time={hms(span)}", *extra]
        if name == "ssrnet":  # x0.1 at 1/3 and 2/3 of the epochs (paper: 30 and 60 of 90)
            sets.append(f"scheduler.milestones=[{max(1, e // 3)},{max(2, 2 * e // 3)}]")
        jobs[name] = Job(name, recipe, runs / name, cache, sets).start()
        log(f"paper network {name}: {e} of the paper's {paper_epochs} epochs", out)

    # ---- SepHSR(30,10) alone and distilled from the LRN ResNet-18 teacher, same epochs, side by side
    while time.time() < t_b and jobs["lrn18"].poll() is None and len(finals(runs / "lrn18")) < 2:
        time.sleep(2)
    t18 = finals(runs / "lrn18")
    log(f"LRN ResNet-18 generations finished: {[str(p) for p in t18]}", out)
    if t18:
        now = time.time()
        span_b = t_train_end - now
        e = clamp(span_b / epoch_s(50, 1.3), 5, 160)
        common = ["preprocess.margin=0.1", "trainer.precision=bf16-mixed", "trainer.channels_last=true",
                  f"trainer.max_epochs={e}", f"trainer.max_time={hms(span_b)}"]
        for name, recipe, sets in (("sephsr_alone", "sephsr_30_10_utkface", common),
                                   ("sephsr_kd_lrn18", "sephsr_30_10_distill_lrn_utkface",
                                    common + [f"teacher={t18[-1]}"])):
            jobs[name] = Job(name, recipe, runs / name, cache, sets).start()
            log(f"student {name}: {e} epochs ({recipe}), teacher {t18[-1]}", out)
    results["kd_teacher"] = str(t18[-1]) if t18 else None

    # ---- wait for everything (the max_time guards end them; kill what overruns)
    while time.time() < t_train_end + 20 and any(j.poll() is None for j in jobs.values()):
        time.sleep(2)
    for j in jobs.values():
        if j.poll() is None:
            log(f"killing {j.name} (over its time)", out)
            j.kill()
    results["jobs"] = {k: j.summary() for k, j in jobs.items()}
    for k, j in jobs.items():
        tail = (j.dir / "train.log").read_text(errors="replace")[-600:] if (j.dir / "train.log").is_file() else ""
        log(f"job {k}: {results['jobs'][k]}\n    ...{tail[-400:]}", out)

    # ---- evaluate, teacher logits, pack
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    evaluate_all(runs, cache, out, end - 35, results)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    try:
        if time.time() < end - 20:
            tl = {k: finals(runs / k)[-1] for k in ("lrn18", "lrn10t", "agenet_gender", "agenet_mt_alone",
                                                     "c3ae_wide_alone") if finals(runs / k)}
            teacher_logits(tl, cache, work / "teacher_logits", args.device, end - 10)
    except Exception as e:
        log(f"teacher logits failed: {e!r}", out)
    log("session done; pack with --pack-only", out)
    return 0


def pack(work: Path, out: Path, max_mb: float) -> None:
    """Stage what comes back (run folders without the Lightning checkpoints; of a generation chain only
    the last generation's weights, the LRN ResNet-18 ones as bfloat16; teacher outputs) and split it
    into 15 MB parts under ``out``."""
    runs, stage = work / "runs", work / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    last_gens = {p.resolve() for k in ("lrn18", "lrn10t") for p in finals(runs / k)[-1:]}
    for f in runs.rglob("*"):
        if not f.is_file() or f.suffix not in (".pt", ".json", ".yaml", ".csv", ".log"):
            continue
        if f.suffix == ".pt" and f.parent.name.startswith("gen") and f.resolve() not in last_gens:
            continue
        if f.suffix == ".pt" and f.stat().st_size > 12e6:
            continue
        dst = stage / "runs" / f.relative_to(runs)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst)
    if (work / "teacher_logits").is_dir():
        shutil.copytree(work / "teacher_logits", stage / "teacher_logits")
    t18 = finals(runs / "lrn18")
    if t18:
        try:
            import torch

            from agekit.models.checkpoint import FORMAT, read_checkpoint

            ck = {**read_checkpoint(t18[-1]), "format": FORMAT}  # data only; saved below as an old-style .pt
            ck["state_dict"] = {k: v.bfloat16() if v.is_floating_point() else v for k, v in ck["state_dict"].items()}
            ck.setdefault("card", {})["stored_as"] = f"bfloat16 copy of {t18[-1]}"
            torch.save(ck, stage / "lrn18_last_final_bf16.pt")
        except Exception as e:
            log(f"lrn18 copy failed: {e!r}", out)
    total = sum(f.stat().st_size for f in stage.rglob("*") if f.is_file())
    if total > max_mb * 1e6 and (stage / "lrn18_last_final_bf16.pt").is_file():
        total -= (stage / "lrn18_last_final_bf16.pt").stat().st_size
        (stage / "lrn18_last_final_bf16.pt").unlink()
        log("LRN ResNet-18 weights left out (size)", out)
    subprocess.run(f"tar -C {stage} -czf - . | split -b 15000000 - {out}/stage.tgz.part-", shell=True, check=False)
    log(f"packed {total / 1e6:.1f} MB", out)


if __name__ == "__main__":
    sys.exit(main())
