"""Training throughput (images/s) of the networks that ``agekit reproduce`` trains, for its time estimates.

Each row times the training step of ``agekit train``: a uint8 batch, the recipe's augmentation,
normalisation, forward, the method's loss on random labels, backward and an SGD step (data
loading from the cache excluded). Run on the machine the estimate is for:

    python benchmarks/reproduce_throughput.py [--device cpu|cuda] [--steps 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

# (model, augmentation, batch of the paper's recipe)
MODELS = (("ssrnet", "ssr", 50), ("c3ae_plain", "none", 50), ("c3ae_full", "c3ae", 50),
          ("lmtcnn_1_1", "lmtcnn", 128), ("lmtcnn_2_1", "lmtcnn", 128), ("sephsr_90_30", "hsr", 50),
          ("sephsr_90_30_k3", "hsr", 50), ("sephsr_30_10_depth3_1", "hsr", 50), ("lrn_resnet18", "lrn", 128),
          ("lrn_resnet10_tiny", "lrn", 128))


def step_throughput(model_name: str, augment: str, batch: int, steps: int, warmup: int, device: str) -> float:
    import torch

    from agekit import create_model
    from agekit.methods import default_method_for, get_method
    from agekit.outputs import output_to_float
    from agekit.preprocessing import network_input
    from agekit.training.augment import build_augment

    torch.manual_seed(0)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model = create_model(model_name).train().to(dev)
    spec = model.preprocess
    method = get_method(default_method_for(model_name))
    aug = build_augment(augment, spec.size)
    opt = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9)
    side = spec.resize or spec.size
    shape = (batch, spec.num_crops, side, side, 3) if spec.num_crops > 1 else (batch, side, side, 3)
    data = torch.randint(0, 256, shape, dtype=torch.uint8)
    labels = {"age": (torch.rand(batch) * 90).to(dev), "age_group": torch.randint(0, 8, (batch,), device=dev),
              "gender": torch.randint(0, 2, (batch,), device=dev)}
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            sync()
            t0 = time.perf_counter()
        x = network_input(data.to(dev), spec, aug)
        loss, _ = method.loss(output_to_float(model(x)), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    return batch * steps / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="results file (rows of other models already in it are kept)")
    ap.add_argument("--models", default=None, help="comma-separated subset of the models")
    ap.add_argument("--batch", type=int, default=None, help="time this batch instead of the recipe's (images/s "
                    "is per image)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    chosen = set(args.models.split(",")) if args.models else None
    for name, augment, batch in MODELS:
        if chosen is not None and name not in chosen:
            continue
        batch = args.batch or batch
        ips = step_throughput(name, augment, batch, args.steps, args.warmup, args.device)
        rows.append({"model": name, "augment": augment, "batch": batch, "device": args.device,
                     "images_per_s": round(ips, 1)})
        print(f"{name:12s} batch {batch:4d} {args.device}: {ips:8.1f} images/s", flush=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "load_average": list(os.getloadavg()),
            "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None, "steps": args.steps}
    if args.json:
        old = json.load(open(args.json)) if os.path.isfile(args.json) else {"rows": []}
        for r in rows:
            r["load_average"] = meta["load_average"]
        kept = [r for r in old.get("rows", []) if r["model"] not in {x["model"] for x in rows}]
        with open(args.json, "w") as f:
            json.dump({**meta, "rows": kept + rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
