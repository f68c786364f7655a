"""The predictor: photos (paths, folders, arrays) in, per-face boxes, ages and genders out.

``Estimator.from_pretrained("age", gender="gender")`` combines an age model and a gender
model behind one face pipeline (detect, align, crop once per face for every spec needed),
batches all faces of a call through each model, and reports unusable inputs in the result
instead of raising. ONNX Runtime is the default CPU backend; a PyTorch checkpoint is
exported on first use into ``$AGEKIT_CACHE`` (default ``~/.cache/agekit/onnx``) or, when
that is not writable, next to the checkpoint.

Default detector for photos: ``mtcnn_fast`` (:data:`agekit.inference.options.DEFAULT_DETECTOR`) - MTCNN down to
80 px faces, and to 20 px only when that finds none, with dlib's 5 landmarks (~9 ms CPU for a 640x480 photo with
one large face). ``cascade`` is dlib HOG on a grey copy shrunk to a 320 px longer side without upsampling (faces >=
~160 px in a 640x480 photo; ~8 ms CPU) and, only when that finds no face, dlib HOG on the full RGB photo with
upsample 1 (faces >= ~40 px; ~128 ms CPU). ``detector="mtcnn"`` searches every face size at once (group photos with
large and small faces), ``detector="dlib"`` is dlib's full pass alone, ``detector="cropped"`` is for inputs that are
face crops. ``fallback="cropped"`` uses the whole image when the detector finds no face (already-cropped faces the
detector misses).
"""
from __future__ import annotations

import glob
import hashlib
import io
import itertools
import os
import sys
import time
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# torch-free: the ONNX path of a core install never imports torch (checkpoints and the torch backend load it on use)
from agekit.inference.options import DEFAULT_DETECTOR
from agekit.inference.results import FaceResult, PhotoResult  # noqa: F401  (typed results)
from agekit.inference.runtime import OnnxRunner, read_onnx_card
from agekit.inference.weights import NoShippedWeightsError, resolve_weights
from agekit.preprocessing import PreprocessSpec

CHECKPOINT_EXTS = {".safetensors", ".pt", ".ckpt", ".pth"}
BACKENDS = ("onnx", "torch")


def default_cache_dir() -> Path:
    """Where exported ONNX files of checkpoints are kept: ``$AGEKIT_CACHE/onnx`` or ``~/.cache/agekit/onnx``."""
    root = os.environ.get("AGEKIT_CACHE")
    return Path(root) / "onnx" if root else Path.home() / ".cache" / "agekit" / "onnx"


def _file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def cached_onnx(checkpoint: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The ONNX export of a checkpoint, made (with its parity check) on first use and reused by content hash."""
    from agekit.export.onnx import export_onnx

    ckpt = Path(checkpoint)
    name = f"{ckpt.stem}-{_file_digest(ckpt)}.onnx"
    dirs = [Path(cache_dir)] if cache_dir is not None else [default_cache_dir(), ckpt.parent]
    for d in dirs:
        if (d / name).is_file() and (d / name).with_suffix(".json").is_file():
            return d / name
    last: Exception | None = None
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / f".{name}.{os.getpid()}.onnx"
            export_onnx(ckpt, tmp)
            tmp.with_suffix(".json").replace((d / name).with_suffix(".json"))
            tmp.replace(d / name)
            return d / name
        except OSError as e:  # not writable: try the next place
            last = e
    raise OSError(f"cannot write the ONNX export of {ckpt} to {dirs}: {last}")


@dataclass
class ModelHead:
    """One loaded model: what it is, how to feed it, and the runner that executes it."""

    name: str  # registry name
    spec: PreprocessSpec
    runner: Any
    source: str
    card: dict[str, Any] = field(default_factory=dict)
    flip: bool | None = None  # None: as the model card says (``inference.flip``), else forced on/off

    @property
    def backend(self) -> str:
        return self.runner.backend

    @property
    def flip_average(self) -> bool:
        """Average each face with its mirror image (test-time flip; the card's metrics were measured so)."""
        if self.flip is not None:
            return bool(self.flip)
        return bool(((self.card or {}).get("inference") or {}).get("flip", False))


def _same_model(a: str | Path, b: str | Path) -> bool:
    """Whether two model arguments (shipped names, aliases or paths) name the same weights."""

    def where(x: str | Path) -> Path | None:
        p = Path(x)
        if p.exists():
            return p.resolve()
        try:
            return Path(resolve_weights(str(x))["path"]).resolve()
        except NoShippedWeightsError:
            return None

    wa, wb = where(a), where(b)
    return wa is not None and wa == wb


def load_head(
    name_or_path: str | Path,
    backend: str = "onnx",
    cache_dir: str | Path | None = None,
    threads: int | None = None,
) -> ModelHead:
    """A :class:`ModelHead` from a shipped weight name, an agekit checkpoint or an exported .onnx (+ .json)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    p = Path(name_or_path)
    shipped_onnx = source = None
    if not p.exists():
        if p.suffix.lower() in CHECKPOINT_EXTS | {".onnx"} or os.sep in str(name_or_path):
            raise FileNotFoundError(f"{name_or_path}: no such model file")
        entry = resolve_weights(str(name_or_path))
        p, shipped_onnx = Path(entry["path"]), entry.get("onnx")
    if backend == "onnx" and shipped_onnx is not None:  # a shipped weight: its exported graph and JSON card
        p, source = Path(shipped_onnx), str(p)
    if p.suffix.lower() == ".onnx":
        info = read_onnx_card(p)
        if backend == "torch":
            src = info.get("onnx", {}).get("source_checkpoint")
            if not src or not Path(src).is_file():
                raise ValueError(f"{p}: an .onnx file runs on the onnx backend only (its checkpoint is not at hand)")
            return load_head(src, "torch", cache_dir, threads)
        spec = PreprocessSpec.from_dict(info["preprocess"])
        return ModelHead(info["model"], spec, OnnxRunner(p, threads=threads), source or str(p), info)
    from agekit.extras import require_extra

    # a checkpoint runs on torch, or is exported to ONNX on first use: both need torch (not in the core install)
    require_extra("export" if backend == "onnx" else "train", f"the checkpoint {p.name} (on the {backend} backend)")
    from agekit.inference.backends import TorchRunner
    from agekit.methods import load_method
    from agekit.models.checkpoint import load_checkpoint

    loaded = load_checkpoint(p)
    if backend == "torch":
        runner: Any = TorchRunner(loaded.model, load_method(loaded.method, loaded.name, loaded.card), threads=threads)
    else:
        onnx_path = shipped_onnx or cached_onnx(p, cache_dir)
        runner = OnnxRunner(onnx_path, threads=threads)
    return ModelHead(loaded.name, loaded.preprocess, runner, str(p), loaded.card)


class Inputs(list):
    """What :func:`expand_inputs` returns: (source, object) pairs, passed on as they are (folders listed once)."""


ACCEPTED_INPUTS = ("a path (str or os.PathLike: an image file, a folder or a glob), a numpy array (HxWx3 uint8, RGB "
                   "unless colour='bgr'; HxW grey; HxWx4 RGBA; or a stack NxHxWx3), a PIL image, bytes (an encoded "
                   "image), a binary file object (opened with 'rb', or io.BytesIO), or a list or other iterable of them")
COLOURS = ("rgb", "bgr")


@dataclass(frozen=True)
class EncodedImage:
    """Encoded image bytes (``bytes`` or what a binary file object held): decoded by
    :func:`agekit.face.io.decode_image` (format sniffed, pixel count checked from the header) where it is processed."""

    data: bytes
    name: str


def expand_inputs(x: Any, colour: str = "rgb") -> Inputs:
    """Inputs as (source label, path or RGB array or :class:`EncodedImage` or ``Exception``) pairs: folders list
    their images, globs expand, arrays in ``colour`` order ("rgb" or "bgr") become RGB, PIL images become RGB arrays,
    bytes and binary file objects become :class:`EncodedImage`. Anything else raises ``TypeError`` naming what is
    accepted (see :data:`ACCEPTED_INPUTS`)."""
    if isinstance(x, Inputs):  # already expanded: do not list the folders again
        return x
    colour = str(colour).lower()
    if colour not in COLOURS:
        raise ValueError(f"colour must be 'rgb' or 'bgr', not {colour!r}")
    counts: dict[str, int] = {}
    return Inputs(_expand(x, colour, counts))


def _path_items(x: str | os.PathLike) -> list[tuple[str, Any]]:
    """A path given as an input: a regular file is read whatever its suffix; a folder lists its entries
    (:func:`agekit.face.io.scan_folder`: every entry is read or named with its reason); a glob expands
    (each hit judged like a folder entry); anything else is named with its reason."""
    from agekit.face.io import ImageReadError, entry_reason, scan_folder, stat_reason

    p = Path(x)
    reason = stat_reason(p)
    if reason is None:
        return [(str(p), p)]
    if os.path.isdir(p):
        items = [(str(f), f if why is None else ImageReadError(why, f)) for f, why in scan_folder(p)]
        return items or [(str(p), ImageReadError("empty folder", p))]
    if any(c in str(x) for c in "*?[") and not os.path.lexists(p):  # a pattern (not a file with such a name)
        hits = sorted(glob.glob(str(x), recursive=True))
        out: list[tuple[str, Any]] = []
        for h in hits:
            why = "a folder (matched by the pattern; not searched)" if os.path.isdir(h) else entry_reason(h)
            out.append((h, Path(h) if why is None else ImageReadError(why, h)))
        if not out:  # say why when the folder the pattern starts from cannot be listed
            base = Path(*[part for part in itertools.takewhile(lambda s: not any(c in s for c in "*?["), p.parts)])
            why = stat_reason(base) if str(base) else None
            if os.path.isdir(base):
                try:
                    os.scandir(base).close()
                    why = None
                except OSError as e:
                    why = f"unreadable folder: {(e.strerror or str(e)).lower()}"
            if why is not None:
                return [(str(x), ImageReadError(f"no file matches ({base}: {why})", x))]
        return out or [(str(x), ImageReadError("no file matches", x))]
    return [(str(p), ImageReadError(reason, p))]


def _label(kind: str, counts: dict[str, int]) -> str:
    """``kind[i]``: the i-th input of that kind in the call (``array[0]``, ``image[1]``, ``bytes[0]``, ``file[2]``)."""
    i = counts.get(kind, 0)
    counts[kind] = i + 1
    return f"{kind}[{i}]"


def _as_rgb_array(a: np.ndarray, colour: str) -> Any:
    """An image array as RGB uint8 HxWx3 (grey repeated, RGBA's alpha dropped), or the ``ValueError`` saying why not."""
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or min(a.shape[:2]) < 2:
        return ValueError(f"expected an RGB uint8 HxWx3 image (or HxW grey, HxWx4 RGBA), got {a.dtype} {a.shape}")
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    a = a[:, :, :3]
    return a[:, :, ::-1] if colour == "bgr" else a


def _is_pil_image(x: Any) -> bool:
    return any(c.__module__ == "PIL.Image" and c.__name__ == "Image" for c in type(x).__mro__)


def _pil_rgb(im: Any) -> Any:
    """A PIL image as an RGB uint8 array (as a photo file of that mode would be read), or the reason it cannot be."""
    from agekit.face.io import ImageReadError, _pil_to_rgb

    try:
        im.load()
        return _pil_to_rgb(im)
    except ImageReadError as e:
        return e
    except Exception as e:  # a lazily loaded image whose file is corrupt or closed
        return ImageReadError(f"cannot load the PIL image ({type(e).__name__}: {e})")


def _file_bytes(f: Any) -> Any:
    """What a binary file object holds (read once, from where it stands), or the reason it cannot be read."""
    from agekit.face.io import ImageReadError, max_file_bytes

    if isinstance(f, io.TextIOBase):
        raise TypeError(f"predict takes {ACCEPTED_INPUTS}; got a text file object ({type(f).__name__}: open it with 'rb')")
    limit = max_file_bytes()
    try:
        data = f.read(limit + 1)
    except Exception as e:
        return ImageReadError(f"cannot read the file object ({type(e).__name__}: {e})")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"predict takes {ACCEPTED_INPUTS}; got a file object whose read() gives "
                        f"{type(data).__name__}, not bytes (open it with 'rb')")
    if len(data) > limit:
        return ImageReadError(f"larger than {limit} bytes")
    return bytes(data)


def _expand(x: Any, colour: str = "rgb", counts: dict[str, int] | None = None) -> list[tuple[str, Any]]:
    counts = {} if counts is None else counts
    if isinstance(x, np.ndarray) and x.ndim == 4:
        return [(_label("array", counts), _as_rgb_array(a, colour)) for a in x]
    if isinstance(x, np.ndarray):
        return [(_label("array", counts), _as_rgb_array(x, colour))]
    if isinstance(x, (str, os.PathLike)):
        return _path_items(x)
    if isinstance(x, (bytes, bytearray, memoryview)):
        source = _label("bytes", counts)
        return [(source, EncodedImage(bytes(x), source))]
    if _is_pil_image(x):
        name = getattr(x, "filename", "") or ""
        return [(name if isinstance(name, str) and name else _label("image", counts), _pil_rgb(x))]
    if hasattr(x, "read") and callable(x.read):  # a binary file object (open(..., "rb"), io.BytesIO, a socket file)
        name = getattr(x, "name", None)
        source = name if isinstance(name, str) and name else _label("file", counts)
        data = _file_bytes(x)
        return [(source, data if isinstance(data, Exception) else EncodedImage(data, source))]
    if isinstance(x, Iterable) and not isinstance(x, (dict, set, frozenset)):  # a list, tuple or generator of inputs
        out: list[tuple[str, Any]] = []
        for item in x:
            out.extend(_expand(item, colour, counts))
        return out
    raise TypeError(f"predict takes {ACCEPTED_INPUTS}; got a {type(x).__name__}")


def _check_array(a: np.ndarray) -> np.ndarray:
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) < 2:
        raise ValueError(f"expected an RGB uint8 HxWx3 image, got {a.dtype} {a.shape}")
    return np.ascontiguousarray(a)


def _face_record(det: Any, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """A detection as a result record; ``size`` (width, height): its box is clipped to the image."""
    lm = getattr(det, "landmarks", None)
    box = [float(v) for v in np.asarray(det.box).reshape(-1)[:4]]
    if size is not None:
        w, h = size
        box = [min(max(box[0], 0.0), w), min(max(box[1], 0.0), h), min(max(box[2], 0.0), w), min(max(box[3], 0.0), h)]
    return {
        "box": box,
        "score": float(det.score),
        "landmarks": None if lm is None else np.asarray(lm, dtype=float).round(2).tolist(),
        "detector": getattr(det, "detector", None),
    }


def _check_workers(workers: Any) -> int | str:
    if workers == "auto":
        return "auto"
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1 or 'auto', not {workers!r}")
    return int(workers)


AUTO_PROBE_S = 0.25  # workers="auto": seconds of work in this process while the machine's load is measured
AUTO_MIN_INPUTS = 16  # ... and inputs per worker at least


def auto_workers(n_inputs: int, min_inputs: int = AUTO_MIN_INPUTS) -> int:
    """Worker processes for ``n_inputs`` photos: one per idle core this process may use, at most one per
    ``min_inputs`` photos and at most 8 (:func:`agekit.parallel.worker_count`); the machine's load is measured
    (:func:`agekit.parallel.busy_cores`, 0.2 s) only when there are photos enough for two workers."""
    from agekit.parallel import busy_cores, usable_cores, worker_count

    cores = usable_cores()
    if n_inputs < 2 * min_inputs or cores < 2:
        return 1
    return worker_count(n_inputs, cores, busy_cores(), min_per_worker=min_inputs)


def _process_input(pipeline: Any, obj: Any) -> Any:
    """The pipeline's ``FaceResult`` for one input, or the reason (a string) it could not be processed.

    A path is read with :func:`agekit.face.io.read_image` (regular files only, at most the Estimator's
    ``max_pixels``, kept on its pipeline, checked from the header)."""
    from agekit.face.io import ImageReadError, read_image

    try:
        if isinstance(obj, Exception):
            raise obj
        if isinstance(obj, np.ndarray):
            image = _check_array(obj)
        elif isinstance(obj, EncodedImage):  # bytes or a file object's content: the guarded decoder, the pixel cap
            from agekit.face.io import decode_image

            image = decode_image(obj.data, None, getattr(pipeline, "max_pixels", None))
        else:
            image = read_image(obj, getattr(pipeline, "max_pixels", None))
        result = pipeline.process(image)
        if not isinstance(obj, (np.ndarray, EncodedImage)):
            result.path = str(obj)
        result.image_size = (image.shape[1], image.shape[0])  # boxes are clipped to it
        return result
    except ImageReadError as e:
        return e.reason
    except MemoryError:
        return "out of memory"
    except Exception as e:  # reported per input, never raised for a batch
        return str(e) if str(e) else type(e).__name__


_WORKER_PIPELINE: Any = None
_WORKER_ESTIMATOR: Any = None


def _worker_init(pipeline: Any) -> None:
    global _WORKER_PIPELINE
    _WORKER_PIPELINE = pipeline


def _worker_process(obj: Any) -> Any:
    return _process_input(_WORKER_PIPELINE, obj)


def _load_detector(pipeline: Any) -> None:
    """Load the detector's models in this process (one detection on a small blank image), so that worker processes
    forked next share them instead of each reading them again; an error is left for the inputs to report."""
    try:
        for det in (pipeline.detector, pipeline.fallback):
            if det is not None:
                det.detect(np.zeros((64, 64, 3), np.uint8))
    except Exception:
        pass


def _worker_init_estimator(est: Estimator) -> None:
    """A worker that runs the whole prediction: its own ONNX Runtime sessions (one thread each: one process per
    core already), never the parent's, whose state a fork copies mid-way."""
    global _WORKER_ESTIMATOR
    for head in est.heads:
        head.runner = head.runner.fresh(threads=1)
    _WORKER_ESTIMATOR = est


def _worker_predict(obj: Any) -> Any:
    """The finished record of one input (faces through the networks), or the reason it could not be processed."""
    est = _WORKER_ESTIMATOR
    fr = _process_input(est.pipeline, obj)
    if isinstance(fr, str):
        return fr
    pending: list[tuple[dict[str, Any], Any]] = []
    rec = _result_record("", fr, pending)
    if pending:
        est._estimate(pending)
    return rec


def _worker_died(obj: Any, error: BaseException) -> str:
    """The error reported for an input on which a worker process died twice (see ``agekit.parallel.ordered_map``)."""
    return "a worker process died on this input (killed for memory, or a crash in a native library)"


def _result_record(source: str, fr: Any, pending: list[tuple[dict[str, Any], Any]]) -> dict[str, Any]:
    """The result dict of one input; its faces are appended to ``pending`` for the networks."""
    res: dict[str, Any] = {"source": source, "faces": [], "dropped": [], "error": None}
    if isinstance(fr, str):
        res["error"] = fr
        return res
    res["error"] = fr.error
    size = getattr(fr, "image_size", None)
    res["dropped"] = [{**(_face_record(d, size) if d is not None else {}), "reason": why} for d, why in fr.dropped]
    for face in fr.faces:
        rec = _face_record(face.detection, size)
        rec["detector"] = face.detector or rec["detector"]
        res["faces"].append(rec)
        pending.append((rec, face))
    return res


def _drop_non_finite(rec: dict[str, Any]) -> None:
    """A face whose network outputs are not finite (NaN or inf: broken weights) keeps them as None, with a reason."""
    bad = [k for k in ("age", "uncertainty", "gender_female") if isinstance(rec.get(k), float) and not np.isfinite(rec[k])]
    if rec.get("age_group_probs") is not None and not np.isfinite(rec["age_group_probs"]).all():
        bad.append("age_group_probs")
    if not bad:
        return
    for k in bad:
        rec[k] = None
    if "gender_female" in bad:
        rec["gender"] = None
    if "age_group_probs" in bad:
        rec["age_group"] = None
    rec["error"] = f"the model gave a non-finite {', '.join(bad)} (NaN or inf) for this face: its weights may be broken"


class Estimator:
    """Age (and gender) of every face in photos, with an age model and an optional gender model.

    ``detector``: a name for ``get_detector`` (default ``mtcnn_fast``: MTCNN with dlib's landmarks, down to 80 px
    faces and further only when it finds none; see the module docstring) or a Detector; ``fallback``:
    a detector run when ``detector`` finds no face (e.g. ``"cropped"``), default none.
    ``max_pixels``: photos with more pixels are refused from their header, before any decoding
    (default :data:`agekit.face.io.DEFAULT_MAX_PIXELS`, 80 MP). Folders and globs are listed with
    :func:`agekit.face.io.scan_folder`: every entry is read or reported with its reason.
    """

    def __init__(
        self,
        age: ModelHead | None,
        gender: ModelHead | None = None,
        detector: Any = DEFAULT_DETECTOR,
        multi_face: str = "all",
        batch_size: int = 64,
        fallback: Any = None,
        workers: int | str = 1,
        max_pixels: int | None = None,
        **detector_kwargs: Any,
    ):
        from agekit.face.io import check_max_pixels
        from agekit.face.pipeline import FacePipeline

        if age is None and gender is None:
            raise ValueError("an Estimator needs an age model, a gender model or both")
        self.age_head, self.gender_head = age, gender
        self.heads = [h for h in (age, gender) if h is not None]
        specs = list({h.spec.view_key: h.spec for h in self.heads}.values())
        self.pipeline = FacePipeline(specs, detector=detector, multi_face=multi_face, fallback=fallback,
                                     **detector_kwargs)
        self.batch_size = batch_size
        self.multi_face = multi_face
        self.workers = _check_workers(workers)
        self.auto_chose: int | None = None  # the worker count the last workers="auto" call chose
        self.max_pixels = check_max_pixels(max_pixels)  # photos with more pixels are refused from their header
        self.pipeline.max_pixels = self.max_pixels  # read by _process_input, here and in worker processes

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = "age",
        backend: str = "onnx",
        detector: Any = DEFAULT_DETECTOR,
        multi_face: str = "all",
        gender: str | Path | None = None,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        batch_size: int = 64,
        fallback: Any = None,
        flip: bool | None = None,
        workers: int | str = 1,
        max_pixels: int | None = None,
        **detector_kwargs: Any,
    ) -> Estimator:
        """Load a shipped weight ("age", "gender", a weight name) or a .pt/.ckpt/.onnx file, plus an optional gender model.

        ``flip``: average each face with its mirror image; ``None`` follows each model card
        (``inference.flip``, set when the card's metrics were measured with flip averaging).
        ``max_pixels``: photos with more pixels are refused from their header, before decoding
        (default :data:`agekit.face.io.DEFAULT_MAX_PIXELS`).
        """
        age = load_head(name_or_path, backend, cache_dir, threads) if name_or_path is not None else None
        if gender is not None and age is not None and _same_model(name_or_path, gender):
            gender = None  # one model gives both (e.g. "age" and "gender" alias one shipped weight): run it once
        g = load_head(gender, backend, cache_dir, threads) if gender is not None else None
        for h in (age, g):
            if h is not None:
                h.flip = flip
        return cls(age, g, detector=detector, multi_face=multi_face, batch_size=batch_size, fallback=fallback,
                   workers=workers, max_pixels=max_pixels, **detector_kwargs)

    def describe(self) -> str:
        """One line naming the models and backend, then the weights' licence and intended use (from the cards)."""
        heads = (("age", self.age_head), ("gender", self.gender_head))
        parts = [f"{k} {h.name} ({h.backend}, {h.source})" for k, h in heads if h]
        licence = self.licence()
        return "; ".join(parts) + (f"; weights: {licence}" if licence else "")

    def licence(self) -> str:
        """The models' licence terms as their cards state them (``licence_short`` or ``licence``), with the intended
        use; empty when no card says."""
        terms = []
        for h in self.heads:
            card = h.card or {}
            text = card.get("licence_short") or card.get("licence")
            if text and text not in terms:
                terms.append(str(text))
        if not terms:
            return ""
        return " ".join(terms) + " Research on age estimation only; not for decisions about individuals."

    def predict(self, x: Any, chunk: int = 256, workers: int | None = None,
                progress: bool = False, colour: str = "rgb") -> list[PhotoResult]:
        """One :class:`~agekit.inference.results.PhotoResult` per input image: ``source``, ``faces`` (each a
        :class:`~agekit.inference.results.FaceResult`: box, landmarks, age, uncertainty, gender, P(female)),
        ``dropped``, ``error``; ``to_dict()`` gives the plain record.

        ``x``: a path (file, folder or glob), a numpy array (HxWx3 uint8 in ``colour`` order: ``"rgb"``, the
        default, or ``"bgr"`` as OpenCV reads; HxW grey; HxWx4 RGBA; a NxHxWx3 stack), a PIL image, ``bytes`` of an
        encoded image, a binary file object, or a list of them; anything else raises ``TypeError`` naming what is
        accepted. Every face is reported unless the Estimator was made with ``multi_face="largest"``. Bad inputs
        are reported in ``error`` (a reason string); they never stop the batch. Faces go through the networks in
        groups of ``chunk``. ``workers`` (default: the Estimator's): processes that decode, detect and crop the
        inputs in parallel (in input order) while this one runs the networks; 1 does everything here.
        ``progress``: a progress bar on stderr (when it is a terminal). :meth:`iter_predict` gives the same
        results as they come.
        """
        return list(self.iter_predict(x, chunk=chunk, workers=workers, progress=progress, colour=colour))

    def iter_predict(self, x: Any, chunk: int = 256, workers: int | None = None, progress: bool = False,
                     skip: Container[str] = (), colour: str = "rgb") -> Iterator[PhotoResult]:
        """:meth:`predict`'s results one by one, in input order, each as soon as its faces have been through the
        networks (at most ``chunk`` faces wait). ``skip``: sources (as :func:`expand_inputs` names them) not to
        process at all, e.g. those a resumed run already wrote."""
        items = [it for it in expand_inputs(x, colour) if it[0] not in skip]
        workers = _check_workers(self.workers if workers is None else workers)
        if workers != "auto":
            workers = min(workers, max(1, len(items)))
        bar = None
        if progress and getattr(sys.stderr, "isatty", lambda: False)():  # tqdm shows nothing on a pipe or file
            from tqdm import tqdm

            bar = tqdm(total=len(items), unit="img", desc="predict", disable=None, dynamic_ncols=True)
        try:
            on_input = bar.update if bar else None
            recs = (self._iter_auto(items, chunk, on_input, len(items)) if workers == "auto"
                    else self.iter_items(items, chunk=chunk, workers=workers, on_input=on_input))
            for rec in recs:
                yield PhotoResult.from_dict(rec)
        finally:
            if bar is not None:
                bar.close()

    def iter_items(self, items: Iterable[tuple[str, Any]], chunk: int = 256, workers: int | None = None,
                   on_input: Any = None) -> Iterator[dict[str, Any]]:
        """Results of (source, path or RGB array or ``Exception``) pairs drawn lazily from ``items`` (video frames),
        in order; ``workers`` > 1 process them in that many processes with at most ``4 * workers`` inputs in flight
        (``"auto"``: see :meth:`_iter_auto`). With ONNX Runtime models each worker
        runs the whole prediction of its input (faces through the networks, one thread) and sends back its record,
        so this process only collects them; PyTorch models run here, on the faces the workers found.
        ``on_input(1)`` is called as each input's faces are found (a progress bar's ``update``)."""
        from agekit.parallel import WorkerPool, ordered_map

        workers = _check_workers(self.workers if workers is None else workers)
        if workers == "auto":
            yield from self._iter_auto(items, chunk, on_input)
            return
        remote = workers > 1 and all(callable(getattr(h.runner, "fresh", None)) for h in self.heads)
        pool = None
        if workers > 1:
            _load_detector(self.pipeline)  # here, once: the forked workers share the models
            pool = (WorkerPool(workers, _worker_init_estimator, (self,)) if remote
                    else WorkerPool(workers, _worker_init, (self.pipeline,)))
        try:
            sources: list[str] = []

            def objs() -> Iterator[Any]:
                for source, obj in items:
                    sources.append(source)
                    yield obj

            if remote:
                for k, out in enumerate(ordered_map(pool, _worker_predict, objs(), 4 * workers, _worker_died)):
                    if isinstance(out, str):
                        out = _result_record(sources[k], out, [])
                    else:
                        out["source"] = sources[k]
                    sources[k] = ""
                    if on_input is not None:
                        on_input(1)
                    yield out
                return
            frs: Iterable[Any] = (ordered_map(pool, _worker_process, objs(), 4 * workers, _worker_died) if pool is not None
                                  else (_process_input(self.pipeline, obj) for obj in objs()))
            ready: list[dict[str, Any]] = []
            pending: list[tuple[dict[str, Any], Any]] = []
            for k, fr in enumerate(frs):
                ready.append(_result_record(sources[k], fr, pending))
                sources[k] = ""  # drop the reference: a long video's labels need not pile up
                if on_input is not None:
                    on_input(1)
                if len(pending) >= chunk:
                    self._estimate(pending)
                    pending = []
                    yield from ready
                    ready = []
            if pending:
                self._estimate(pending)
            yield from ready
        finally:
            if pool is not None:
                pool.close()

    def _iter_auto(self, items: Iterable[tuple[str, Any]], chunk: int, on_input: Any,
                   n_items: int | None = None) -> Iterator[dict[str, Any]]:
        """:meth:`iter_items` with ``workers="auto"``: the first inputs are processed here for ``AUTO_PROBE_S``
        seconds while the other processes' CPU use is measured (/proc/stat, less this process's own); then the rest
        goes to :func:`agekit.parallel.worker_count` workers (one per idle core, one per 16 inputs left), kept in
        ``self.auto_chose``. The measurement costs no time; fewer than 32 inputs (``n_items``, when known) are done
        here without it."""

        from agekit.parallel import cpu_mark, others_busy, usable_cores, worker_count

        it = iter(items)
        cores = usable_cores()
        if cores < 2 or (n_items is not None and n_items < 2 * AUTO_MIN_INPUTS):
            self.auto_chose = 1
            yield from self.iter_items(it, chunk=chunk, workers=1, on_input=on_input)
            return
        mark, taken = cpu_mark(), 0

        def probe() -> Iterator[tuple[str, Any]]:
            nonlocal taken
            for item in it:
                taken += 1
                yield item
                if time.monotonic() - mark[2] >= AUTO_PROBE_S:
                    return

        yield from self.iter_items(probe(), chunk=chunk, workers=1, on_input=on_input)
        left = (n_items - taken) if n_items is not None else 1 << 30
        workers = worker_count(left, cores, others_busy(mark), min_per_worker=AUTO_MIN_INPUTS) if left > 0 else 1
        self.auto_chose = workers
        yield from self.iter_items(it, chunk=chunk, workers=workers, on_input=on_input)

    def predict_image(self, image_rgb: np.ndarray, source: str = "array[0]") -> dict[str, Any]:
        """The result of one RGB uint8 image (video frames, webcam)."""
        return self._predict_items([(source, image_rgb)])[0]

    def _predict_items(self, items: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
        pending: list[tuple[dict[str, Any], Any]] = []
        results = [_result_record(source, _process_input(self.pipeline, obj), pending) for source, obj in items]
        if pending:
            self._estimate(pending)
        return results

    def _run_head(self, head: ModelHead, faces: Sequence[Any]) -> dict[str, np.ndarray]:
        spec = head.spec
        crops = np.stack([f.crops[spec.view_key] for f in faces])
        views = 1
        if spec.crops == "lmtcnn":  # LMTCNN's test-time ten views, averaged per face
            from agekit.face.crops import lmtcnn_ten_views

            crops = np.stack([lmtcnn_ten_views(c, spec.size) for c in crops])
            views = crops.shape[1]
            crops = crops.reshape(-1, *crops.shape[2:])
        flip = head.flip_average
        outs: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(crops), self.batch_size):
            x = spec.normalize_numpy(crops[i : i + self.batch_size])
            n = len(x)
            if flip:  # the face and its mirror image in one call; their outputs averaged below
                x = np.concatenate([x, x[..., ::-1]])
            for k, v in head.runner(x).items():
                outs.setdefault(k, []).append(0.5 * (v[:n] + v[n:]) if flip else v)
        merged = {k: np.concatenate(v) for k, v in outs.items()}
        if views > 1:
            merged = {k: v.reshape(len(faces), views, *v.shape[1:]).mean(1) for k, v in merged.items()}
        return merged

    def _estimate(self, pending: Sequence[tuple[dict[str, Any], Any]]) -> None:
        faces = [f for _, f in pending]
        for head in self.heads:
            is_gender_head = head is self.gender_head
            out = self._run_head(head, faces)
            for j, (rec, _) in enumerate(pending):
                if not is_gender_head:
                    if "age" in out:
                        rec["age"] = float(out["age"][j])
                    if "uncertainty" in out:
                        rec["uncertainty"] = float(out["uncertainty"][j])
                    if "age_group_probs" in out:
                        probs = out["age_group_probs"][j]
                        rec["age_group"] = int(np.argmax(probs))
                        rec["age_group_probs"] = [round(float(p), 5) for p in probs]
                if "gender_female" in out and (is_gender_head or self.gender_head is None):
                    pf = float(out["gender_female"][j])
                    rec["gender_female"] = pf
                    rec["gender"] = "female" if pf >= 0.5 else "male"
        for rec, _ in pending:
            _drop_non_finite(rec)
