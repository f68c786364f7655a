"""``agekit prepare``: run the face pipeline once over a dataset and write a prepared cache.

The work is cut into chunks of consecutive samples. Each finished chunk is committed
atomically - its crops to ``work/shards/chunk_NNNNNN.npz``, then its items and a
``chunk_done`` line to ``work/journal.jsonl`` - so a killed run restarts where it stopped,
without losing or duplicating work. When every chunk is done the shards are consolidated
into the cache views (in sample order, so the result does not depend on interruptions or on
the number of workers), the protocols' split files are written, and ``report.json`` sums up
kept and dropped images with reasons, duplicate contents and label conflicts.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agekit import preprocessing as pp
from agekit.data.cache import PreparedCache, _atomic_json, create_view, write_meta
from agekit.data.datasets import Sample, get_adapter
from agekit.data.datasets.base import sha1_file
from agekit.data.protocols import make_splits, protocols_for
from agekit.face.align import FACE5_TEMPLATE
from agekit.face.detect import Detection
from agekit.face.io import ImageReadError, check_max_pixels, read_image
from agekit.face.pipeline import FacePipeline, FaceResult
from agekit.parallel import WorkerPool, ordered_map
from agekit.preprocessing import PreprocessSpec

# Named view specs selectable with --views (a spec's view_key is accepted too).
VIEW_SPECS: dict[str, PreprocessSpec] = {
    "single_64": pp.SSRNET,  # SSR-Net / HSR / C3AE plain crop: 64x64, margin 0.4
    "ssrnet": pp.SSRNET,
    "hsr": pp.HSR,
    "c3ae": pp.C3AE,
    "kres_64": pp.hsr_kres(3),  # HSR 3-resolution crops (ratios 1.0, 1.45, 1.85)
    "hsr_kres3": pp.hsr_kres(3),
    "hsr_kres2": pp.hsr_kres(2),
    "c3ae_64": pp.C3AE_CONTEXT,  # C3AE's triple context crops
    "c3ae_context": pp.C3AE_CONTEXT,
    "imagenet": pp.IMAGENET,
    "single_224": pp.IMAGENET,
    "lmtcnn": pp.LMTCNN,
    "agekit": pp.AGEKIT,  # agekit's compact models: 64x64, margin 0.1
}
DEFAULT_VIEWS = ("single_64", "kres_64", "c3ae_64", "agekit")
MULTI_FACE = ("largest", "all", "skip")
JOURNAL = "journal.jsonl"


class PrepareInterrupted(RuntimeError):
    """Raised when ``stop_after`` chunks were committed (simulates a killed run in tests)."""


# FAMILY_SIZE_mMARGIN[_noalign][_edge]: a crop family at any size and margin (margin 0: the face box itself),
# without alignment, with the photo's edge pixels repeated where the crop reaches past it (no black border).
VIEW_PATTERN = re.compile(r"(single|kres|c3ae|lmtcnn)_(\d+)_m([0-9.]+)(_noalign)?(_edge)?")


def view_from_name(m: re.Match) -> PreprocessSpec:
    """The spec of a :data:`VIEW_PATTERN` match: ``single_64_m0`` (the face box, 64 px), ``kres_64_m0_edge`` (HSR's
    three resolutions around it, edges replicated), ``c3ae_64_m0`` (C3AE's context crops), ``lmtcnn_227_m0_noalign``
    (LMTCNN's 256 square of the whole box, 227 crops)."""
    family, size, margin = m.group(1), int(m.group(2)), float(m.group(3))
    base = {"single": pp.PreprocessSpec(), "kres": pp.hsr_kres(3), "c3ae": pp.C3AE_CONTEXT, "lmtcnn": pp.LMTCNN}[family]
    return dataclasses.replace(base, size=size, margin=margin, align=m.group(4) is None,
                               border="replicate" if m.group(5) else "constant")


def resolve_views(names: Iterable[str | PreprocessSpec]) -> list[PreprocessSpec]:
    """View names (``single_64``, ``kres_64``, ``c3ae_64``, ``lmtcnn``, ... or a view key) -> specs,
    one per distinct view key."""
    by_key = {s.view_key: s for s in VIEW_SPECS.values()}
    specs: dict[str, PreprocessSpec] = {}
    for n in names:
        if isinstance(n, PreprocessSpec):
            s = n
        else:
            key = n.strip().lower()
            if key in VIEW_SPECS:
                s = VIEW_SPECS[key]
            elif n.strip() in by_key:
                s = by_key[n.strip()]
            elif (m := VIEW_PATTERN.fullmatch(key)) is not None:  # any size / margin of a crop family
                s = view_from_name(m)
            else:
                raise ValueError(f"unknown view {n!r}; choose from {', '.join(VIEW_SPECS)}, a view key, or "
                                 "FAMILY_SIZE_mMARGIN[_noalign][_edge] (FAMILY: single, kres, c3ae, lmtcnn)")
        specs.setdefault(s.view_key, s)
    if not specs:
        raise ValueError("no views selected")
    return list(specs.values())


def crop_shape(spec: PreprocessSpec) -> tuple[int, ...]:
    """Shape of one face's uint8 crops for ``spec`` (what ``agekit.face.make_crops`` returns)."""
    if spec.crops == "lmtcnn":
        r = spec.resize or spec.size
        return (r, r, 3)
    if spec.num_crops > 1:
        return (spec.num_crops, spec.size, spec.size, 3)
    return (spec.size, spec.size, 3)


def reason_kind(reason: str) -> str:
    """A reason with its file-specific parts (quoted names, numbers) blanked, for counting."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|-?\d+(\.\d+)?", "#", reason)


# --- worker side -----------------------------------------------------------------------------

_PIPELINE = None
_GIVEN = False  # detector "given": each sample's own face box (Sample.box) instead of a detector

# ``detector="given"``: the face box the dataset gives (IMDB-WIKI's face_location, ...) is the face; a sample without
# one goes to the fallback detector (e.g. "cropped": the whole image) or is dropped as "no face box given".
GIVEN = "given"


def given_detection(box: Sequence[float]) -> Any:
    """A :class:`~agekit.face.detect.Detection` for a face box the dataset gives: score 1, landmarks on the canonical
    template inside the box (as the ``cropped`` detector places them), so alignment keeps the box."""

    x1, y1, x2, y2 = (float(v) for v in box)
    lm = (FACE5_TEMPLATE * [x2 - x1, y2 - y1] + [x1, y1] - 0.5).astype(np.float32)
    return Detection(np.array([x1, y1, x2, y2], np.float32), 1.0, lm, GIVEN)


def _init_worker(specs: list[PreprocessSpec], detector: Any, multi_face: str, detector_kwargs: dict,
                 fallback: Any = None, max_pixels: int | None = None) -> None:
    global _PIPELINE, _GIVEN

    _GIVEN = detector == GIVEN
    if _GIVEN:  # the pipeline only crops (and runs the fallback); its own detector is never called
        detector, detector_kwargs = "cropped", {}
    _PIPELINE = FacePipeline(specs, detector=detector, multi_face=multi_face, fallback=fallback,
                             max_pixels=max_pixels, **detector_kwargs)


def _given_faces(path: str, box: Sequence[float] | None) -> Any:
    """The pipeline's result for a photo whose face box the dataset gives (the fallback when it gives none)."""
    try:
        image = read_image(path, max_pixels=_PIPELINE.max_pixels)
    except ImageReadError as e:
        return FaceResult([], [], error=e.reason, path=path)
    if box is not None:
        x1, y1, x2, y2 = (float(v) for v in box)
        h, w = image.shape[:2]
        if not (x2 - x1 >= 2 and y2 - y1 >= 2 and x2 > 0 and y2 > 0 and x1 < w and y1 < h):
            return FaceResult([], [], error=f"given face box {x1:g},{y1:g},{x2:g},{y2:g} is empty or outside the "
                                            f"{w}x{h} image")
        return _PIPELINE.crop_detections(image, [given_detection(box)])
    if _PIPELINE.fallback is not None:
        return _PIPELINE.crop_detections(image, _PIPELINE.fallback.detect(image), fallback=True)
    return FaceResult([], [], error="no face box given")


def _item_record(index: int, error: str | None = None) -> dict[str, Any]:
    """One image's journal record before processing (or, with ``error``, of an image that gave nothing)."""
    return {"index": index, "hash": None, "error": error, "faces": 0, "boxes": [], "scores": [], "dropped": []}


def _process_item(index: int, path: str, keys: Sequence[str],
                  box: Sequence[float] | None = None) -> tuple[dict, dict[str, list[np.ndarray]]]:
    item = _item_record(index)
    crops: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    try:
        item["hash"] = sha1_file(path)
    except FileNotFoundError:
        item["error"] = "missing"
        return item, crops
    except OSError as e:
        item["error"] = f"unreadable: {e.strerror or e}"
        return item, crops
    try:
        result = _given_faces(path, box) if _GIVEN else _PIPELINE.process_path(path)
    except Exception as e:  # a bad image must never stop the run
        item["error"] = f"face pipeline failed: {type(e).__name__}: {e}"
        return item, crops
    item["dropped"] = [reason for _, reason in result.dropped]
    if result.error:
        item["error"] = result.error
        return item, crops
    if not result.faces:
        item["error"] = "no face"
        return item, crops
    for face in result.faces:
        missing = [k for k in keys if k not in face.crops]
        if missing:
            item["error"] = f"face pipeline returned no {missing[0]} crops"
            return item, {k: [] for k in keys}
        for k in keys:
            crops[k].append(np.asarray(face.crops[k], dtype=np.uint8))
        d = face.detection
        item["boxes"].append([round(float(v), 2) for v in np.asarray(d.box).reshape(-1)[:4]])
        item["scores"].append(round(float(d.score), 4))
    if getattr(result, "used_fallback", False):
        item["fallback"] = True
    item["faces"] = len(result.faces)
    return item, crops


def _process_chunk(task: tuple[int, list[tuple], list[str]]) -> tuple[int, list[dict], dict, float]:
    chunk, items, keys = task
    t0 = time.perf_counter()
    records, stacked = [], {k: [] for k in keys}
    for index, path, *box in items:
        item, crops = _process_item(index, path, keys, *box)  # box: the given face box, only with detector given
        records.append(item)
        for k in keys:
            stacked[k].extend(crops[k])
    return chunk, records, stacked, time.perf_counter() - t0


def _chunk_item_by_item(pool: WorkerPool, task: tuple[int, list[tuple[int, str]], list[str]]) -> tuple:
    """A chunk on which a worker process died twice, redone one item per task: the item that kills a worker
    again is recorded with that error and no crops, the rest of the chunk is kept."""

    chunk, items, keys = task
    records, stacked, seconds = [], {k: [] for k in keys}, 0.0
    for item in items:
        index = item[0]
        try:
            _, recs, crops, sec = pool.submit(_process_chunk, (chunk, [item], keys)).result()
        except BrokenExecutor:
            pool.restart()
            recs, crops, sec = [_item_record(index, WORKER_DIED)], {k: [] for k in keys}, 0.0
        records += recs
        seconds += sec
        for k in keys:
            stacked[k].extend(crops[k])
    return chunk, records, stacked, seconds


WORKER_DIED = "a worker process died on this image (killed for memory, or a crash in a native library)"


# --- journal -----------------------------------------------------------------------------------

@dataclass
class _Work:
    dir: Path

    @property
    def shards(self) -> Path:
        return self.dir / "shards"

    @property
    def journal(self) -> Path:
        return self.dir / JOURNAL

    def shard(self, chunk: int) -> Path:
        return self.shards / f"chunk_{chunk:06d}.npz"

    def load(self, expected: dict[int, int]) -> dict[int, list[dict]]:
        """Committed chunks: chunk -> item records; a chunk counts only with its shard and done line."""
        items: dict[int, list[dict]] = defaultdict(list)
        done: set[int] = set()
        if self.journal.exists():
            for line in self.journal.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if "chunk_done" in rec:
                    c = rec["chunk_done"]
                    if rec.get("items") == expected.get(c) and len(items[c]) >= rec["items"] and self.shard(c).exists():
                        done.add(c)
                else:
                    items[rec["chunk"]].append(rec)
        out = {}
        for c in done:
            seen: dict[int, dict] = {}
            for rec in items[c]:
                seen[rec["index"]] = rec  # a chunk redone after a partial write: last record wins
            out[c] = [seen[i] for i in sorted(seen)]
        return out

    def commit(self, chunk: int, records: list[dict], stacked: dict[str, list[np.ndarray]], seconds: float) -> None:
        arrays = {k: (np.stack(v) if v else np.zeros((0,), np.uint8)) for k, v in stacked.items()}
        tmp = self.shards / f"chunk_{chunk:06d}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, self.shard(chunk))
        lines = [json.dumps({"chunk": chunk, **r}) for r in records]
        lines.append(json.dumps({"chunk_done": chunk, "items": len(records), "seconds": round(seconds, 3)}))
        with open(self.journal, "a") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())


# --- main entry ----------------------------------------------------------------------------------

def prepare(
    dataset: str,
    root: str | Path,
    out: str | Path,
    views: Sequence[str | PreprocessSpec] = DEFAULT_VIEWS,
    detector: Any = "dlib",
    multi_face: str = "largest",
    workers: int = 2,
    limit: int | None = None,
    chunk_size: int = 64,
    adapter_options: dict | None = None,
    detector_kwargs: dict | None = None,
    progress: bool = True,
    keep_work: bool = False,
    stop_after: int | None = None,
    fallback_detector: Any = None,
    max_pixels: int | None = None,
) -> PreparedCache:
    """Detect, align and crop every sample of ``dataset`` under ``root`` once; write the cache to ``out``.

    Resumable: rerunning with the same settings continues from the committed chunks of
    ``out/work``. ``stop_after`` (tests) raises :class:`PrepareInterrupted` after that many newly
    committed chunks, as a kill would stop it. ``keep_work`` keeps the shards after consolidation.
    ``fallback_detector`` (e.g. ``"cropped"``): run when ``detector`` finds no face (see
    ``FacePipeline``); the images it rescued are counted in ``report.json`` (``counts.images_from_fallback``).
    ``detector="given"``: no detector; each sample's face box from the dataset (``Sample.box``: IMDB-WIKI's
    ``face_location``) is cropped, and a sample without one goes to ``fallback_detector`` or is dropped.
    To keep every face a detector misses without black borders: ``fallback_detector="cropped"`` (the whole
    image is the face) with views whose crops repeat the edge pixels (``..._edge``, e.g. ``single_64_m0.4_edge``).
    ``max_pixels``: photos with more pixels are refused from their header before decoding (default
    :data:`agekit.face.io.DEFAULT_MAX_PIXELS`).
    """
    if multi_face not in MULTI_FACE:
        raise ValueError(f"multi_face must be one of {MULTI_FACE}, got {multi_face!r}")
    t_start = time.perf_counter()
    specs = resolve_views(views)
    keys = [s.view_key for s in specs]
    root, out = Path(root), Path(out)
    adapter = get_adapter(dataset)(root, **(adapter_options or {}))
    samples, bad = adapter.scan()
    if limit is not None:
        samples = samples[: int(limit)]
    work = _Work(out / "work")
    settings = {
        "dataset": adapter.name, "root": str(root.resolve()), "views": keys, "specs": [s.to_dict() for s in specs],
        "detector": detector if isinstance(detector, str) else getattr(detector, "name", type(detector).__name__),
        "multi_face": multi_face, "chunk_size": chunk_size, "adapter_options": adapter_options or {},
        "detector_kwargs": detector_kwargs or {},
    }
    if fallback_detector is not None:  # only when set, so runs from before the option still resume
        settings["fallback_detector"] = (fallback_detector if isinstance(fallback_detector, str)
                                         else getattr(fallback_detector, "name", type(fallback_detector).__name__))
    if max_pixels is not None:  # only when set, so runs from before the option still resume
        settings["max_pixels"] = check_max_pixels(max_pixels)
    settings_path = work.dir / "settings.json"
    if settings_path.exists():
        old = json.loads(settings_path.read_text())
        if old != json.loads(json.dumps(settings)):
            raise ValueError(f"{out} holds an unfinished run with other settings; remove {work.dir} to start over")
    work.shards.mkdir(parents=True, exist_ok=True)
    _atomic_json(settings_path, settings)

    n = len(samples)
    n_chunks = math.ceil(n / chunk_size)
    expected = {c: min(chunk_size, n - c * chunk_size) for c in range(n_chunks)}
    done = work.load(expected)
    todo = [c for c in range(n_chunks) if c not in done]
    given = detector == GIVEN
    tasks = [
        (c, [(i, str(samples[i].path), *([samples[i].box] if given else []))
             for i in range(c * chunk_size, c * chunk_size + expected[c])], keys)
        for c in todo
    ]
    resumed_items = sum(len(v) for v in done.values())

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, initial=resumed_items, unit="img", desc=f"prepare {adapter.name}", dynamic_ncols=True)
    t_run = time.perf_counter()
    run_faces = run_items = 0
    committed = 0
    init_args = (specs, detector, multi_face, detector_kwargs or {}, fallback_detector, max_pixels)
    try:
        if workers <= 1 or len(tasks) <= 1:
            _init_worker(*init_args)
            results: Iterable = map(_process_chunk, tasks)
            pool = None
        else:
            pool = WorkerPool(workers, _init_worker, init_args)  # one OpenCV thread per worker
            results = ordered_map(pool, _process_chunk, tasks, 2 * workers,
                                  crashed=lambda task, e: _chunk_item_by_item(pool, task))
        try:
            for chunk, records, stacked, seconds in results:
                work.commit(chunk, records, stacked, seconds)
                done[chunk] = records
                committed += 1
                run_items += len(records)
                run_faces += sum(r["faces"] for r in records)
                if bar is not None:
                    bar.update(len(records))
                    bar.set_postfix(faces=run_faces, refresh=False)
                if stop_after is not None and committed >= stop_after:
                    raise PrepareInterrupted(f"stopped after {committed} chunk(s) as asked")
        finally:
            if pool is not None:
                pool.close()
    finally:
        if bar is not None:
            bar.close()
    run_seconds = time.perf_counter() - t_run

    items = {r["index"]: r for c in sorted(done) for r in done[c]}
    cache = _consolidate(out, work, adapter.name, samples, items, specs, n_chunks)
    report = _report(adapter.name, root, out, settings, samples, bad, items, cache, run_items, run_faces,
                     run_seconds, resumed_items, time.perf_counter() - t_start, getattr(adapter, "notices", []))
    _atomic_json(out / "report.json", report)
    cache.info.update({k: report[k] for k in ("dataset", "settings", "counts", "duplicates_summary")})
    _atomic_json(out / "info.json", cache.info)
    if not keep_work:
        shutil.rmtree(work.dir, ignore_errors=True)
    return PreparedCache(out)


def _consolidate(out: Path, work: _Work, dataset: str, samples: list[Sample], items: dict[int, dict],
                 specs: list[PreprocessSpec], n_chunks: int) -> PreparedCache:
    """Shards -> views (rows in sample order, then face order), meta.npz and the split files."""
    rows: list[tuple[int, int]] = [(i, j) for i in sorted(items) for j in range(items[i]["faces"])]
    n_rows = len(rows)
    wanted = {s.view_key for s in specs}
    for old in (out / "views").glob("*.npy") if (out / "views").is_dir() else ():
        if old.name[:-4] not in wanted:
            old.unlink()  # a view of an earlier run in the same folder, with other settings
    views = {s.view_key: create_view(out, s.view_key, (n_rows, *crop_shape(s))) for s in specs}
    at = 0
    for c in range(n_chunks):
        with np.load(work.shard(c)) as z:
            m = None
            for key, view in views.items():
                a = z[key]
                m = 0 if a.ndim == 1 else len(a)
                if m:
                    if a.shape[1:] != view.shape[1:]:
                        raise ValueError(f"chunk {c}: view {key} crops have shape {a.shape[1:]}, "
                                         f"expected {view.shape[1:]}")
                    view[at:at + m] = a
            at += m or 0
    if at != n_rows:
        raise RuntimeError(f"shards hold {at} faces, the journal {n_rows}: remove {work.dir} and rerun")
    for v in views.values():
        v.flush()
    del views
    meta: dict[str, list] = defaultdict(list)
    for i, j in rows:
        s, rec = samples[i], items[i]
        meta["age"].append(s.age)
        meta["age_std"].append(s.age_std)
        meta["gender"].append(s.gender)
        meta["race"].append(s.race)
        meta["age_group"].append(s.age_group)
        meta["subject"].append(s.subject)
        meta["hash"].append(rec["hash"])
        meta["source"].append(s.source)
        meta["face_index"].append(j)
        meta["origin_split"].append(s.origin_split)
        meta["box"].append(rec["boxes"][j])
        meta["score"].append(rec["scores"][j])
    cols: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in meta.items() if k not in ("box", "score")}
    cols["box"] = np.asarray(meta["box"], dtype=np.float32).reshape(n_rows, 4)
    cols["score"] = np.asarray(meta["score"], dtype=np.float32)
    cols["origin_split"] = np.asarray(meta["origin_split"], dtype=str)
    for k in ("subject", "hash", "source"):
        cols[k] = np.asarray(meta[k], dtype=str)
    cols = write_meta(out, cols)
    info_path = out / "info.json"
    _atomic_json(info_path, {"dataset": dataset, "rows": n_rows})
    cache = PreparedCache(out)
    for protocol in protocols_for(dataset):
        cache.write_splits(protocol, make_splits(protocol, cols))
    return cache


def duplicate_report(samples: list[Sample], items: dict[int, dict]) -> dict[str, Any]:
    """Groups of byte-identical source files and the groups whose labels disagree (age or gender)."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, rec in items.items():
        if rec["hash"]:
            by_hash[rec["hash"]].append(i)
    groups = {h: idx for h, idx in by_hash.items() if len(idx) > 1}
    conflicts = []
    n_age = n_gender = 0
    for h, idx in sorted(groups.items(), key=lambda kv: samples[kv[1][0]].source):
        ages = sorted({samples[i].age for i in idx if not math.isnan(samples[i].age)})
        genders = sorted({samples[i].gender for i in idx if samples[i].gender != -1})
        age_c, gender_c = len(ages) > 1, len(genders) > 1
        n_age += age_c
        n_gender += gender_c
        if age_c or gender_c:
            conflicts.append({"hash": h, "sources": [samples[i].source for i in idx],
                              "ages": ages, "genders": genders})
    return {
        "hashed_files": sum(len(v) for v in by_hash.values()),
        "distinct_contents": len(by_hash),
        "groups": len(groups),
        "files_in_groups": sum(len(v) for v in groups.values()),
        "age_conflicts": n_age,
        "gender_conflicts": n_gender,
        "label_conflicts": len(conflicts),
        "conflict_groups": conflicts,
    }


def split_leaks(cache: PreparedCache) -> dict[str, int]:
    """Per protocol: content hashes found in more than one split of the same fold/run (0 = no leak).

    Splits are grouped by the prefix before their last ``_`` (``fold0_train`` and ``fold0_test``
    belong together; ``train``/``val``/``test`` form one group). Protocols that follow a dataset's
    own lists report the duplicates those lists put on both sides.
    """
    h = cache.meta["hash"]
    out = {}
    for p in cache.protocols:
        groups: dict[str, list[np.ndarray]] = defaultdict(list)
        for name, idx in cache.splits(p).items():
            groups[name.rpartition("_")[0]].append(idx)
        leaks = 0
        for parts in groups.values():
            seen = Counter(v for idx in parts for v in set(h[idx].tolist()))
            leaks += sum(1 for c in seen.values() if c > 1)
        out[p] = leaks
    return out


def _report(dataset, root, out, settings, samples, bad, items, cache, run_items, run_faces, run_seconds,
            resumed_items, total_seconds, notices=()) -> dict[str, Any]:
    dropped = [{"source": samples[i].source, "reason": r["error"]} for i, r in sorted(items.items()) if r["error"]]
    face_drops = Counter(reason_kind(d) for r in items.values() for d in r["dropped"])
    dup = duplicate_report(samples, items)
    kept_images = sum(1 for r in items.values() if r["faces"] > 0)
    counts = {
        "records": len(samples) + len(bad),
        "bad_records": len(bad),
        "notices": len(notices),
        "images_processed": len(items),
        "images_kept": kept_images,
        "images_dropped": len(dropped),
        "faces_kept": len(cache),
        "duplicate_groups": dup["groups"],
        "files_in_duplicate_groups": dup["files_in_groups"],
        "distinct_contents": dup["distinct_contents"],
        "label_conflict_groups": dup["label_conflicts"],
    }
    if settings.get("fallback_detector"):
        counts["images_from_fallback"] = sum(1 for r in items.values() if r.get("fallback") and r["faces"] > 0)
    return {
        "dataset": dataset,
        "root": str(root),
        "out": str(out),
        "settings": settings,
        "counts": counts,
        "bad_by_reason": dict(Counter(reason_kind(b.reason) for b in bad).most_common()),
        "dropped_by_reason": dict(Counter(reason_kind(d["reason"]) for d in dropped).most_common()),
        "faces_not_kept_by_reason": dict(face_drops.most_common()),
        "bad_records": [{"source": b.source, "reason": b.reason} for b in bad],
        "notices": [{"source": n.source, "message": n.message} for n in notices],
        "dropped": dropped,
        "duplicates_summary": {k: v for k, v in dup.items() if k != "conflict_groups"},
        "duplicates": dup,
        "splits": {p: {k: int(len(v)) for k, v in cache.splits(p).items()} for p in cache.protocols},
        "split_leaks": split_leaks(cache),
        "timing": {
            "this_run_images": run_items,
            "this_run_faces": run_faces,
            "this_run_seconds": round(run_seconds, 2),
            "images_per_s": round(run_items / run_seconds, 2) if run_seconds > 0 and run_items else None,
            "faces_per_s": round(run_faces / run_seconds, 2) if run_seconds > 0 and run_faces else None,
            "resumed_images": resumed_items,
            "total_seconds": round(total_seconds, 2),
            "cpu_count": os.cpu_count(),
        },
    }


SHOWN_NOTICES = 10  # notices printed by format_summary (all are in report.json)


def format_summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal: counts, reasons, duplicates, splits, speed."""
    c, t = report["counts"], report["timing"]
    lines = [
        f"{report['dataset']}: {c['records']} records, {c['bad_records']} bad; {c['images_processed']} images "
        f"processed, {c['images_kept']} kept ({c['faces_kept']} faces), {c['images_dropped']} dropped",
    ]
    for title, key in (("bad records", "bad_by_reason"), ("dropped", "dropped_by_reason"),
                       ("faces not kept", "faces_not_kept_by_reason")):
        if report[key]:
            lines.append(f"  {title}: " + "; ".join(f"{k} x{v}" for k, v in report[key].items()))
    notes = report.get("notices") or []
    for n in notes[:SHOWN_NOTICES]:
        lines.append(f"  notice: {n['message']}")
    if len(notes) > SHOWN_NOTICES:
        lines.append(f"  ... {len(notes) - SHOWN_NOTICES} more notices in report.json")
    d = report["duplicates_summary"]
    lines.append(f"  duplicates: {d['groups']} groups ({d['files_in_groups']} files), {d['distinct_contents']} "
                 f"distinct contents; label conflicts: {d['age_conflicts']} age, {d['gender_conflicts']} gender")
    for p, s in report["splits"].items():
        shown = ", ".join(f"{k} {v}" for k, v in list(s.items())[:6]) + (" ..." if len(s) > 6 else "")
        lines.append(f"  split {p}: {shown}; content hashes in two splits: {report['split_leaks'][p]}")
    if t["this_run_seconds"]:
        lines.append(f"  this run: {t['this_run_images']} images in {t['this_run_seconds']} s "
                     f"({t['images_per_s']} img/s, {t['faces_per_s']} faces/s on {t['cpu_count']} CPUs); "
                     f"{t['resumed_images']} resumed from a previous run")
    lines.append(f"  report: {Path(report['out']) / 'report.json'}")
    return "\n".join(lines)
