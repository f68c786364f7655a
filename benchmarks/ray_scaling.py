"""Photos/s of ``agekit.integrations.ray`` with 1 and 2 actors on a local Ray cluster (``ray.init(num_cpus=2)``).

``--photos`` generated 640x480 JPEGs (one drawn face each, ``agekit.serve.synthetic``) in a
temporary folder; for each actor count (interleaved, ``--rounds`` times): ``read_photos`` +
``predict_dataset`` consumed batch by batch. Reported: the wall time from submitting the
Dataset to its last row (actor start-up, which loads torch and the models, included) and Ray
Data's throughput figure for the map operator (``Dataset.stats()``: its rows over the time from its
first task to its last; start-up left out). For reference, ``Estimator.predict``
in this process with ``workers=1`` on the same photos. Shipped age + gender weights, cascade detector.

    python benchmarks/ray_scaling.py [--photos 800] [--rounds 2] [--out benchmarks/results/ray_scaling]
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchutil import with_malloc_env, write_results


def run_ray(folder: Path, actors: int, batch_size: int) -> dict:
    """One run: the wall time of the whole Dataset and Ray Data's own throughput figure for the map operator
    (its rows over the time from its first task to its last, so actor start-up is left out)."""
    import re

    from agekit.integrations.ray import predict_dataset, read_photos

    blocks = max(1, len(list(folder.iterdir())) // batch_size)  # one block per batch: work spreads over the actors
    t0 = time.perf_counter()
    ds = predict_dataset(read_photos(folder, override_num_blocks=blocks), gender="gender", actors=actors,
                         batch_size=batch_size).materialize()
    wall = time.perf_counter() - t0
    n = ds.count()
    faces = int((ds.select_columns(["faces"]).to_pandas()["faces"] > 0).sum())
    stats = ds.stats()
    m = re.search(r"MapBatches\(EstimatorActor\).*?Ray Data throughput: ([0-9.]+) rows/s", stats, re.S)
    return {"actors": actors, "photos": n, "with_face": faces, "wall_s": round(wall, 2),
            "photos_per_s_wall": round(n / wall, 2), "photos_per_s_map": round(float(m.group(1)), 2) if m else None}


def main() -> None:
    with_malloc_env()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=800)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--actors", default="1,2")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import cv2
    import ray
    import ray.data

    from agekit.inference.estimator import Estimator
    from agekit.serve.synthetic import drawn_face

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(args.photos):
            img = drawn_face(640, 480, seed=i)
            cv2.imwrite(str(folder / f"p{i:05d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        est = Estimator.from_pretrained("age", gender="gender")
        t = time.perf_counter()
        local = est.predict(str(folder), workers=1)
        local_s = time.perf_counter() - t
        print(f"in-process Estimator.predict, workers=1: {len(local) / local_s:.1f} photos/s", flush=True)

        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        runs: dict[int, list[dict]] = {}
        counts = [int(a) for a in args.actors.split(",")]
        try:
            for _ in range(args.rounds):
                for a in counts:
                    r = run_ray(folder, a, args.batch_size)
                    runs.setdefault(a, []).append(r)
                    print(r, flush=True)
        finally:
            ray.shutdown()

    summary = {a: {"wall_photos_per_s": round(statistics.median(r["photos_per_s_wall"] for r in rs), 1),
                   "map_photos_per_s": round(statistics.median(r["photos_per_s_map"] for r in rs), 1)}
               for a, rs in runs.items()}
    info = {"command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]), "cores": len(os.sched_getaffinity(0)),
            "cpu": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"),
            "photos": args.photos, "photo": "640x480 JPEG, one drawn face", "ray": ray.__version__,
            "in_process_workers1_photos_per_s": round(len(local) / local_s, 2), "runs": runs, "summary": summary}
    rows = ["| actors | photos/s, wall (actor start-up included) | photos/s of the map operator (Ray Data's figure) |",
            "|---|---|---|"]
    rows += [f"| {a} | {s['wall_photos_per_s']} | {s['map_photos_per_s']} |" for a, s in summary.items()]
    per_round = "; ".join(f"{a} actor{'s' if a > 1 else ''}: " + ", ".join(str(r["photos_per_s_map"]) for r in rs)
                          for a, rs in runs.items())
    md = "\n".join([*rows, "", f"Medians of {args.rounds} interleaved rounds (map operator photos/s per round: {per_round}).",
                     f"In this process, Estimator.predict with workers=1: {info['in_process_workers1_photos_per_s']} photos/s."])
    print(md)
    write_results(args.out, info, md)


if __name__ == "__main__":
    main()
