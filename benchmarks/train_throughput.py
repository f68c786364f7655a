"""Training throughput (images/s) of SepHSR(30,10) on the CPU (or a GPU), with and without channels-last / bf16.

Each variant runs the whole training data path of ``agekit train``: a uint8 batch, HSR
augmentation (kornia, on the batch), normalisation, forward, the HSR L1 loss (float32,
outside autocast), backward and an SGD step. ``--engine`` also times the same recipe through
the Lightning engine (``agekit.training.train``) on a synthetic cache.

glibc's allocator returns freed memory to the OS after every step unless told not to; the
script re-executes itself with MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000
MALLOC_TOP_PAD_=1000000000 (``--no-malloc-env`` keeps the environment as it is).

    python benchmarks/train_throughput.py [--batch 50] [--steps 30] [--threads 2] [--engine] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from benchutil import MALLOC_ENV, with_malloc_env


def loop_throughput(model_name: str, batch: int, steps: int, warmup: int, channels_last: bool, bf16: bool,
                    augment: str = "hsr", device: str = "cpu", pad_channels: int = 0, compile: bool = False,
                    profile: dict | None = None) -> float:
    """Images/s of the training step loop (see module doc) for one setting; ``profile``: a dict that receives the
    torch profiler's self CPU time per op over the timed steps (ms per step) and, under ``"_total"``, their sum."""
    import torch

    from agekit import create_model
    from agekit.methods import default_method_for, get_method
    from agekit.outputs import output_to_float
    from agekit.preprocessing import network_input
    from agekit.training.augment import build_augment
    from agekit.training.module import keep_fp32, no_autocast

    torch.manual_seed(0)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model = create_model(model_name, **({"pad_channels": pad_channels} if pad_channels else {})).train().to(dev)
    spec = model.preprocess
    if bf16:
        keep_fp32(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compile else model  # inductor: fuses BN + ReLU forward and backward
    method = get_method(default_method_for(model_name))
    aug = build_augment(augment, spec.size)
    opt = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9, weight_decay=1e-4)
    shape = (batch, spec.num_crops, spec.size, spec.size, 3) if spec.num_crops > 1 else (batch, spec.size, spec.size, 3)
    data = [torch.randint(0, 256, shape, dtype=torch.uint8) for _ in range(4)]  # uint8 batches cross to the device
    ages = (torch.rand(batch) * 90).to(dev)
    t0 = 0.0
    prof = None
    for i in range(warmup + steps):
        if i == warmup:
            sync()
            if profile is not None:
                from torch.profiler import ProfilerActivity
                from torch.profiler import profile as torch_profile

                prof = torch_profile(activities=[ProfilerActivity.CPU])
                prof.__enter__()
            t0 = time.perf_counter()
        x = network_input(data[i % 4].to(dev, non_blocking=True), spec, aug, channels_last_memory=channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = output_to_float(net(x))
        with no_autocast(x.device):
            loss, _ = method.loss(out, {"age": ages})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    seconds = time.perf_counter() - t0
    if prof is not None:
        prof.__exit__(None, None, None)
        for e in prof.key_averages():
            if e.self_cpu_time_total > 0:
                profile[e.key] = e.self_cpu_time_total / 1e3 / steps
        profile["_total"] = sum(v for k, v in profile.items() if k != "_total")
    return batch * steps / seconds


OP_GROUPS = (("convolution", ("convolution", "conv2d", "mkldnn_conv")), ("batch_norm", ("batch_norm",)),
             ("relu", ("relu", "threshold", "clamp_min")), ("pooling", ("pool",)))


def op_groups(profile: dict) -> dict:
    """Self CPU ms per step grouped by kind of op (``OP_GROUPS``; the rest is ``other``), plus ``total``, and
    what a step would leave if BatchNorm, ReLU and pooling cost nothing (``convolution_and_other``)."""
    groups = {name: 0.0 for name, _ in OP_GROUPS} | {"other": 0.0}
    for op, ms in profile.items():
        if op == "_total":
            continue
        name = next((g for g, keys in OP_GROUPS if any(k in op.lower() for k in keys)), "other")
        groups[name] += ms
    groups = {k: round(v, 2) for k, v in groups.items()}
    groups["total"] = round(profile["_total"], 2)
    groups["convolution_and_other"] = round(groups["convolution"] + groups["other"], 2)
    return groups


def engine_throughput(recipe: str, batch: int, steps: int, channels_last: bool, bf16: bool, pad_channels: int = 0) -> float:
    """Training images/s measured by ``agekit.training.train`` (Lightning) on a synthetic cache."""
    import numpy as np

    from agekit.data.cache import write_cache
    from agekit.training.engine import resolve_spec, train
    from agekit.training.recipes import load_recipe

    r = load_recipe(recipe)
    spec = resolve_spec(r["model"]["name"], None)
    n = batch * (steps + 2)
    rng = np.random.default_rng(0)
    shape = (n, spec.num_crops, spec.size, spec.size, 3) if spec.num_crops > 1 else (n, spec.size, spec.size, 3)
    with tempfile.TemporaryDirectory() as d:
        meta = {"age": rng.uniform(1, 90, n).astype(np.float32), "hash": np.array([f"{i:040x}" for i in range(n)]),
                "source": np.array([f"{i}.jpg" for i in range(n)])}
        write_cache(f"{d}/c", meta, {spec.view_key: rng.integers(0, 256, shape, dtype=np.uint8)},
                    {"utkface": {"train": np.arange(n), "val": np.arange(batch)}})
        res = train(recipe, f"{d}/run", overrides=[
            f"data.cache={d}/c", f"data.batch_size={batch}", "trainer.max_epochs=2", "trainer.progress_bar=false",
            "trainer.limit_val_batches=1", f"trainer.channels_last={str(channels_last).lower()}",
            f"trainer.precision={'bf16-mixed' if bf16 else '32-true'}",
            *([f"model.config.pad_channels={pad_channels}"] if pad_channels else [])])
        return float(res.card["train_images_per_s"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sephsr_30_10")
    ap.add_argument("--recipe", default="sephsr_30_10_utkface")
    ap.add_argument("--batch", default="50", help="batch size(s), comma-separated; 50 = the HSR paper's batch")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the loop only; --engine runs on what Lightning picks)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engine", action="store_true", help="also time the Lightning engine end to end")
    ap.add_argument("--variants", default="all", choices=["all", "best"],
                    help="all four channels-last x bf16 settings, or only channels-last + bf16")
    ap.add_argument("--pad-channels", default="0",
                    help="comma-separated; 16 runs HSR's backbone with channels zero-padded to a multiple of 16 "
                         "(HSRNet pad_channels: same parameters and gradients, faster blocked kernels); 0 = as is")
    ap.add_argument("--compile", default="0", help="comma-separated 0/1: also time the network under torch.compile "
                    "(inductor; the warm-up steps include the compilation)")
    ap.add_argument("--profile", action="store_true",
                    help="also profile each setting's timed steps (torch profiler; slows them a little): the ops' "
                         "share of a step, grouped as convolution / BatchNorm / ReLU / pooling / other")
    ap.add_argument("--no-malloc-env", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with_malloc_env(args.no_malloc_env)
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    variants = ((False, False), (True, False), (False, True), (True, True)) if args.variants == "all" else ((True, True),)
    for batch in [int(b) for b in str(args.batch).split(",")]:
        for comp, pad, (cl, bf) in [(bool(int(c)), int(p), v) for c in str(args.compile).split(",")
                                    for p in str(args.pad_channels).split(",") for v in variants]:
            prof: dict | None = {} if args.profile else None
            row = {"model": args.model, "device": args.device, "batch": batch, "threads": args.threads,
                   "channels_last": cl, "bf16": bf, "pad_channels": pad, "compile": comp,
                   "loop_img_s": round(loop_throughput(args.model, batch, args.steps, args.warmup, cl, bf,
                                                       device=args.device, pad_channels=pad, compile=comp,
                                                       profile=prof), 1)}
            if prof:
                row["profile_ms_per_step"] = op_groups(prof)
            if args.engine:
                row["engine_img_s"] = round(engine_throughput(args.recipe, batch, args.steps, cl, bf, pad), 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None
    info = {"load_average": os.getloadavg(), "cpu_count": os.cpu_count(), "torch": torch.__version__, "gpu": gpu,
            "malloc_env": {k: os.environ.get(k) for k in MALLOC_ENV}, "rows": rows}
    print(f"load average during the run: {info['load_average']} (other processes share these cores)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
