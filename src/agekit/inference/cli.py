"""``agekit predict``, ``agekit export`` and ``agekit bench``: thin layers over the library."""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from agekit.inference.options import detector_choice, gender_model_choice

CSV_FIELDS = ("source", "frame", "face", "x1", "y1", "x2", "y2", "age", "age_smoothed", "uncertainty",
              "gender", "gender_female", "track", "detector", "error")


def _plain(r: Any) -> dict[str, Any]:
    """A result (typed or a dict) as the record the command writes: rounded to ``PRECISION`` (ages and +- to
    0.01 year, probabilities to 0.001, boxes to whole pixels), with the same fields for photos and video frames."""
    from agekit.inference.results import PhotoResult

    return (r if isinstance(r, PhotoResult) else PhotoResult.from_dict(r)).to_dict(rounded=True)


def _rows(results: list[Any]) -> list[dict[str, Any]]:
    """One flat row per face (or per input without a face, carrying its error), rounded (see ``_plain``)."""
    rows = []
    for r in map(_plain, results):
        base = {"source": r["source"], "frame": r.get("frame"), "error": r.get("error")}
        if not r["faces"]:
            rows.append({**base, "face": None})
        for i, f in enumerate(r["faces"]):
            x1, y1, x2, y2 = f["box"]
            rows.append({**base, "face": i, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                         **{k: f.get(k) for k in ("age", "age_smoothed", "uncertainty", "gender", "gender_female", "track",
                                                     "detector")}})
    return rows


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def format_table(results: list[dict[str, Any]]) -> str:
    """A fixed-width table: one line per face, errors inline (names and reasons printed safely: see ``safe_name``)."""
    from agekit.face.io import safe_name

    head = f"{'source':<40} {'face':>4} {'box (x1,y1,x2,y2)':<22} {'age':>6} {'+-':>5} {'gender':<7} {'P(f)':>5}"
    lines = [head, "-" * len(head)]
    for row in _rows(results):
        src = safe_name(row["source"])
        src = src if len(src) <= 40 else "..." + src[-37:]
        if row["face"] is None:
            lines.append(f"{src:<40} {'-':>4} error: {safe_name(row['error'])}")
            continue
        box = ",".join(f"{row[k]:.0f}" for k in ("x1", "y1", "x2", "y2"))
        age = row["age_smoothed"] if row.get("age_smoothed") is not None else row.get("age")
        lines.append(
            f"{src:<40} {row['face']:>4} {box:<22} {_fmt(age):>6} {_fmt(row.get('uncertainty')):>5} "
            f"{_fmt(row.get('gender')):<7} {_fmt(row.get('gender_female'), 2):>5}"
        )
    return "\n".join(lines)


def format_csv(results: list[dict[str, Any]]) -> str:
    """CSV with :data:`CSV_FIELDS`, one line per row: sources and reasons are written with ``safe_name`` (control
    characters, newlines and bytes that are not UTF-8 escaped), so the file is valid UTF-8 and safe to print."""
    from agekit.face.io import safe_name

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for row in _rows(results):
        w.writerow({k: ("" if row.get(k) is None else safe_name(row[k]) if isinstance(row.get(k), str) else row[k])
                    for k in CSV_FIELDS})
    return buf.getvalue()


def _say(source: Any, reason: Any) -> None:
    """One reason line on stderr naming the input (printed safely)."""
    from agekit.face.io import safe_name

    print(f"agekit predict: {safe_name(source)}: {safe_name(reason)}", file=sys.stderr)


class Annotator:
    """``--annotate DIR``: each photo with faces, drawn, as its own file in DIR (names from ``annotation_names``).

    An existing file is kept unless ``overwrite`` (a line says so); a symlink is never followed; when DIR cannot
    be written (read-only, full) one line says so and no more images are tried (``failed`` is set)."""

    def __init__(self, out_dir: str | Path, sources: list[str], overwrite: bool = False, max_pixels: int | None = None):
        from agekit.inference.writers import OutputError, annotation_names, os_error_text

        self.out_dir = Path(out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot write into {self.out_dir}: {os_error_text(e)}") from None
        self.names = annotation_names([s for s in sources if not s.startswith("array[")])
        self.overwrite, self.max_pixels = overwrite, max_pixels
        self.failed = False

    def __call__(self, r: dict[str, Any]) -> None:
        import cv2

        from agekit.face.io import ImageReadError, read_image, safe_name
        from agekit.inference.video import draw_faces
        from agekit.inference.writers import os_error_text, write_new_file

        name = self.names.get(r["source"])
        if self.failed or not r["faces"] or name is None:
            return
        try:
            img = draw_faces(read_image(r["source"], self.max_pixels), r["faces"])
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            write_new_file(self.out_dir, name, buf.tobytes(), self.overwrite)
        except ImageReadError as e:
            _say(r["source"], f"not annotated: {e.reason}")
        except FileExistsError:
            _say(self.out_dir / name, "exists, kept (--overwrite replaces it)")
        except OSError as e:
            print(f"agekit predict: cannot write into {safe_name(self.out_dir)}: {os_error_text(e)}; "
                  "no more annotated images are written", file=sys.stderr)
            self.failed = True


def _emit(results: list[Any], args: argparse.Namespace, header: bool = True) -> None:
    if args.json:  # JSON lines: one record per photo or video frame, the same shape for both
        for r in results:
            print(json.dumps(_plain(r)))
    elif args.csv:
        text = format_csv(results)
        print(text if header else text.split("\n", 1)[1], end="")
    else:
        lines = format_table(results).splitlines()
        print("\n".join(lines if header else lines[2:]))
    sys.stdout.flush()


def _run_predict(args: argparse.Namespace) -> int:
    from agekit.inference.estimator import Estimator
    from agekit.inference.weights import NoShippedWeightsError, int8_graph

    if getattr(args, "ray", None):  # the photos of a folder or URI on a Ray cluster (agekit.integrations.ray)
        from agekit.integrations.ray import run_predict_cli

        return run_predict_cli(args)
    if not args.paths and args.video is None and args.webcam is None:
        print("agekit predict: give image paths, --video FILE or --webcam", file=sys.stderr)
        return 2
    if (args.out or args.resume or args.overwrite) and (args.video is not None or args.webcam is not None):
        print("agekit predict: --out, --resume and --overwrite are for photos; a video's or webcam's rows stream to "
              "stdout as they come (e.g. --csv > rows.csv)", file=sys.stderr)
        return 2
    if (args.resume and not args.out) or (args.overwrite and not (args.out or args.annotate)):
        print("agekit predict: --resume goes with --out FILE, --overwrite with --out FILE or --annotate DIR",
              file=sys.stderr)
        return 2
    if args.max_pixels is not None and args.max_pixels < 1:
        print(f"agekit predict: --max-pixels must be >= 1, not {args.max_pixels}", file=sys.stderr)
        return 2
    try:
        detector, detector_kwargs = detector_choice(args)
        model, gender = args.model, gender_model_choice(args)
        if getattr(args, "precision", "fp32") == "int8":  # the int8 graphs (a gender model without one stays fp32)
            if args.backend != "onnx":
                raise ValueError("--precision int8 runs on the onnx backend only")
            model = str(int8_graph(args.model))
            try:
                gender = str(int8_graph(gender)) if gender is not None else None
            except ValueError:
                pass
        est = Estimator.from_pretrained(
            model, backend=args.backend, detector=detector,
            multi_face="largest" if args.largest else (args.multi_face or "all"),
            gender=gender, threads=args.threads, fallback=args.fallback_detector, flip=args.flip,
            max_pixels=args.max_pixels, **detector_kwargs,
        )
    except (NoShippedWeightsError, FileNotFoundError, ValueError) as e:
        print(f"agekit predict: {e}", file=sys.stderr)
        return 2
    print(f"# {est.describe()}", file=sys.stderr)
    args.stream = False
    if args.video is not None:
        from agekit.face.io import safe_name
        from agekit.inference.video import is_read_error, process_video

        args.stream = True
        n = read = 0
        try:
            workers = _workers(args, 1 << 30)  # a video: many frames
            for k, res in enumerate(process_video(est, args.video, every=args.every, smoothing=args.smoothing,
                                                  workers=workers)):
                if is_read_error(res["error"]):
                    _say(res["source"], res["error"])  # a frame that could not be read: named, the video goes on
                else:
                    read += 1
                _emit([res], args, header=k == 0)
                n += res["error"] is None
        except (FileNotFoundError, ValueError) as e:
            print(f"agekit predict: {safe_name(e)}", file=sys.stderr)
            return 1
        except BrokenPipeError:
            sys.stderr.close()
            return 0
        except OSError as e:
            print(f"agekit predict: cannot write the results to stdout: {e.strerror or e}", file=sys.stderr)
            return 1
        if not read:
            print(f"agekit predict: {safe_name(args.video)}: no frame could be read "
                  "(truncated, corrupt or not a video)", file=sys.stderr)
        return 0 if n else 1
    if args.webcam is not None:
        from agekit.inference.video import run_webcam

        args.stream = True
        first = [True]

        def emit(res: dict[str, Any]) -> None:
            _emit([res], args, header=first[0])
            first[0] = False

        try:
            run_webcam(est, args.webcam, every=args.every, smoothing=args.smoothing, emit=emit)
        except RuntimeError as e:
            print(f"agekit predict: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            pass
        return 0
    from agekit.inference.estimator import expand_inputs
    from agekit.inference.writers import OutputError

    try:
        inputs = expand_inputs(args.paths)  # folders and globs listed once
        # auto: the predictor measures the machine while it starts on the first photos (no time lost)
        workers = "auto" if args.workers == "auto" else _workers(args, len(inputs))
        annotate = (Annotator(args.annotate, [s for s, _ in inputs], args.overwrite, est.max_pixels)
                    if args.annotate else None)
        if args.out:
            return _predict_to_file(est, args, inputs, workers, annotate)
        results = est.predict(inputs, workers=workers, progress=not args.no_progress)
    except (ValueError, FileExistsError) as e:
        print(f"agekit predict: {e}", file=sys.stderr)
        return 2
    except OutputError as e:
        print(f"agekit predict: {e}", file=sys.stderr)
        return 1
    for r in results:
        if r["error"]:
            _say(r["source"], r["error"])
    try:
        _emit(results, args)
    except BrokenPipeError:  # e.g. piped into head: the reader has what it wanted
        sys.stderr.close()
        return 0
    except OSError as e:
        print(f"agekit predict: cannot write the results to stdout: {e.strerror or e}", file=sys.stderr)
        return 1
    if annotate is not None:
        for r in results:
            annotate(r)
        if annotate.failed:
            return 1
    return 0 if any(r["error"] is None and r["faces"] for r in results) else 1


OUT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

PREDICT_COLUMNS = """\
output (one line per face; a photo without a face gets one line with its error):
  source   the photo (its path; array[i], bytes[i], file[i] from Python), or VIDEO#FRAME
  face     the face's number in the photo (every face by default; --largest keeps the largest)
  box      x1,y1,x2,y2: the face's box in pixels, clipped to the image
  age      the estimated age in years (a video: smoothed per tracked face)
  +-       the model's uncertainty: the standard deviation of its predicted age distribution, in years
           (- for networks without one)
  gender   female or male: P(f) >= 0.5 is female
  P(f)     the model's probability that the face is female (0 to 1)
--json prints one JSON record per line (JSON lines) for photos and video frames alike: source, frame, time_s,
error, dropped and faces (box, score, landmarks, detector, age, uncertainty, gender, gender_female, track,
age_smoothed, ...); --csv and --out FILE.csv give one row per face. Written figures are rounded: ages and +- to
0.01 year, probabilities and scores to 0.001, boxes to whole pixels, landmarks to 0.1 pixel.
The licence of the weights is the first line on stderr (# ...)."""


def _complete_lines(path: Path, csv_format: bool = False) -> str:
    """The file's text up to its last complete photo; an interrupted write is cut off the file (see
    ``agekit.inference.writers.cut_incomplete_tail``)."""
    from agekit.face.io import safe_name
    from agekit.inference.writers import cut_incomplete_tail

    text, note = cut_incomplete_tail(path, csv_format)
    if note:
        print(f"agekit predict: {safe_name(path)}: {note}", file=sys.stderr)
    return text


def done_sources(path: Path) -> set[str]:
    """The sources a results file (``--out``) already holds: what ``--resume`` skips (a CSV holds them as
    ``safe_name`` wrote them; JSON lines hold them exactly)."""
    fmt = OUT_FORMATS[path.suffix.lower()]
    text = _complete_lines(path, fmt == "csv")
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if text and tuple(reader.fieldnames or ()) != CSV_FIELDS:
            raise ValueError(f"{path} is not an agekit predict CSV (its header differs); choose another --out")
        return {row["source"] for row in reader}
    done = set()
    for i, line in enumerate(text.splitlines(), 1):
        try:
            done.add(json.loads(line)["source"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{i} is not an agekit predict result ({e}); choose another --out") from None
    return done


def _workers(args: argparse.Namespace, n_inputs: int) -> int:
    """``--workers``: a whole number >= 1, or ``auto`` (see ``auto_workers``) for ``n_inputs`` inputs."""
    from agekit.inference.estimator import auto_workers

    try:
        workers = auto_workers(n_inputs) if args.workers == "auto" else int(args.workers)
    except ValueError:
        workers = 0
    if workers < 1:
        raise ValueError(f"--workers must be a whole number >= 1 or auto, not {args.workers}")
    return workers


def _predict_to_file(est: Any, args: argparse.Namespace, inputs: list, workers: int | str,
                     annotate: Annotator | None = None) -> int:
    """Stream results into ``--out`` (CSV or JSON lines) as they come, each photo's rows as one unit
    (``ResultsFile``); ``--resume`` skips the sources the file holds. A write that fails (full disk,
    read-only) ends the run with one line; what was written stays valid for ``--resume``."""
    from agekit.face.io import safe_name
    from agekit.inference.writers import OutputError, ResultsFile

    out = Path(args.out)
    fmt = OUT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"--out {out}: the name must end in {', '.join(OUT_FORMATS)}")
    done: set[str] = set()
    try:
        exists = out.exists() and out.stat().st_size > 0
        if exists and args.resume:
            done = {safe_name(s) for s in done_sources(out)}
    except OSError as e:
        raise OutputError(f"cannot read {out}: {e.strerror or e}") from None
    if exists and not (args.resume or args.overwrite):
        raise FileExistsError(f"{out} exists: --resume skips the inputs it already holds, --overwrite starts again")
    skip = {s for s, _ in inputs if safe_name(s) in done}
    if skip:
        print(f"agekit predict: resuming {safe_name(out)}: {len(skip)} of {len(inputs)} inputs already there",
              file=sys.stderr)
    n = faces = errors = 0
    try:
        with ResultsFile(out, append=bool(args.resume)) as f:
            if fmt == "csv" and f.size == 0:
                f.write(format_csv([]))
            for r in est.iter_predict(inputs, workers=workers, progress=not args.no_progress, skip=skip):
                if r["error"]:
                    _say(r["source"], r["error"])
                    errors += 1
                f.write(format_csv([r]).split("\n", 1)[1] if fmt == "csv" else json.dumps(_plain(r)) + "\n")
                n += 1
                faces += bool(r["faces"])
                if annotate is not None:
                    annotate(r)
    except OutputError as e:
        print(f"agekit predict: {e}; the {n} results before it are complete in the file (--resume continues)",
              file=sys.stderr)
        return 1
    print(f"agekit predict: wrote {n} results ({faces} with a face, {errors} errors) to {safe_name(out)}"
          + (f"; {len(skip)} were already there" if skip else ""), file=sys.stderr)
    if annotate is not None and annotate.failed:
        return 1
    return 0 if faces or (skip and not n) else 1


def _run_export(args: argparse.Namespace) -> int:
    from agekit.export.onnx import export_onnx

    try:
        report = export_onnx(args.checkpoint, args.out, opset=args.opset, int8=args.int8, calib=args.calib,
                             n_samples=args.samples, pad_channels=args.pad_channels)
    except AssertionError as e:
        print(f"agekit export: parity check failed: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, PermissionError) as e:  # PermissionError: --out inside the package
        print(f"agekit export: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    from agekit.inference.bench import run_bench

    run_bench(models=args.models, out=args.out, repeats=args.repeats, threads=args.threads,
              photo=not args.no_photo, int8=not args.no_int8, throughput_batch=args.batch,
              batch_threads=args.batch_threads)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``predict``, ``export`` and ``bench``."""
    from agekit.weightfile import add_trust_pickle_argument

    p = sub.add_parser(
        "predict", help="ages (and genders) of the faces in photos, a video or a webcam",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Ages (and genders) of every face in photos, folders, globs, a video or a webcam, with the "
                    "shipped weights\n(non-commercial research use only: trained on UTKFace; not for decisions "
                    "about individuals).",
        epilog=PREDICT_COLUMNS)
    p.add_argument("paths", nargs="*", help="image files, folders or globs")
    p.add_argument("--model", default="age", help="shipped weight name or a .safetensors/.pt/.ckpt/.onnx file (default: age)")
    p.add_argument("--gender-model", default="auto",
                   help="gender model: name or file; 'none' for none (default: the shipped one)")
    p.add_argument("--backend", choices=("onnx", "torch"), default="onnx")
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="int8: the model's int8 ONNX graph, shipped only where it measured faster with the same "
                        "accuracy (see its card <name>.int8.md)")
    p.add_argument("--detector", default=None,
                   help="mtcnn_fast (default: MTCNN down to 80 px faces first, to 20 px only when it finds none, with "
                        "dlib's landmarks), mtcnn (every face size at once: small, turned, covered and crowded faces), "
                        "cascade (fast dlib pass on a grey 320 px copy, the full dlib pass only when it finds no face), "
                        "dlib, dlib68, mediapipe, yunet, or cropped (inputs are face crops)")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--fast", action="store_true",
                       help="dlib fast pass only: grey, longer side 320 px, no upsampling (~8 ms CPU per 640x480 photo; "
                            "misses faces under ~160 px there)")
    speed.add_argument("--crowd", action="store_true",
                       help="dlib on the whole photo, no upsampling (faces down to ~80 px; ~25 ms CPU per 640x480 "
                            "photo and ~1.6 ms per face, against ~4.7 ms per face with mtcnn_fast): group photos")
    speed.add_argument("--accurate", action="store_true",
                       help="dlib full pass only: full resolution, upsample 1 (faces down to ~40 px; ~130 ms CPU per "
                            "640x480 photo); for group photos with small faces, --detector mtcnn")
    p.add_argument("--fallback-detector", default=None, metavar="NAME",
                   help="detector to run when the detector finds no face, e.g. cropped (the whole image is the face)")
    p.add_argument("--largest", action="store_true",
                   help="only the largest face of each photo (default: every face; smaller ones listed as dropped)")
    p.add_argument("--multi-face", choices=("largest", "all"), default=None,
                   help="same as --largest (largest) or the default (all); kept for scripts")
    flip = p.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_true", default=None,
                      help="average each face with its mirror image (default: as the model card says)")
    flip.add_argument("--no-flip", dest="flip", action="store_false", help="never flip-average")
    p.add_argument("--workers", default="auto", metavar="N",
                   help="processes that decode, detect and crop photos (or find the faces of video frames) in "
                        "parallel (default auto: every core, at most 8, for a video or at least 16 photos; else 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (shown on a terminal only anyway)")
    p.add_argument("--out", metavar="FILE", help="write the results into FILE (.csv or .jsonl) as they come, "
                   "instead of stdout (for big folders)")
    p.add_argument("--ray", metavar="DIR_OR_URI", help="predict every photo under DIR_OR_URI (a folder, s3://...) on "
                   "Ray (agekit[ray]; $RAY_ADDRESS names a cluster, else a local one); --out FILE.jsonl or a Parquet "
                   "FOLDER")
    p.add_argument("--ray-actors", type=int, default=None, metavar="N",
                   help="with --ray: actors, each loading the models once (default: one per CPU)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="with --out: skip the inputs FILE already holds, append the rest")
    again.add_argument("--overwrite", action="store_true",
                       help="with --out: start FILE again; with --annotate: replace images already in DIR")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime intra-op threads (default $AGEKIT_ORT_THREADS or 1: fastest for batch-1 photos)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    p.add_argument("--annotate", metavar="DIR",
                   help="write each image with boxes and ages into DIR (existing files are kept unless --overwrite)")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse photos with more than N pixels, checked from the header before decoding "
                        "(default 80000000)")
    p.add_argument("--video", metavar="FILE", help="a video file: per-frame results with smoothed ages per tracked face")
    p.add_argument("--webcam", nargs="?", type=int, const=0, default=None, metavar="INDEX", help="camera index (default 0)")
    p.add_argument("--every", type=int, default=1, help="video/webcam: process every Nth frame")
    p.add_argument("--smoothing", choices=("ema", "median"), default="ema", help="per-track age smoothing")
    add_trust_pickle_argument(p)
    p.set_defaults(func=_run_predict)

    e = sub.add_parser("export", help="export a checkpoint to ONNX with a parity check (and int8)")
    e.add_argument("checkpoint", help="agekit checkpoint (.safetensors, .pt or Lightning .ckpt)")
    e.add_argument("--format", choices=("onnx",), default="onnx")
    e.add_argument("--out", default=None, help="output .onnx (default: CHECKPOINT_NAME.onnx in the current folder; "
                   "never inside the installed package; nothing is written unless the parity check passes)")
    e.add_argument("--int8", action="store_true", help="also write FILE.int8.onnx (static, dynamic if static fails)")
    e.add_argument("--calib", default=None, help="prepared cache or folder of face crops for parity and calibration")
    e.add_argument("--samples", type=int, default=64, help="faces for the parity check and calibration")
    e.add_argument("--opset", type=int, default=17)
    e.add_argument("--pad-channels", type=int, default=16, metavar="N",
                   help="export HSR-family networks with channels zero-padded to a multiple of N, an equal network "
                        "that ONNX Runtime's blocked kernels run 2-3x faster (default 16; 0: as trained)")
    add_trust_pickle_argument(e)
    e.set_defaults(func=_run_export)

    b = sub.add_parser(
        "bench", help="latency and throughput of zoo models: torch, ONNX fp32, ONNX int8, whole photo",
        description="Prints the CPU model and the allocator settings with the timings. For steadier numbers start "
                    "it as MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 MALLOC_TOP_PAD_=1000000000 "
                    "agekit bench (glibc reads them at start-up only).")
    b.add_argument("--models", nargs="+", default=None, help="zoo names (default: ssrnet sephsr_30_10 c3ae_plain)")
    b.add_argument("--out", default=None, help="write FILE.md and FILE.json")
    b.add_argument("--repeats", type=int, default=200, help="batch-1 timing runs per setting")
    b.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1: fastest for these models here)")
    b.add_argument("--batch", type=int, default=256, help="throughput batch size")
    b.add_argument("--batch-threads", type=int, default=None,
                   help="intra-op threads for the batch throughput (default: every core this process may use)")
    b.add_argument("--no-photo", action="store_true", help="skip the end-to-end photo timing")
    b.add_argument("--no-int8", action="store_true", help="skip int8")
    b.set_defaults(func=_run_bench)
