"""The HTTP API and the web page (FastAPI): ``POST /v1/predict``, ``GET /v1/models``, ``GET /healthz``, ``GET /``.

``POST /v1/predict`` answers with the records ``agekit predict --json`` prints, one per photo,
in the order sent (``source`` is the uploaded file's name). Errors: 400 no photo, unreadable
photos (every photo of the request) or bad options; 404 an unknown model; 413 a request, a
photo count or a photo's pixel count over its cap; 415 a body that is neither multipart nor
image bytes; 503 the queue is full (with ``Retry-After``); 504 the request ran past its timeout.
A request never names a file on the server: photos come as bytes, models by name.
"""
from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from agekit import __version__
from agekit.face.io import ImageReadError
from agekit.inference.weights import shipped_weights
from agekit.serve.engine import (
    Engine,
    Job,
    QueueFull,
    ServeConfig,
    UnknownModel,
    decode_upload,
    face_crop_data_url,
    image_header_size,
    rss_bytes,
)

NOTICE = ("Age and gender estimates from a photo are often wrong by several years and can be biased; "
          "they are not for decisions about individuals.")
STATIC_FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript"),
                "/app.css": ("app.css", "text/css")}
# The page may load nothing from elsewhere: it works offline and leaks no photo.
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 (from Content-Length, or as it streams)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _too_large(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body over {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", ()):
            if k == b"content-length" and v.isdigit() and int(v) > self.max_bytes:
                return await self._too_large(send)
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return msg

        async def tracking_send(msg: dict) -> None:
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._too_large(send)


def _bool(name: str, value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise HTTPException(400, f"{name} must be true or false, not {value!r}")


def _short_name(name: str | None, fallback: str) -> str:
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()  # a client's path: keep the file name
    return name[:255] or fallback


async def _read_photos(request: Request, cfg: ServeConfig, raw_name: str | None) -> tuple[list[tuple[str, bytes]], dict]:
    """(name, bytes) of every photo in the request, and the option fields of a multipart form."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=cfg.max_images + 1, max_fields=32, max_part_size=1 << 16)
        except HTTPException:
            raise
        except Exception as e:  # a malformed body
            raise HTTPException(400, f"malformed multipart body: {e}") from None
        photos, fields = [], {}
        try:
            for key, value in form.multi_items():
                if isinstance(value, str):
                    fields[key] = value
                else:
                    photos.append((_short_name(value.filename, f"{key}[{len(photos)}]"), await value.read()))
        finally:
            await form.close()
        return photos, fields
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        return [(_short_name(raw_name, "image"), await request.body())], {}
    raise HTTPException(415, "send photos as multipart/form-data files or as image bytes "
                             "(Content-Type image/* or application/octet-stream)")


def create_app(config: ServeConfig | None = None, engine: Engine | None = None) -> FastAPI:
    """The ASGI app; its start-up loads the default models and starts the workers (``engine.start``)."""
    engine = engine or Engine(config)
    cfg = engine.config

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(engine.start)
        await run_in_threadpool(engine.wait_ready)
        try:
            yield
        finally:
            await run_in_threadpool(engine.close)

    app = FastAPI(title="agekit", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Ages and genders of the faces in photos. " + NOTICE)
    app.state.engine = engine

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        """200 once the default models are loaded: queue depth, batching counters and resident memory."""
        return {"status": "ok", "queued": engine.queued(), "admitted": engine.admitted(),
                "max_queue": cfg.max_queue, "workers": cfg.workers, "max_batch": cfg.max_batch,
                "worker_pids": engine.worker_pids(),
                "uptime_s": round(time.time() - engine.started_at, 3), "rss_bytes": rss_bytes(),
                **engine.stats}

    @app.get("/v1/models", tags=["predict"])
    async def models() -> dict[str, Any]:
        """The models a request may choose, with their model cards and licences, and the defaults."""

        out = []
        for w in shipped_weights():
            md = Path(w["path"]).with_suffix(".md")
            card = w["card"]
            out.append({"name": w["name"], "aliases": w["aliases"], "model": w["model"],
                        "licence": card.get("licence"), "description": card.get("description"),
                        "metrics": {k: v for k, v in (card.get("metrics") or {}).items() if not isinstance(v, (dict, list))},
                        "card": card, "card_markdown": md.read_text(encoding="utf-8") if md.is_file() else None})
        default_gender = engine.resolve_gender(cfg.model, None)
        return {"default": {"model": cfg.model, "gender_model": default_gender}, "notice": NOTICE,
                "served": engine.served_names(), "models": out}

    body_doc = {"requestBody": {"content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "image": {"type": "array", "items": {"type": "string", "format": "binary"},
                      "description": "one or more photos (any field name works)"},
            "model": {"type": "string"}, "gender_model": {"type": "string"},
            "multi_face": {"type": "string", "enum": ["largest", "all"]}, "flip": {"type": "boolean"},
            "crops": {"type": "boolean"}}}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}, "required": True}}

    @app.post("/v1/predict", tags=["predict"], openapi_extra=body_doc)
    async def predict(
        request: Request,
        model: str | None = Query(None, description="age model (a name from /v1/models; default: the server's)"),
        gender_model: str | None = Query(None, description="gender model name, 'none', or 'auto' (default)"),
        multi_face: Literal["largest", "all"] | None = Query(None, description="every face (default) or the largest"),
        flip: bool | None = Query(None, description="average each face with its mirror image (default: model card)"),
        crops: bool | None = Query(None, description="add each face's crop as a JPEG data URL"),
        name: str | None = Query(None, description="the photo's name in the answer (raw bytes)"),
    ) -> Any:
        """Ages and genders of the faces in one or more photos: the records of ``agekit predict --json``."""
        t0 = time.perf_counter()
        if engine.admitted() >= cfg.max_queue:  # full: refuse before reading the body, so refusing stays cheap
            engine.stats["requests_refused"] += 1
            raise HTTPException(503, f"busy: {cfg.max_queue} photos are queued or running; retry shortly",
                                headers={"Retry-After": "1", "Connection": "close"})
        photos, fields = await _read_photos(request, cfg, name)
        model = fields.get("model") or model
        gender_model = fields.get("gender_model") or gender_model
        multi_face = fields.get("multi_face") or multi_face
        flip = _bool("flip", fields["flip"]) if "flip" in fields else flip
        crops = _bool("crops", fields["crops"]) if "crops" in fields else crops
        if not photos:
            raise HTTPException(400, "no photo in the request: send multipart files (e.g. curl -F image=@photo.jpg) "
                                     "or image bytes")
        if len(photos) > cfg.max_images:
            raise HTTPException(413, f"{len(photos)} photos in one request; at most {cfg.max_images}")
        try:
            key = engine.key(model, gender_model, multi_face, flip)
        except UnknownModel as e:
            raise HTTPException(404, str(e)) from None
        except ValueError as e:
            raise HTTPException(400, str(e)) from None

        # the pixel cap from each header, before any decoding
        errors: dict[int, tuple[int, str]] = {}
        sizes: dict[int, int] = {}
        for i, (_src, data) in enumerate(photos):
            wh = image_header_size(data) if data else None
            if wh is not None and wh[0] * wh[1] > cfg.max_pixels:
                errors[i] = (413, f"{wh[0]}x{wh[1]} pixels, more than the {cfg.max_pixels} allowed")
            else:
                sizes[i] = wh[0] * wh[1] if wh else 0
        total = sum(sizes.values())
        try:
            engine.reserve(len(sizes), total)
        except QueueFull as e:
            raise HTTPException(503, str(e), headers={"Retry-After": "1"}) from None
        images: dict[int, Any] = {}

        def decode_all() -> None:

            for i in sizes:
                src, data = photos[i]
                try:
                    images[i] = decode_upload(data, src, cfg.max_pixels)
                except ImageReadError as e:
                    errors[i] = (413 if "allowed" in str(e) else 400, str(e))

        try:
            await run_in_threadpool(decode_all)
        except BaseException:
            engine.release(len(sizes), total)
            raise
        jobs = {i: Job(key, images[i], sizes[i]) for i in sizes if i in images}
        # photos that failed to decode give their share of the budget back now
        engine.release(len(sizes) - len(jobs), sum(sizes[i] for i in sizes if i not in jobs))
        if not jobs:
            status = 413 if all(s == 413 for s, _ in errors.values()) else 400
            raise HTTPException(status, "; ".join(f"{photos[i][0]}: {why}" for i, (_, why) in sorted(errors.items())))
        futures = {i: asyncio.wrap_future(engine.submit(j)) for i, j in jobs.items()}
        try:
            done = await asyncio.wait_for(asyncio.gather(*futures.values()), timeout=cfg.timeout_s)
        except TimeoutError:
            raise HTTPException(504, f"no answer within {cfg.timeout_s:g} s; the server is busy, retry later") from None
        results = dict(zip(futures, done))
        records = []
        for i, (src, _) in enumerate(photos):
            if i in results:
                rec = {**results[i], "source": src}
                if crops:
                    for f in rec["faces"]:
                        f["crop"] = face_crop_data_url(images[i], f["box"])
            else:
                rec = {"source": src, "faces": [], "dropped": [], "error": errors[i][1]}
            records.append(rec)
        # the time this request spent in the app (body, decoding, queue, models), for clients and load tests
        return JSONResponse(records, headers={"Server-Timing": f"app;dur={1e3 * (time.perf_counter() - t0):.1f}"})

    def static(path: str, filename: str, media_type: str) -> None:
        async def page() -> Response:
            text = resources.files("agekit.serve").joinpath("static", filename).read_text(encoding="utf-8")
            return Response(text, media_type=media_type,
                            headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                                     "Cache-Control": "no-cache"})

        app.add_api_route(path, page, methods=["GET"], include_in_schema=False,
                          response_class=HTMLResponse if filename.endswith(".html") else Response)

    for path, (filename, media_type) in STATIC_FILES.items():
        static(path, filename, media_type)

    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    return app
