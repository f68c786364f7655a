"""Can a small CNN stand in for dlib's 5-point shape predictor (about 0.42 ms a face, the largest per-face cost of a
photo after the network)? A feasibility study, not a shipped detector.

The CNN reads a 40x40 grey crop of the detector's box (grown by a fifth, squared) and regresses dlib's five points in
that crop's frame. It is trained to reproduce dlib's own points (dlib's predictor run in each cache's box on the
original photo) on the training faces of both caches, with the box jittered (scale +-10 %, shift +-5 %) as detectors
jitter it, and measured on the test faces of both:

- point error against dlib's, in inter-ocular distances (the eye centres' distance by dlib's points);
- ms a face on one thread (crop and ONNX Runtime network, batch of 20, as a 20-face photo) against dlib's predictor;
- what it does to the shipped default model's test MAE, the same faces aligned by dlib's points and by the CNN's
  (the cache's box either way), on ``--mae-faces`` test photos of each cache.

    python experiments/landmark_cnn.py --data caches/utkface:utkface --data caches/allagefaces:allagefaces_fixed \
        --out runs/landmark_cnn --json experiments/results/landmark_cnn.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

SIZE = 40  # input side (grey)
GROW = 1.2  # the box grown to this many times its size before cropping


def region(box: np.ndarray, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The square crop region (x, y, side; pixel edges) of a detector box, optionally scaled and shifted."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = GROW * max(x2 - x1, y2 - y1) * scale
    cx, cy = (x1 + x2) / 2 + shift[0] * (x2 - x1), (y1 + y2) / 2 + shift[1] * (y2 - y1)
    return np.array([cx - side / 2, cy - side / 2, side])


def crop(grey: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """SIZE x SIZE crop of ``reg`` (edges -> centres handled as in agekit.face.align), black outside the photo."""
    x, y, side = reg
    s = SIZE / side
    m = np.array([[s, 0.0, -x * s + 0.5 * s - 0.5], [0.0, s, -y * s + 0.5 * s - 0.5]])
    return cv2.warpAffine(grey, m, (SIZE, SIZE), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


class LandmarkNet(nn.Module):
    """SIZE x SIZE grey -> 5 points (x, y in [0, 1] of the crop): four stride-2 3x3 convolutions (``widths``, by
    default 16-32-64-64: about 1.3M MACs at 40 px) and a linear layer."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 64)) -> None:
        super().__init__()
        layers, c, side = [], 1, SIZE
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c, side = w, (side + 1) // 2
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c * side * side, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1)).view(-1, 5, 2)


def collect(cache: str, protocol: str, jitter: int, seed: int = 0) -> dict[str, np.ndarray]:
    """dlib's points on each face of the cache (its box, the original photo) and the CNN's input crops: the plain
    region, and ``jitter`` jittered ones for training rows."""
    import dlib

    from agekit.data.cache import PreparedCache
    from agekit.data.protocols import make_splits
    from agekit.face.detect import _dlib_predictor

    c = PreparedCache(cache)
    root = json.loads((Path(cache) / "info.json").read_text())["settings"]["root"]
    splits = make_splits(protocol, c.meta)
    role = np.full(len(c.meta["age"]), "", dtype=object)
    for k, rows in splits.items():
        role[np.asarray(rows)] = k
    pred = _dlib_predictor(5)
    rng = np.random.default_rng(seed)
    xs, ys, rows_out, roles = [], [], [], []
    for i in tqdm(range(len(role)), desc=f"dlib points {cache}", unit="face", mininterval=5):
        if not role[i]:
            continue
        bgr = cv2.imread(str(Path(root) / str(c.meta["source"][i])))
        if bgr is None:
            continue
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        box = c.meta["box"][i]
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        shape = pred(rgb, dlib.rectangle(x1, y1, x2 - 1, y2 - 1))
        lm = np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()])  # pixel edges
        regs = [region(box)]
        if role[i] == "train":
            regs += [region(box, rng.uniform(0.9, 1.1), tuple(rng.uniform(-0.05, 0.05, 2))) for _ in range(jitter)]
        for reg in regs:
            xs.append(crop(grey, reg))
            ys.append((lm - reg[:2]) / reg[2])
            rows_out.append(i)
            roles.append(role[i])
    return {"x": np.stack(xs), "y": np.stack(ys).astype(np.float32), "row": np.array(rows_out),
            "role": np.array(roles, dtype="U5")}


def iod_error(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Mean point error of each face over its inter-ocular distance (dlib's 5 points: 0-1 one eye, 2-3 the other)."""
    eyes = np.linalg.norm(true[:, 0:2].mean(1) - true[:, 2:4].mean(1), axis=1)
    return np.linalg.norm(pred - true, axis=2).mean(1) / eyes


def train(data: dict[str, np.ndarray], epochs: int, widths: tuple[int, ...], seed: int = 0) -> LandmarkNet:
    torch.manual_seed(seed)
    net = LandmarkNet(widths)
    tr = data["role"] == "train"
    x = torch.from_numpy(data["x"][tr]).float().div(255.0).sub(0.5).unsqueeze(1)
    y = torch.from_numpy(data["y"][tr])
    opt = torch.optim.AdamW(net.parameters(), 3e-3, weight_decay=1e-4)
    steps = epochs * ((len(x) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    for ep in range(epochs):
        net.train()
        tot = 0.0
        for idx in torch.randperm(len(x)).split(128):
            xb = x[idx]
            flip = torch.rand(len(idx)) < 0.5  # mirror: x -> 1 - x, and dlib's eyes swap (0,1) <-> (2,3)
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            yb = y[idx].clone()
            yf = yb[:, [2, 3, 0, 1, 4]].clone()
            yf[..., 0] = 1.0 - yf[..., 0]
            yb = torch.where(flip[:, None, None], yf, yb)
            loss = (net(xb) - yb).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        print(f"epoch {ep + 1}/{epochs}: L1 {tot / len(x):.4f}", file=sys.stderr)
    return net.eval()


class BoxDetector:
    """The cache's box with dlib's points or the CNN's (for the MAE comparison): ``detect`` looks the photo up."""

    def __init__(self, name: str, lookup: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
        self.name, self.lookup, self.key = name, lookup, None

    def detect(self, image_rgb: np.ndarray) -> list:
        from agekit.face.detect import Detection

        box, lm = self.lookup[self.key]
        return [Detection(np.asarray(box, np.float32), 1.0, (lm - 0.5).astype(np.float32), self.name)]


def main(argv: list[str] | None = None) -> int:
    global SIZE
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", required=True, help="CACHE:PROTOCOL (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--json", default=None)
    p.add_argument("--jitter", type=int, default=2)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--mae-faces", type=int, default=1000)
    p.add_argument("--size", type=int, default=SIZE, help="input side in pixels")
    p.add_argument("--widths", default="16,32,64,64")
    a = p.parse_args(argv)
    SIZE = a.size
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    parts = {}
    for spec in a.data:
        cache, protocol = spec.rsplit(":", 1)
        f = out / f"{Path(cache).name}.npz"
        if not f.is_file():
            np.savez(f, **collect(cache, protocol, a.jitter))
        parts[cache] = dict(np.load(f))
    data = {k: np.concatenate([d[k] for d in parts.values()]) for k in ("x", "y", "role")}
    net = train(data, a.epochs, tuple(int(w) for w in a.widths.split(",")))
    torch.save(net.state_dict(), out / "landmark_cnn.pt")
    report: dict = {"command": "python experiments/landmark_cnn.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "input": f"{SIZE}x{SIZE} grey, box grown {GROW}x", "widths": a.widths,
                    "params": sum(q.numel() for q in net.parameters()),
                    "train_faces": int(sum((d["role"] == "train").sum() for d in parts.values())), "tests": {}}
    # ONNX graph for timing (batch of 20, one thread), against dlib's predictor on the same faces
    import onnxruntime as ort

    onnx_path = out / "landmark_cnn.onnx"
    torch.onnx.export(net, torch.zeros(1, 1, SIZE, SIZE), str(onnx_path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}}, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])

    def cnn_points(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {"x": (x.astype(np.float32) / 255.0 - 0.5)[:, None]})[0]

    for cache, d in parts.items():
        te = d["role"] == "test"
        pts = cnn_points(d["x"][te])
        err = iod_error(pts, d["y"][te])
        report["tests"][cache] = {"faces": int(te.sum()), "iod_error_mean": round(float(err.mean()), 4),
                                  "iod_error_median": round(float(np.median(err)), 4),
                                  "iod_error_p95": round(float(np.percentile(err, 95)), 4)}
    # time: 20 faces of the first test photos, crop + network, against dlib's predictor in the same boxes
    import dlib

    from agekit.data.cache import PreparedCache
    from agekit.face.detect import _dlib_predictor

    cache0 = next(iter(parts))
    c = PreparedCache(cache0)
    root = json.loads((Path(cache0) / "info.json").read_text())["settings"]["root"]
    rows = parts[cache0]["row"][parts[cache0]["role"] == "test"][:20]
    photos = [cv2.imread(str(Path(root) / str(c.meta["source"][i]))) for i in rows]
    rgbs = [np.ascontiguousarray(cv2.cvtColor(b, cv2.COLOR_BGR2RGB)) for b in photos]
    boxes = [c.meta["box"][i] for i in rows]
    pred = _dlib_predictor(5)

    def t_cnn() -> None:
        x = np.stack([crop(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), region(b)) for im, b in zip(rgbs, boxes)])
        cnn_points(x)

    def t_dlib() -> None:
        for im, b in zip(rgbs, boxes):
            x1, y1, x2, y2 = (int(round(v)) for v in b)
            pred(im, dlib.rectangle(x1, y1, x2 - 1, y2 - 1))

    times: dict[str, list[float]] = {"cnn": [], "dlib": []}
    for _ in range(7):
        for k, fn in (("cnn", t_cnn), ("dlib", t_dlib)):
            s = time.process_time()
            for _ in range(10):
                fn()
            times[k].append((time.process_time() - s) / 10 / len(rows) * 1e3)
    report["ms_per_face"] = {k: round(float(np.median(v)), 4) for k, v in times.items()}
    report["ms_per_face_note"] = ("CPU ms a face, 20 faces a call, one thread, median of 7 interleaved rounds; the CNN's "
                                  "includes its grey conversion and crop (a photo's grey copy is made once per face "
                                  "here, once per photo in a pipeline)")
    # the default model's MAE with either set of points (the cache's box)
    from agekit.inference.estimator import Estimator

    report["mae"] = {}
    for cache, d in parts.items():
        c = PreparedCache(cache)
        root = json.loads((Path(cache) / "info.json").read_text())["settings"]["root"]
        te = np.flatnonzero(d["role"] == "test")[: a.mae_faces]
        pts = cnn_points(d["x"][te])
        looks = {"dlib": {}, "cnn": {}}
        for j, k in enumerate(te):
            i = int(d["row"][k])
            reg = region(c.meta["box"][i])
            looks["dlib"][i] = (c.meta["box"][i], d["y"][k] * reg[2] + reg[:2])
            looks["cnn"][i] = (c.meta["box"][i], pts[j] * reg[2] + reg[:2])
        ages: dict[str, list[float]] = {"dlib": [], "cnn": []}
        truth = []
        for name, lookup in looks.items():
            det = BoxDetector(name, lookup)
            est = Estimator.from_pretrained("age", detector=det, threads=1)
            for i in tqdm(lookup, desc=f"MAE {name} {cache}", unit="face", mininterval=5):
                det.key = i
                bgr = cv2.imread(str(Path(root) / str(c.meta["source"][i])))
                rec = est.predict(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))[0].faces[0]
                ages[name].append(float(rec["age"]))
                if name == "dlib":
                    truth.append(float(c.meta["age"][i]))
        t = np.array(truth)
        report["mae"][cache] = {"faces": len(t), **{f"mae_{k}": round(float(np.abs(np.array(v) - t).mean()), 4)
                                                     for k, v in ages.items()},
                                "mean_abs_change": round(float(np.abs(np.array(ages["cnn"]) - np.array(ages["dlib"])).mean()), 4)}
    report["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(report, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
