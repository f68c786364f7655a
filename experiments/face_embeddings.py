"""dlib's face-recognition ResNet descriptors (128-d) of every row of a prepared cache, for teacher experiments.

Each row's face is re-read from the photo the cache was prepared from, located with the cache's box, landmarked with
dlib's 5-point model and cut to dlib's 150 px chip (padding 0.25) before the network; both models come with the
``face_recognition_models`` wheel (agekit's ``dlib68`` extra). About 75 ms a face on one core: the rows go to worker
processes in chunks of CHUNK, each chunk saved on its own, so a killed run resumes where it stopped. A photo that cannot
be read gives a row of NaN and a one-line notice; the other rows go on.

    python experiments/face_embeddings.py caches/allagefaces runs/embeddings/allagefaces --workers 2

writes OUT/embeddings.npy (rows x 128, float32, in cache row order) and OUT/info.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

DIM = 128
_MODELS: tuple | None = None


def _models() -> tuple:
    global _MODELS
    if _MODELS is None:
        import dlib

        from agekit.face.detect import _face_models_dir, landmark_model_path

        root = _face_models_dir()
        _MODELS = (dlib.shape_predictor(str(landmark_model_path(5))),
                   dlib.face_recognition_model_v1(str(root / "dlib_face_recognition_resnet_model_v1.dat")))
    return _MODELS


def _chunk(root: str, sources: list[str], boxes: np.ndarray, out: str) -> tuple[str, list[str]]:
    import dlib

    shape, net = _models()
    emb = np.full((len(sources), DIM), np.nan, np.float32)
    notices = []
    for i, (src, box) in enumerate(zip(sources, boxes, strict=True)):
        bgr = cv2.imread(os.path.join(root, src), cv2.IMREAD_COLOR)
        if bgr is None:
            notices.append(f"{src}: cannot be read as an image")
            continue
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        chip = dlib.get_face_chip(rgb, shape(rgb, dlib.rectangle(x1, y1, x2, y2)), 150, 0.25)
        emb[i] = np.asarray(net.compute_face_descriptor(chip), np.float32)
    tmp = out + ".tmp.npy"
    np.save(tmp, emb)
    os.replace(tmp, out)
    return out, notices


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cache", help="a prepared cache (agekit prepare): its info.json names the photos' root")
    p.add_argument("out", help="output folder (resumes from its chunk files)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--root", default=None, help="the photos' root, when it moved since the cache was prepared")
    a = p.parse_args(argv)
    info = json.loads((Path(a.cache) / "info.json").read_text())
    root = a.root or info["settings"]["root"]
    meta = np.load(Path(a.cache) / "meta.npz")
    sources, boxes = [str(s) for s in meta["source"]], meta["box"]
    out = Path(a.out)
    (out / "chunks").mkdir(parents=True, exist_ok=True)
    n = len(sources)
    starts = list(range(0, n, a.chunk))
    todo = [s for s in starts if not (out / "chunks" / f"{s:07d}.npy").exists()]
    print(f"{n} rows, {len(starts) - len(todo)} of {len(starts)} chunks already done", file=sys.stderr)
    t0 = time.time()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        futs = [pool.submit(_chunk, root, sources[s:s + a.chunk], boxes[s:s + a.chunk],
                            str(out / "chunks" / f"{s:07d}.npy")) for s in todo]
        for f in tqdm(as_completed(futs), total=len(futs), unit="chunk"):
            for line in f.result()[1]:
                print(line, file=sys.stderr)
    emb = np.concatenate([np.load(out / "chunks" / f"{s:07d}.npy") for s in starts])
    np.save(out / "embeddings.npy", emb)
    (out / "info.json").write_text(json.dumps({
        "command": "python experiments/face_embeddings.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cache": str(a.cache), "rows": n, "dim": DIM, "missing": int(np.isnan(emb[:, 0]).sum()),
        "model": "dlib_face_recognition_resnet_model_v1 (face_recognition_models), 150 px chip, padding 0.25",
        "seconds_this_run": round(time.time() - t0, 1)}, indent=1) + "\n")
    print(f"{out / 'embeddings.npy'}: {emb.shape}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
