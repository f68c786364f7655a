"""Training throughput (images/s) of a zoo network on the CPU (or a GPU), with and without channels-last / bf16.

Each variant runs the whole training data path of ``agekit train``: a uint8 batch, HSR
augmentation (kornia, on the batch), normalisation, forward, the HSR L1 loss (float32,
outside autocast), backward and an SGD step. ``--engine`` also times the same recipe through
the Lightning engine (``agekit.training.train``) on a synthetic cache.

Every table comes with the host's CPU flags and library versions, the GEMM peak of torch (float32, bfloat16) and
of ONNX Runtime (float32) on the same thread count, and each setting's fraction of the FLOP limit: 3 x forward
MACs x images/s / peak (the float32 peak, and for bf16 settings also the bf16 one). ``--probe`` shows what
``trainer.precision: auto`` would choose; ``--profile`` the ops that hold a step.

glibc's allocator returns freed memory to the OS after every step unless told not to; the
script re-executes itself with MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000
MALLOC_TOP_PAD_=1000000000 (``--no-malloc-env`` keeps the environment as it is).

    python benchmarks/train_throughput.py [--model sephsr_30_10] [--batch 50] [--steps 30] [--threads 2] [--engine]
        [--pad-channels 0,16] [--compile 0,1] [--profile] [--probe] [--priority -15] [--out results/train_throughput]
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


def reexec_with_priority(nice: int | None) -> None:
    """Re-execute this script in a session of its own whose autogroup has ``nice`` (Linux). With autogroup
    scheduling the kernel shares the cores between sessions equally whatever their processes' nice values, so on a
    machine where other sessions keep both cores busy a timing otherwise gets a fraction of a core."""
    if nice is None or os.environ.get("AGEKIT_BENCH_AUTOGROUP") == str(nice):
        if nice is not None:
            try:
                with open("/proc/self/autogroup", "w") as f:
                    f.write(str(nice))
            except OSError as e:
                print(f"--priority: cannot set the autogroup's nice ({e}); timing as is", file=sys.stderr)
        return
    import shutil

    if shutil.which("setsid") is None or not os.path.exists("/proc/self/autogroup"):
        print("--priority: no setsid or autogroup here; timing as is", file=sys.stderr)
        return
    env = {**os.environ, "AGEKIT_BENCH_AUTOGROUP": str(nice)}
    os.execvpe("setsid", ["setsid", "-w", sys.executable, *sys.argv], env)


def peaks(threads: int) -> dict:
    """GMAC/s of an n x n matrix product on ``threads`` threads: torch float32 and bfloat16, ONNX Runtime float32."""
    from agekit.training.probe import gemm_peak

    out = {"torch_fp32": gemm_peak(threads, "torch", "float32"), "torch_bf16": gemm_peak(threads, "torch", "bfloat16")}
    try:
        out["onnxruntime_fp32"] = gemm_peak(threads, "onnxruntime")
    except ImportError:
        pass
    out = {k: round(v, 1) for k, v in out.items()}
    out["fp32"] = max(v for k, v in out.items() if k.endswith("fp32"))
    return out


def write_markdown(path: str, info: dict) -> None:
    h, pk = info["host"], info["peaks_gmac_s"]
    lines = [f"`{info['command']}`", "",
             f"Host: {h['cpu']}, {h['cores']} cores, flags {' '.join(h['flags'])}; torch {h['torch']}, onnxruntime "
             f"{h.get('onnxruntime')}; load average {info['load_average']}; {info['date']}.",
             f"GEMM peak on {info['threads']} thread(s), GMAC/s: torch fp32 {pk['torch_fp32']}, torch bf16 "
             f"{pk['torch_bf16']}, ONNX Runtime fp32 {pk.get('onnxruntime_fp32')}. FLOP limit = 3 x forward MACs "
             f"({info['macs'] / 1e6:.1f}M) x img/s / peak.", "",
             "| model | batch | threads | channels-last | bf16 | padded | compile | img/s | of the fp32 limit | "
             "of the bf16 limit |", "|---|---:|---:|---|---|---:|---|---:|---:|---:|"]
    for r in info["rows"]:
        bf = f"{r['flop_fraction_bf16_peak']:.2f}" if "flop_fraction_bf16_peak" in r else ""
        lines.append(f"| {r['model']} | {r['batch']} | {r['threads']} | {r['channels_last']} | {r['bf16']} | "
                     f"{r['pad_channels']} | {r['compile']} | {r['loop_img_s']:.0f} | {r['flop_fraction']:.2f} | {bf} |")
    if info.get("probe"):
        lines += ["", f"Probe (agekit.training.probe, the network's steps only): {info['probe']}"]
    prof = [r for r in info["rows"] if r.get("top_ops_ms_per_step")]
    for r in prof:
        lines += ["", f"Profile of {r['model']} (channels-last {r['channels_last']}, bf16 {r['bf16']}, padded "
                  f"{r['pad_channels']}, compile {r['compile']}), self ms per step: "
                  + ", ".join(f"{k} {v}" for k, v in r["profile_ms_per_step"].items()),
                  "Top ops: " + "; ".join(f"{k} {v}" for k, v in r["top_ops_ms_per_step"].items())]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


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
                         "share of a step, grouped as convolution / BatchNorm / ReLU / pooling / other, and the top ops")
    ap.add_argument("--probe", action="store_true", help="also run agekit.training.probe on the network (what "
                    "trainer.precision: auto / channels_last: auto would choose)")
    ap.add_argument("--priority", type=int, default=None, metavar="NICE",
                    help="Linux: run in a session of its own whose autogroup has this nice value (e.g. -15), so "
                         "other sessions' processes do not take the cores the timing needs")
    ap.add_argument("--no-malloc-env", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md (the table with the FLOP-limit fractions)")
    args = ap.parse_args()
    with_malloc_env(args.no_malloc_env)
    reexec_with_priority(args.priority)
    import torch

    from agekit import create_model
    from agekit.models.complexity import complexity
    from agekit.training.probe import host_info, probe, setting_name

    torch.set_num_threads(args.threads)
    host = host_info(args.threads)
    print(f"# {host}", flush=True)
    pk = peaks(args.threads) if args.device == "cpu" else {}
    if pk:
        print(f"# GEMM peak GMAC/s on {args.threads} thread(s): {pk}", flush=True)
    m = create_model(args.model)
    spec = m.preprocess
    shape = (spec.num_crops, 3, spec.size, spec.size) if spec.num_crops > 1 else (3, spec.size, spec.size)
    macs = complexity(m, shape).macs
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
            if pk:  # 3 x forward MACs per image (forward, and backward's two products) against the GEMM peak
                row["flop_fraction"] = round(3 * macs * row["loop_img_s"] / (pk["fp32"] * 1e9), 3)
                if bf:
                    row["flop_fraction_bf16_peak"] = round(3 * macs * row["loop_img_s"] / (pk["torch_bf16"] * 1e9), 3)
            if prof:
                row["profile_ms_per_step"] = op_groups(prof)
                top = sorted(((k, v) for k, v in prof.items() if k != "_total"), key=lambda kv: -kv[1])[:6]
                row["top_ops_ms_per_step"] = {k: round(v, 2) for k, v in top}
            if args.engine:
                row["engine_img_s"] = round(engine_throughput(args.recipe, batch, args.steps, cl, bf, pad), 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    probe_text = None
    if args.probe:
        batch = int(str(args.batch).split(",")[0])
        res = probe(lambda: create_model(args.model), shape, batch, device=args.device)
        probe_text = (", ".join(f"{k} {v:.0f} img/s" for k, v in res.to_dict()["images_per_s"].items())
                      + f" -> {setting_name(res.precision, res.channels_last)} (batch {batch})")
        print(f"probe: {probe_text}", flush=True)
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None
    info = {"command": "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"), "host": host, "threads": args.threads, "macs": macs,
            "peaks_gmac_s": pk, "probe": probe_text, "load_average": [round(v, 2) for v in os.getloadavg()],
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "gpu": gpu,
            "malloc_env": {k: os.environ.get(k) for k in MALLOC_ENV}, "rows": rows}
    print(f"load average during the run: {info['load_average']} (other processes share these cores)")
    for path in [args.json] + ([f"{args.out}.json"] if args.out else []):
        if path:
            with open(path, "w") as f:
                json.dump(info, f, indent=1)
    if args.out and pk:
        write_markdown(f"{args.out}.md", info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
