"""``agekit prepare DATASET --root RAW --out DIR``: the face pipeline over a dataset, into a cache."""
from __future__ import annotations

import argparse
import json
import sys

from agekit.data.datasets import list_adapters


def _options(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise SystemExit(f"--option expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _run(args: argparse.Namespace) -> int:
    from agekit.data.prepare import PrepareInterrupted, format_summary, prepare

    try:
        cache = prepare(
            args.dataset, args.root, args.out, views=[v for v in args.views.split(",") if v.strip()],
            detector=args.detector, multi_face=args.multi_face, workers=args.workers, limit=args.limit,
            chunk_size=args.chunk_size, adapter_options=_options(args.option),
            detector_kwargs=_options(args.detector_option), progress=not args.quiet, keep_work=args.keep_work,
            fallback_detector=args.fallback_detector, max_pixels=args.max_pixels,
        )
    except PrepareInterrupted as e:
        print(f"interrupted: {e}; rerun the same command to resume", file=sys.stderr)
        return 1
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"agekit prepare: {e}", file=sys.stderr)
        return 2
    report = json.loads((cache.root / "report.json").read_text())
    print(format_summary(report))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``agekit prepare``."""
    from agekit.data.prepare import DEFAULT_VIEWS, MULTI_FACE, VIEW_SPECS

    p = subparsers.add_parser(
        "prepare", help="detect, align and crop a dataset once into a prepared cache",
        description="Run the face pipeline over DATASET (read from its published layout under --root) and "
                    "write memory-mapped crops, metadata, split files and report.json to --out. "
                    "Resumable: rerun the same command after a kill.",
    )
    p.add_argument("dataset", help="one of: " + ", ".join(list_adapters()))
    p.add_argument("--root", required=True, help="folder of the raw dataset")
    p.add_argument("--out", required=True, help="cache folder to write")
    p.add_argument("--views", default=",".join(DEFAULT_VIEWS),
                   help=f"comma-separated views: {', '.join(VIEW_SPECS)} (default %(default)s)")
    p.add_argument("--detector", default="dlib", help="dlib | mtcnn | mtcnn_fast | dlib68 | mediapipe | yunet | cropped | "
                   "given (the dataset's own face boxes, e.g. IMDB-WIKI's face_location) (default dlib)")
    p.add_argument("--detector-option", action="append", default=[], metavar="KEY=VALUE",
                   help="detector keyword argument, e.g. model_path=yunet.onnx (repeatable)")
    p.add_argument("--fallback-detector", default=None, metavar="NAME",
                   help="detector run when --detector finds no face, e.g. cropped (the whole image is the face: "
                        "for already-cropped datasets such as UTKFace, where dlib misses 3.7%%)")
    p.add_argument("--multi-face", choices=MULTI_FACE, default="largest",
                   help="several faces in a photo: keep the largest, all, or skip the photo")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples")
    p.add_argument("--chunk-size", type=int, default=64, help="images per committed chunk (default 64)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset adapter option, e.g. pattern=REGEX for folder, variant=faces for adience")
    p.add_argument("--keep-work", action="store_true", help="keep the work/ shards after consolidation")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse photos with more pixels, from their header before decoding (default 80,000,000)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
    register_portable(subparsers)


def _pack(args: argparse.Namespace) -> int:
    from agekit.data.portable import pack_cache

    try:
        res = pack_cache(args.cache, args.out, views=args.views.split(",") if args.views else None, codec=args.codec,
                         quality=args.quality, progress=not args.quiet)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"agekit pack-cache: {e}", file=sys.stderr)
        return 2
    print(f"{res['out']}: {res['rows']} rows, {res['bytes'] / 1e6:.1f} MB ({res['codec']}), views "
          + ", ".join(f"{k} {v['bytes'] / 1e6:.1f} MB" for k, v in res["views"].items()))
    return 0


def _unpack(args: argparse.Namespace) -> int:
    from agekit.data.portable import unpack_cache

    try:
        cache = unpack_cache(args.packed, args.out, views=args.views.split(",") if args.views else None,
                             max_bytes=int(args.max_gb * 1e9), overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, KeyError, ValueError) as e:
        print(f"agekit unpack-cache: {e}", file=sys.stderr)
        return 2
    print(cache)
    return 0


def register_portable(subparsers: argparse._SubParsersAction) -> None:
    """Add ``agekit pack-cache`` and ``agekit unpack-cache``."""
    p = subparsers.add_parser("pack-cache", help="a prepared cache (chosen views) in one compressed file",
                              description="Pack views, metadata and splits of a prepared cache into one .npz, each "
                                          "crop encoded as JPEG, WebP or (lossless) PNG: to move a cache to a GPU box.")
    p.add_argument("cache", help="prepared cache folder")
    p.add_argument("out", help="output .npz")
    p.add_argument("--views", default=None, help="comma-separated view keys (default: all)")
    p.add_argument("--codec", default="jpeg", choices=["jpeg", "webp", "png"])
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_pack)
    u = subparsers.add_parser("unpack-cache", help="rebuild a cache folder from `agekit pack-cache`'s file")
    u.add_argument("packed", help="file written by agekit pack-cache")
    u.add_argument("out", help="cache folder to write")
    u.add_argument("--views", default=None, help="only these view keys")
    u.add_argument("--max-gb", type=float, default=256.0,
                   help="refuse a pack that would unpack to more than this many GB (default %(default)s); the free "
                        "space next to OUT is checked too, before anything is decompressed")
    u.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty OUT (only once the new cache is complete)")
    u.set_defaults(func=_unpack)
