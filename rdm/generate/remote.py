"""The remote backend: the same interface as ``KandinskyGenerator``, served by ``rdm worker`` over
HTTP (rdm/generate/worker.py), and the PNG encoding both sides use."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import replace

from PIL import Image

from rdm.errors import (ERROR_KINDS, BadRequestError, GenerationError, GenerationTimeoutError, RequestTooLargeError,
                        WorkerAuthError, WorkerUnreachableError)
from rdm.errors import BadImage
from rdm.generate.base import BaseGenerator, image_key
from rdm.generate.settings import GeneratorInfo
from rdm.common.redact import public_url, refuse_credentials
from rdm.common.sources import open_image

REMOTE_IMAGE_MAX_SIDE = 1024  # references are shrunk before upload; the prior sees 224 px anyway
RESPONSE_SLACK_S = 2.0  # client waits this much past the worker's own deadline before giving up


def encode_png(image: Image.Image, max_side: int | None = None, mode: str = "RGB") -> str:
    """Base64 PNG of ``image`` in ``mode``, shrunk so its longest side is at most ``max_side``."""
    if max_side and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_header(data: object, what: str = "image") -> Image.Image:
    """A base64 picture's header, checked (allowed format, sane dimensions) before any pixel is decoded."""
    if not isinstance(data, str):
        raise BadRequestError(f"{what} must be a base64 string, got {type(data).__name__}")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError as exc:
        raise BadRequestError(f"{what} is not base64: {exc}") from exc
    try:
        return open_image(raw, what, min_side=1)  # the client checked what it sends
    except BadImage as exc:
        raise BadRequestError(f"{what} cannot be used: {exc}") from exc


def load_pixels(header: Image.Image, what: str = "image", mode: str = "RGB") -> Image.Image:
    try:
        header.load()
        return header.convert(mode)
    except Exception as exc:  # noqa: BLE001 - truncated data surfaces as many types
        raise BadRequestError(f"{what} is truncated or corrupt: {exc}") from exc


def decode_png(data: object, what: str = "image", mode: str = "RGB") -> Image.Image:
    return load_pixels(png_header(data, what), what, mode)


class RemoteGenerator(BaseGenerator):
    """The same interface as ``KandinskyGenerator``, served by ``rdm worker`` over HTTP (rdm/generate/worker.py)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 600.0,
                 connect_timeout: float = 10.0) -> None:
        self.url = refuse_credentials(url, "GPU worker URL (RDM_WORKER_URL)", "RDM_WORKER_TOKEN").rstrip("/")
        self.public_url = public_url(self.url)  # what messages and records show
        self.token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._health: dict | None = None

    @property
    def info(self) -> GeneratorInfo:
        # recorded in runs: keep host and port, never credentials embedded in the URL
        return replace(GeneratorInfo.from_dict(self.health()["info"]), backend="remote", worker_url=self.public_url)

    def health(self, refresh: bool = False) -> dict:
        """The worker's ``GET /health``: model ids, device, GPU memory, queue length, limits."""
        if self._health is None or refresh:
            self._health = self._request("GET", "/health",
                                         timeout=min(self.timeout, self.connect_timeout) + RESPONSE_SLACK_S)
        return self._health

    def _generate(self, plan, settings, images, init_image, product, progress):
        # 1. the request: plan, settings and every picture the plan needs, as base64 PNG; the product
        #    travels as RGBA at full size (lossless), since its pixels must come back unchanged
        needed = {image_key(i) for i in plan.image_items}
        body = {
            "plan": plan.to_dict(),
            "settings": settings.to_dict(),
            "images": {key: encode_png(images[key], REMOTE_IMAGE_MAX_SIDE) for key in sorted(needed)},
            "init_image": encode_png(init_image, max(REMOTE_IMAGE_MAX_SIDE, *settings.size)) if init_image else None,
            "product": ({"image": encode_png(product.image, mode="RGBA"), "placement": product.placement.to_dict()}
                        if product else None),
            "timeout_s": self.timeout,
        }
        # 2. refuse locally what the worker would refuse, before uploading megabytes
        payload = json.dumps(body).encode("utf-8")
        limit = self.health().get("max_body_bytes")
        if limit and len(payload) > limit:
            raise RequestTooLargeError(too_large_message(len(payload), limit))
        # 3. one job; the worker enforces the deadline, the client waits a little longer at most
        if progress:
            progress("worker", 0, 1)
        reply = self._request("POST", "/generate", content=payload,
                              headers={"Content-Type": "application/json"},
                              timeout=self.timeout + RESPONSE_SLACK_S)
        if progress:
            progress("worker", 1, 1)
        return [decode_png(data, "worker reply image") for data in reply["images"]]

    def _request(self, method: str, path: str, *, timeout: float, **kwargs) -> dict:
        import httpx

        headers = dict(kwargs.pop("headers", {}))
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        limits = httpx.Timeout(timeout, connect=self.connect_timeout)
        try:
            response = httpx.request(method, self.url + path, headers=headers, timeout=limits, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol, httpx.RemoteProtocolError) as exc:
            raise WorkerUnreachableError(
                f"cannot reach the GPU worker at {self.public_url} ({exc.__class__.__name__}): start it with "
                "`rdm worker --host 0.0.0.0 --port 8765` on the GPU machine, or fix RDM_WORKER_URL") from exc
        except httpx.TimeoutException as exc:
            raise GenerationTimeoutError(
                f"the GPU worker at {self.public_url} did not answer within {timeout:.0f}s: raise the timeout, "
                "or lower steps / number of images") from exc
        return _parse_reply(response, self.public_url)


def _parse_reply(response, url: str) -> dict:
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code == 200 and isinstance(data, dict):
        return data
    message = data.get("message") if isinstance(data, dict) else None
    if response.status_code == 401:
        raise WorkerAuthError(message or f"the GPU worker at {url} rejected the token: set RDM_WORKER_TOKEN "
                                         "to the worker's --token")
    cls = ERROR_KINDS.get(data.get("error") if isinstance(data, dict) else None, GenerationError)
    raise cls(message or f"the GPU worker at {url} answered HTTP {response.status_code}: {response.text[:200]}")


def too_large_message(size: int, limit: int) -> str:
    return (f"request of {size / 2**20:.1f} MiB exceeds the worker's limit of {limit / 2**20:.1f} MiB: use fewer "
            "or smaller images, or restart the worker with a larger --max-body-mb")

