"""``agekit serve``: the HTTP API and the web page (needs ``pip install "agekit[serve]"``)."""
from __future__ import annotations

import argparse
import importlib.util
import sys

from agekit.inference.options import DEFAULT_DETECTOR
from agekit.serve.engine import ServeConfig, usable_cores

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(
        model=args.model, gender_model=args.gender_model, backend=args.backend, detector=args.detector,
        fallback=args.fallback_detector, multi_face=args.multi_face, threads=args.threads, workers=args.workers,
        max_batch=args.max_batch,
        max_queue=args.max_queue, max_queue_pixels=int(args.max_queue_mp * 1e6), timeout_s=args.timeout,
        max_body_bytes=int(args.max_body_mb * (1 << 20)), max_images=args.max_images,
        max_pixels=int(args.max_mp * 1e6), extra_models=tuple(args.serve_model or ()), processes=not args.in_process,
    )


def _run(args: argparse.Namespace) -> int:

    missing = [m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:  # checked without importing them: they load while the workers start
        print(f"agekit serve: {', '.join(missing)} not installed: pip install \"agekit[serve]\"", file=sys.stderr)
        return 2
    from agekit.inference.weights import NoShippedWeightsError
    from agekit.serve.engine import Engine

    if args.host not in LOOPBACK:
        print(f"agekit serve: listening on {args.host}: other machines can reach this service; it has no "
              "authentication (put it behind a proxy that has)", file=sys.stderr)
    try:
        engine = Engine(config_from_args(args))
        engine.key()  # the default model names are known
        # the worker processes fork now, from this one thread, and load their models while the web app is built
        engine.start()
        from agekit.serve.app import create_app

        app = create_app(engine=engine)
        engine.wait_ready()
    except (NoShippedWeightsError, FileNotFoundError, ValueError) as e:
        print(f"agekit serve: {e}", file=sys.stderr)
        return 2
    import uvicorn

    # limit_concurrency: connections beyond it are answered 503 by uvicorn before any body is read
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log,
                limit_concurrency=args.max_connections, timeout_keep_alive=5)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``serve``."""
    p = sub.add_parser("serve", help="HTTP API (POST /v1/predict) and a web page for photos (agekit[serve])",
                       description="Serves POST /v1/predict (the records of agekit predict --json), GET /v1/models, "
                                   "GET /healthz, /openapi.json and a web page at /. Binds 127.0.0.1 unless told "
                                   "otherwise; requests never name a file on this machine.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default="age", help="default age model: shipped name or .pt/.ckpt/.onnx file")
    p.add_argument("--gender-model", default="auto", help="default gender model: name or file, 'none', or auto")
    p.add_argument("--serve-model", action="append", metavar="NAME_OR_FILE",
                   help="a further model requests may choose by this exact string (repeatable); shipped weights "
                        "are always offered")
    p.add_argument("--backend", choices=("onnx", "torch"), default="onnx")
    p.add_argument("--detector", default=DEFAULT_DETECTOR,
                   help=f"face detector (as agekit predict; default {DEFAULT_DETECTOR})")
    p.add_argument("--fallback-detector", default=None, metavar="NAME",
                   help="detector to run when the detector finds no face, e.g. cropped")
    p.add_argument("--multi-face", choices=("all", "largest"), default="all",
                   help="requests' default: every face (as agekit predict) or the largest")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads per model (default 1)")
    p.add_argument("--workers", type=int, default=usable_cores(),
                   help="inference worker processes (default: the cores this process may use)")
    p.add_argument("--in-process", action="store_true",
                   help="run the models in threads of the server process instead of worker processes")
    p.add_argument("--max-batch", type=int, default=8,
                   help="photos of concurrent requests run through the networks together (1: no batching)")
    p.add_argument("--max-queue", type=int, default=16,
                   help="photos queued or running at once; a request beyond it gets 503 (default 16)")
    p.add_argument("--max-queue-mp", type=float, default=64.0, help="decoded megapixels queued at once (default 64)")
    p.add_argument("--max-connections", type=int, default=64,
                   help="concurrent connections; beyond it uvicorn answers 503 (default 64)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request, queue included; then 504")
    p.add_argument("--max-body-mb", type=float, default=25.0, help="request body cap in MiB; over it 413")
    p.add_argument("--max-images", type=int, default=16, help="photos per request; more: 413")
    p.add_argument("--max-mp", type=float, default=16.0, help="megapixels per photo, read from its header; more: 413")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=_run)
