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

import hmac
import json
import logging
import threading
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from rdm.generate import (BadRequestError, BaseGenerator, GenerationError, GenerationSettings,
                          GenerationTimeoutError, RequestTooLargeError, WorkerAuthError, too_large_message,
                          decode_png, encode_png)
from rdm.generate.settings import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_TIMEOUT_S
from rdm.plan import ConditioningPlan, PlanError
from rdm.product import ProductPlacement, product_lock

log = logging.getLogger("rdm.worker")


def create_app(generator: BaseGenerator, *, token: str | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S) -> FastAPI:
    """A FastAPI app serving ``generator``; build the generator once and pass it in."""
    app = FastAPI(title="RDM Studio GPU worker")
    gpu_lock = threading.Lock()  # one job at a time on the GPU
    queue = _Counter()

    def error_response(exc: GenerationError) -> JSONResponse:
        return JSONResponse({"error": exc.kind, "message": str(exc)}, status_code=exc.http_status)

    def authorised(request: Request) -> bool:
        if not token:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def denied() -> JSONResponse:
        return error_response(WorkerAuthError("the GPU worker rejected the request: missing or wrong token "
                                              "(set RDM_WORKER_TOKEN to the worker's --token)"))

    @app.get("/health")
    def health(request: Request):
        if not authorised(request):
            return denied()
        return {"status": "ok", "info": generator.info.to_dict(), "gpu": gpu_status(generator.info.device),
                "queue": queue.value, "max_body_bytes": max_body_bytes, "max_timeout_s": max_timeout_s}

    @app.post("/generate")
    async def generate(request: Request):
        # 1. token, then the body with its size limit (declared length first, then as it streams)
        if not authorised(request):
            return denied()
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            return error_response(RequestTooLargeError(too_large_message(int(declared), max_body_bytes)))
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return error_response(RequestTooLargeError(too_large_message(len(body), max_body_bytes)))
        # 2. parse, 3. run on the GPU thread, 4. answer with PNGs
        try:
            job = parse_job(bytes(body), max_timeout_s)
            started = time.monotonic()
            with queue:
                images = await run_in_threadpool(run_job, generator, gpu_lock, job)
        except GenerationError as exc:
            return error_response(exc)
        except Exception as exc:  # noqa: BLE001 - the client gets a message instead of a dropped connection
            log.exception("generation failed")
            return error_response(GenerationError(f"the GPU worker failed: {exc.__class__.__name__}: {exc}"))
        return {"images": [encode_png(img) for img in images], "info": generator.info.to_dict(),
                "seconds": round(time.monotonic() - started, 3)}

    return app


def parse_job(body: bytes, max_timeout_s: float) -> dict[str, Any]:
    """The request body as plan, settings, pictures and a deadline; BadRequestError when malformed."""
    try:
        data = json.loads(body)
        plan = ConditioningPlan.from_dict(data["plan"])
        settings = GenerationSettings.from_dict(data.get("settings", {}))
        images = {str(key): decode_png(value, f"image {key}") for key, value in data.get("images", {}).items()}
        init_image = decode_png(data["init_image"], "init_image") if data.get("init_image") else None
        product = data.get("product")
        if product:
            rgba = decode_png(product["image"], "product", mode="RGBA")
            # the client sends the product already cropped, possibly fully opaque: its alpha is the mask
            product = product_lock(rgba, rgba.getchannel("A"),
                                   placement=ProductPlacement.from_dict(product.get("placement", {})))
        timeout_s = min(float(data.get("timeout_s", max_timeout_s)), max_timeout_s)
    except BadRequestError:  # a bad product or settings: already says what to change
        raise
    except (ValueError, KeyError, TypeError, AttributeError, PlanError) as exc:
        raise BadRequestError(f"malformed /generate request: {exc.__class__.__name__}: {exc}") from exc
    return {"plan": plan, "settings": settings, "images": images, "init_image": init_image, "product": product,
            "timeout_s": timeout_s, "deadline": time.monotonic() + timeout_s}


def run_job(generator: BaseGenerator, gpu_lock: threading.Lock, job: dict[str, Any]):
    deadline, timeout_s = job["deadline"], job["timeout_s"]
    if not gpu_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
        raise GenerationTimeoutError(f"the GPU worker stayed busy with other jobs for the whole timeout of "
                                     f"{timeout_s:.0f}s: try again later or raise the timeout")

    def stop_when_late(stage: str, step: int, total: int) -> None:
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
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S) -> None:
    """Serve ``generator`` until interrupted (``rdm worker``)."""
    import uvicorn

    app = create_app(generator, token=token, max_body_bytes=max_body_bytes, max_timeout_s=max_timeout_s)
    uvicorn.run(app, host=host, port=port, log_level="info")
