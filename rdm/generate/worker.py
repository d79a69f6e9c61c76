"""The GPU worker: ``rdm worker`` serves a generator over HTTP to ``RemoteGenerator``.

API (JSON; every error is ``{"error": kind, "message": text}`` with kind from rdm.generate):
- ``GET /health`` -> ``{"status", "info": GeneratorInfo, "gpu": {"name", "free_bytes", "total_bytes"} | null,
  "queue": jobs waiting or running, "max_body_bytes", "max_timeout_s"}``
- ``POST /generate`` with ``{"plan": ConditioningPlan.to_dict(), "settings": GenerationSettings.to_dict(),
  "images": {"db:<id>" | "file:<path>": base64 PNG}, "init_image": base64 PNG | null,
  "product": {"image": base64 RGBA PNG (alpha = the product), "placement": {"scale", "x", "y"}} | null,
  "timeout_s": s}`` -> ``{"images": [base64 PNG], "info": GeneratorInfo, "seconds": s}``; with a product
  the images are already composited: the product's opaque pixels are exactly the uploaded ones.
The worker needs no DB: the client sends the pictures. Jobs run one at a time; ``timeout_s`` (capped
by the worker) covers the wait in the queue and the generation, which is stopped at the next
denoising step once it has passed. With a token, both endpoints need ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect
from starlette.concurrency import run_in_threadpool

from rdm.common.bounds import check_number
from rdm.errors import GenerationCancelledError, RDMError
from rdm.generate import (BadRequestError, BaseGenerator, GenerationError, GenerationSettings,
                          GenerationTimeoutError, RequestTooLargeError, WorkerAuthError, encode_png, image_key,
                          too_large_message)
from rdm.generate.base import check_request
from rdm.generate.remote import load_pixels, png_header
from rdm.generate.settings import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_TIMEOUT_S
from rdm.plan import ConditioningPlan, PlanError
from rdm.generate.product import ProductPlacement, product_lock

log = logging.getLogger("rdm.generate.worker")
DISCONNECT_POLL_S = 0.25
CLIENT_GONE = 499  # nginx's "client closed request": nobody reads it, but the access log says why
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def create_app(generator: BaseGenerator, *, token: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S, max_pixels: int = DEFAULT_MAX_PIXELS) -> FastAPI:
    """A FastAPI app serving ``generator``; build the generator once and pass it in."""
    app = FastAPI(title="RDM Studio GPU worker")
    gpu_lock = threading.Lock()  # one job at a time on the GPU
    queue = _Counter()

    def error_response(exc: GenerationError) -> JSONResponse:
        return JSONResponse({"error": exc.kind, "message": str(exc)}, status_code=exc.http_status)

    def authorised(request: Request) -> bool:
        if not token:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())

    def denied() -> JSONResponse:
        return error_response(WorkerAuthError("the GPU worker rejected the request: missing or wrong token "
                                              "(set RDM_WORKER_TOKEN to the worker's --token)"))

    @app.get("/health")
    def health(request: Request):
        if not authorised(request):
            return denied()
        return {"status": "ok", "info": generator.info.to_dict(), "gpu": gpu_status(generator.info.device),
                "queue": queue.value, "max_body_bytes": max_body_bytes, "max_timeout_s": max_timeout_s,
                "max_pixels": max_pixels}

    @app.post("/generate")
    async def generate(request: Request):
        # 1. token, then the body with its size limit (declared length first, then as it streams)
        if not authorised(request):
            return denied()
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            return error_response(RequestTooLargeError(too_large_message(int(declared), max_body_bytes)))
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body_bytes:
                    return error_response(RequestTooLargeError(too_large_message(len(body), max_body_bytes)))
        except ClientDisconnect:
            log.info("client went away while uploading its request")
            return Response(status_code=CLIENT_GONE)
        # 2. parse, 3. run on the GPU thread (cancelled if the client goes away), 4. answer with PNGs
        try:
            job = parse_job(bytes(body), max_timeout_s, max_pixels)
            started = time.monotonic()
            with queue:
                task = asyncio.ensure_future(run_in_threadpool(run_job, generator, gpu_lock, job))
                while not (await asyncio.wait({task}, timeout=DISCONNECT_POLL_S))[0]:
                    if await request.is_disconnected():
                        job["cancel"].set()  # the job stops at its next step and frees the GPU
                        log.info("client went away: its job was cancelled")
                        with contextlib.suppress(Exception):
                            await task
                        return Response(status_code=CLIENT_GONE)
                images = task.result()
        except GenerationError as exc:
            return error_response(exc)
        except Exception as exc:  # noqa: BLE001 - the client gets a message instead of a dropped connection
            log.exception("generation failed")
            return error_response(GenerationError(f"the GPU worker failed: {exc.__class__.__name__}: {exc}"))
        return {"images": [encode_png(img) for img in images], "info": generator.info.to_dict(),
                "seconds": round(time.monotonic() - started, 3)}

    return app


def parse_job(body: bytes, max_timeout_s: float, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    """The request body as plan, settings, pictures and a deadline; BadRequestError when malformed.

    Every bound is checked before any pixel is decoded: the settings' (rdm.generate.settings), the
    plan's size, the pictures' declared dimensions (at most ``max_pixels`` in all), that every
    picture is one the plan uses, and a finite timeout.
    """
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise BadRequestError("the /generate body must be a JSON object")
        plan = ConditioningPlan.from_dict(data["plan"])
        settings = GenerationSettings.from_dict(data.get("settings", {}))
        # a finite positive number, capped by this worker's own limit (clients send theirs, e.g. 600 s)
        timeout_s = min(check_number(data.get("timeout_s", max_timeout_s), "timeout_s", 0.0, 1e9, low_open=True,
                                     error=BadRequestError), max_timeout_s)
        # 1. headers only, and only pictures the plan refers to
        sent = data.get("images") or {}
        if not isinstance(sent, dict):
            raise BadRequestError("'images' must be an object of image key -> base64 PNG")
        unused = sorted(set(sent) - {image_key(i) for i in plan.image_items})
        if unused:
            raise BadRequestError(f"images not used by the plan were sent: {', '.join(unused[:5])}: send only "
                                  "the pictures the plan refers to")
        headers = {str(key): png_header(value, f"image {key}") for key, value in sent.items()}
        init = png_header(data["init_image"], "init_image") if data.get("init_image") else None
        product = data.get("product")
        product_header = png_header(product["image"], "product") if product else None
        pictures = [*headers.values(), *(h for h in (init, product_header) if h is not None)]
        pixels = sum(h.width * h.height for h in pictures)
        if pixels > max_pixels:
            raise BadRequestError(f"the request's pictures hold {pixels / 1e6:.1f} MP, over this worker's limit of "
                                  f"{max_pixels / 1e6:.1f} MP: send fewer or smaller pictures")
        check_request(plan, settings, headers.keys(), variation=init is not None, product=product is not None)
        # 2. the pixels
        images = {key: load_pixels(h, f"image {key}") for key, h in headers.items()}
        init_image = load_pixels(init, "init_image") if init is not None else None
        if product:
            rgba = load_pixels(product_header, "product", mode="RGBA")
            # the client sends the product already cropped, possibly fully opaque: its alpha is the mask
            product = product_lock(rgba, rgba.getchannel("A"),
                                   placement=ProductPlacement.from_dict(product.get("placement", {})))
    except BadRequestError:  # a bad product or setting: already says what to change
        raise
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, PlanError) as exc:
        raise BadRequestError(f"malformed /generate request: {exc.__class__.__name__}: {exc}") from exc
    return {"plan": plan, "settings": settings, "images": images, "init_image": init_image, "product": product,
            "timeout_s": timeout_s, "deadline": time.monotonic() + timeout_s, "cancel": threading.Event()}


def run_job(generator: BaseGenerator, gpu_lock: threading.Lock, job: dict[str, Any]):
    deadline, timeout_s, cancel = job["deadline"], job["timeout_s"], job["cancel"]
    # 1. wait for the GPU, giving up at the deadline or when the client has gone
    while not gpu_lock.acquire(timeout=max(0.0, min(DISCONNECT_POLL_S, deadline - time.monotonic()))):
        if cancel.is_set():
            raise GenerationCancelledError("the client went away before its job started")
        if time.monotonic() >= deadline:
            raise GenerationTimeoutError(f"the GPU worker stayed busy with other jobs for the whole timeout of "
                                         f"{timeout_s:.0f}s: try again later or raise the timeout")

    # 2. run, stopping at the next denoising step once past the deadline or cancelled
    def stop_when_late(stage: str, step: int, total: int) -> None:
        if cancel.is_set():
            raise GenerationCancelledError(f"the client went away during the {stage} (step {step}/{total})")
        if time.monotonic() > deadline:
            raise GenerationTimeoutError(f"generation passed the timeout of {timeout_s:g}s during the {stage} "
                                         f"(step {step}/{total}): raise the timeout or lower steps / images")

    try:
        return generator.generate(job["plan"], job["settings"], images=job["images"], init_image=job["init_image"],
                                  product=job["product"], progress=stop_when_late)
    finally:
        gpu_lock.release()


def gpu_status(device: str) -> dict | None:
    if not device.startswith("cuda"):
        return None
    import torch

    free, total = torch.cuda.mem_get_info(device)
    return {"name": torch.cuda.get_device_name(device), "free_bytes": free, "total_bytes": total}


class _Counter:
    """Jobs waiting for or holding the GPU (the health endpoint's queue length)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def __enter__(self) -> "_Counter":
        with self._lock:
            self.value += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.value -= 1


def run_worker(generator: BaseGenerator, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
               insecure_no_token: bool = False, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Serve ``generator`` until interrupted (``rdm worker``)."""
    import uvicorn

    check_exposure(host, token, insecure_no_token)
    app = create_app(generator, token=token, max_body_bytes=max_body_bytes, max_timeout_s=max_timeout_s,
                     max_pixels=max_pixels)
    uvicorn.run(app, host=host, port=port, log_level="info")


def check_exposure(host: str, token: str | None, insecure_no_token: bool = False) -> None:
    """A worker reachable from other machines needs a token: anyone who can reach it can use the GPU."""
    if host not in LOOPBACK and not token and not insecure_no_token:
        raise RDMError(f"refusing to listen on {host} without a token: anyone who can reach this port could use "
                       "the GPU. Set --token (or RDM_WORKER_TOKEN), listen on 127.0.0.1, or pass "
                       "--insecure-no-token on a network you trust")
