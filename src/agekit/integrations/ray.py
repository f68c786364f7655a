"""Prediction over a Ray Dataset: :class:`Estimator` mapped over photos with ``map_batches`` (``agekit[ray]``).

Each actor of a fixed pool loads the models once (:class:`EstimatorActor`) and runs batches of
photos read as bytes by ``ray.data.read_binary_files`` - from a local folder, a shared file
system or an object store URI (``s3://``, ``gs://``, ...) - so the same call runs on a laptop
(``ray.init()``) and on a cluster (``RAY_ADDRESS=ray://head:10001`` or ``ray.init("auto")`` on
a node). Every photo gives one row: ``source``, ``error`` (the reason a photo could not be used,
as ``agekit predict`` words it), ``faces`` (how many) and ``result``, the JSON record that
``agekit predict --json`` prints for it. :func:`write_results` writes JSON lines (the lines of
``agekit predict --out FILE.jsonl``) or a Parquet folder (one file per block, written by the
workers).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

RESULT_SCHEMA_FIELDS = ("source", "error", "faces", "result")


def _image_suffixes() -> list[str]:
    try:
        from agekit.face.io import IMAGE_SUFFIXES as suffixes
    except ImportError:
        from agekit.inference.estimator import IMAGE_EXTS as suffixes
    return sorted(s.lstrip(".") for s in suffixes)


class EstimatorActor:
    """A Ray Data UDF: the models load once in ``__init__``, each call predicts a batch of (path, bytes) rows."""

    def __init__(self, model: str = "age", gender: str | None = None, max_pixels: int | None = None,
                 **estimator_kwargs: Any):
        from agekit.inference.estimator import Estimator

        self.estimator = Estimator.from_pretrained(model, gender=gender, workers=1, **estimator_kwargs)
        self.max_pixels = max_pixels

    def _decode(self, data: bytes, path: str) -> Any:
        from agekit.face.io import ImageReadError, decode_image

        try:
            return decode_image(data, path, max_pixels=self.max_pixels)
        except ImageReadError as e:
            return e  # reported in the record, as agekit predict does

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        from agekit.inference.estimator import Inputs

        paths = batch.column("path").to_pylist()
        blobs = batch.column("bytes").to_pylist()
        items = Inputs((p, self._decode(b, p)) for p, b in zip(paths, blobs))
        from agekit.serve.engine import plain_record

        results = [plain_record(r) for r in self.estimator.predict(items, workers=1)]
        return pa.table({
            "source": pa.array([r["source"] for r in results], pa.string()),
            "error": pa.array([r["error"] for r in results], pa.string()),
            "faces": pa.array([len(r["faces"]) for r in results], pa.int32()),
            "result": pa.array([json.dumps(r) for r in results], pa.string()),
        })


def read_photos(source: str | os.PathLike | list[str], **read_kwargs: Any) -> Any:
    """A Ray Dataset of ``path`` and ``bytes`` rows: every photo (by suffix) under a folder or URI, recursively."""
    import ray.data

    paths = [str(s) for s in source] if isinstance(source, (list, tuple)) else str(source)
    read_kwargs.setdefault("file_extensions", _image_suffixes())
    # Reading bytes is I/O: read tasks reserve no CPU, so a pool with one actor per CPU cannot starve them
    read_kwargs.setdefault("num_cpus", 0)
    return ray.data.read_binary_files(paths, include_paths=True, **read_kwargs)


def predict_dataset(ds: Any, model: str = "age", gender: str | None = None, actors: int | None = None,
                    batch_size: int = 32, num_cpus: float = 1, max_pixels: int | None = None,
                    **estimator_kwargs: Any) -> Any:
    """Map the predictor over a Dataset of ``path``/``bytes`` rows with ``map_batches`` on a pool of ``actors``
    actors (default: one per CPU of the cluster), each loading the models once; rows as described above."""
    import ray

    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1) // num_cpus))
    return ds.map_batches(
        EstimatorActor, batch_size=batch_size, batch_format="pyarrow", concurrency=actors, num_cpus=num_cpus,
        fn_constructor_kwargs={"model": model, "gender": gender, "max_pixels": max_pixels, **estimator_kwargs},
    )


def write_results(ds: Any, out: str | os.PathLike) -> dict[str, int]:
    """Write a results Dataset: ``*.jsonl`` / ``*.ndjson``: one ``agekit predict`` record per line, streamed
    through this process; anything else: a Parquet folder (or URI) written by the workers. Returns counts."""
    out_s = str(out)
    counts = {"results": 0, "with_face": 0, "errors": 0}
    if out_s.lower().endswith((".jsonl", ".ndjson")):
        Path(out_s).parent.mkdir(parents=True, exist_ok=True)
        with open(out_s, "w", encoding="utf-8") as f:
            for row in ds.iter_rows():
                f.write(row["result"] + "\n")
                counts["results"] += 1
                counts["with_face"] += row["faces"] > 0
                counts["errors"] += row["error"] is not None
        return counts
    ds = ds.materialize()
    ds.write_parquet(out_s)
    stats = ds.select_columns(["faces", "error"]).to_pandas()
    counts.update(results=len(stats), with_face=int((stats["faces"] > 0).sum()), errors=int(stats["error"].notna().sum()))
    return counts


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a results file or Parquet folder written by :func:`write_results`."""
    p = str(path)
    if p.lower().endswith((".jsonl", ".ndjson")):
        return [json.loads(line) for line in Path(p).read_text(encoding="utf-8").splitlines() if line]
    import pyarrow.parquet as pq

    return [json.loads(r) for r in pq.read_table(p, columns=["result"]).column("result").to_pylist()]


def predict(source: str | os.PathLike | list[str], out: str | os.PathLike, **kwargs: Any) -> dict[str, int]:
    """Read photos from ``source``, predict them on the Ray cluster this process is connected to, write ``out``."""
    return write_results(predict_dataset(read_photos(source), **kwargs), out)


def run_predict_cli(args: Any) -> int:
    """``agekit predict --ray DIR_OR_URI --out FILE``: the same options as ``agekit predict``, run on Ray."""
    try:
        import ray
    except ImportError:
        print('agekit predict: --ray needs Ray: pip install "agekit[ray]"', file=sys.stderr)
        return 2
    from agekit.inference.options import detector_choice, gender_model_choice

    if not args.out:
        print("agekit predict: --ray writes its results to --out FILE.jsonl or --out FOLDER (Parquet)", file=sys.stderr)
        return 2
    if args.paths or args.video is not None or args.webcam is not None or args.resume:
        print("agekit predict: --ray reads the photos from DIR_OR_URI itself (no paths, --video, --webcam or --resume)",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        print(f"agekit predict: {out} exists: --overwrite replaces it", file=sys.stderr)
        return 2
    if out.is_dir():  # a Parquet folder from an earlier run: its files would mix with the new ones

        shutil.rmtree(out)
    try:
        detector, detector_kwargs = detector_choice(args)
    except ValueError as e:
        print(f"agekit predict: {e}", file=sys.stderr)
        return 2

    import ray.data

    # Ray Data's per-operator progress lines on stderr only when it is a terminal
    logging.getLogger("ray.data").setLevel(logging.INFO if sys.stderr.isatty() else logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = sys.stderr.isatty()
    # connects to $RAY_ADDRESS when set (a cluster), else starts a local one on this machine's cores
    started = not ray.is_initialized()
    if started:
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    try:
        multi_face = "largest" if getattr(args, "largest", False) else (args.multi_face or "all")
        counts = predict(args.ray, args.out, model=args.model, gender=gender_model_choice(args), actors=args.ray_actors,
                         backend=args.backend, detector=detector, multi_face=multi_face,
                         fallback=args.fallback_detector, flip=args.flip, threads=args.threads,
                         max_pixels=getattr(args, "max_pixels", None), **detector_kwargs)
    finally:
        if started:
            ray.shutdown()
    print(f"agekit predict: wrote {counts['results']} results ({counts['with_face']} with a face, "
          f"{counts['errors']} errors) to {args.out}", file=sys.stderr)
    return 0 if counts["with_face"] else 1
