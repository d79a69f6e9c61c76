"""Kandinsky 2.2 generation from a conditioning plan: in-process or on a remote GPU worker.

The blended image embedding is ``sum(w_i * emb_i)`` over the plan's items (weights sum to 1):
every text item goes through the prior in ONE batched call, every image item through the prior's
own CLIP image encoder in one forward pass; the decoder then gets the blend and a negative
embedding. Image ``k`` of a request uses seed ``seed + k`` on its own CPU ``torch.Generator``, so
the same seed, plan and settings give the same images on any device and for any ``n_images``.
With a product lock (rdm/product.py) the inpainting decoder generates around the placed product
from the same blend, and the product's own pixels are pasted back over the result.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

from PIL import Image

from rdm.errors import (ERROR_KINDS, BadRequestError, GenerationError, GenerationTimeoutError,  # noqa: F401
                        MissingImageError, OutOfGPUMemoryError, RequestTooLargeError, WeightsNotFoundError,
                        WorkerAuthError, WorkerUnreachableError)
from rdm.plan import ConditioningPlan, PlanItem, validate_weights
from rdm.product import PlacedProduct, ProductError, ProductLock, ProductPlacement, place_product, product_lock
from rdm.settings import DEFAULT_INPAINT_DECODER_ID, Settings
from rdm.sources import BadImage, decode_image
from rdm.db import StoreError

# progress(stage, step, total): stage is "prior", "decoder" or "worker"
Progress = Callable[[str, int, int], None]
SIZE_MULTIPLE = 64  # MoVQ works on 8x8 latents of 8-pixel blocks; other sizes get silently rounded
MAX_IMAGES_PER_REQUEST = 16
REMOTE_IMAGE_MAX_SIDE = 1024  # references are shrunk before upload; the prior sees 224 px anyway
RESPONSE_SLACK_S = 2.0  # client waits this much past the worker's own deadline before giving up


# --- plain data ---


@dataclass(frozen=True)
class GenerationSettings:
    """Every knob of one generation request; stored in run records and sent to the worker."""

    seed: int = 0
    n_images: int = 1
    steps: int = 50
    guidance: float = 4.0
    size: tuple[int, int] = (768, 768)  # width, height
    negative_prompt: str = ""
    prior_steps: int = 25
    prior_guidance: float = 4.0
    strength: float = 0.3  # variations only: how far img2img may move away from the photo

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        checks = [
            (isinstance(self.seed, int) and 0 <= self.seed < 2**63, f"seed must be an integer >= 0, got {self.seed!r}"),
            (1 <= self.n_images <= MAX_IMAGES_PER_REQUEST,
             f"n_images must be 1..{MAX_IMAGES_PER_REQUEST}, got {self.n_images}"),
            (self.steps >= 1, f"steps must be at least 1, got {self.steps}"),
            # the prior's UnCLIP scheduler divides by (prior_steps - 1)
            (self.prior_steps >= 2, f"prior_steps must be at least 2, got {self.prior_steps}"),
            (len(self.size) == 2 and all(v >= SIZE_MULTIPLE and v % SIZE_MULTIPLE == 0 for v in self.size),
             f"size must be two multiples of {SIZE_MULTIPLE} (e.g. 768x768), got {self.size}"),
            (0.0 < self.strength <= 1.0, f"strength must be in (0, 1], got {self.strength}"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadRequestError(message)

    def to_dict(self) -> dict:
        return {**asdict(self), "size": list(self.size)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "GenerationSettings":
        try:
            return cls(**data)
        except TypeError as exc:
            raise BadRequestError(f"bad generation settings {dict(data)!r}: {exc}") from exc


@dataclass(frozen=True)
class GeneratorInfo:
    """What produced an image: recorded in every run and PNG (never secrets)."""

    backend: str  # local | remote
    prior_id: str
    decoder_id: str
    device: str
    dtype: str
    test_model: bool  # tiny random-weight model: its output is not a real generation
    gpu_name: str | None = None
    worker_url: str | None = None
    inpaint_decoder_id: str | None = None  # the product lock's decoder, loaded on first use

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "GeneratorInfo":
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


# --- images referenced by a plan ---


def image_key(item: PlanItem) -> str:
    """The key under which an image item's picture travels: ``db:<id>`` or ``file:<path>``."""
    return f"db:{item.image_id}" if item.image_id is not None else f"file:{item.path}"


def resolve_images(plan: ConditioningPlan, open_image: Callable[[int], Image.Image] | None = None,
                   loaded: Mapping[str, Image.Image] | None = None) -> dict[str, Image.Image]:
    """Load every image the plan refers to: DB references via ``open_image(id)``, inputs from disk;
    pictures already in ``loaded`` (e.g. from another mode of a comparison) are reused."""
    images: dict[str, Image.Image] = {}
    for item in plan.image_items:
        key = image_key(item)
        if key in images:  # a reference may answer several sub-queries
            continue
        if loaded and key in loaded:
            images[key] = loaded[key]
            continue
        if item.image_id is not None:
            if open_image is None:
                raise MissingImageError(f"plan refers to DB image #{item.image_id} but no DB was given: pass --db")
            try:
                images[image_key(item)] = open_image(item.image_id).convert("RGB")
            except (LookupError, OSError, StoreError) as exc:
                raise MissingImageError(
                    f"reference image #{item.image_id} cannot be loaded from the DB: {exc}") from exc
        else:
            images[image_key(item)] = load_input_image(item.path)
    return images


def load_input_image(path: str | Path) -> Image.Image:
    """An advertiser's photo, decoded like a DB upload (EXIF orientation, transparency on white)."""
    try:
        data = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise MissingImageError(f"input image {path} not found: check the path") from exc
    except OSError as exc:
        raise MissingImageError(f"input image {path} cannot be read: {exc}") from exc
    try:
        return decode_image(data, str(path))
    except BadImage as exc:
        raise MissingImageError(f"input image {path} cannot be read as an image: {exc}") from exc


# --- the generator interface shared by the local and remote backends ---


class BaseGenerator:
    """Validates a request into ``GenerationSettings`` and hands it to the backend's ``_generate``."""

    info: GeneratorInfo

    def generate(self, plan: ConditioningPlan, *, images: Mapping[str, Image.Image] | None = None, seed: int = 0,
                 n_images: int = 1, steps: int = 50, guidance: float = 4.0,
                 size: tuple[int, int] = (768, 768), negative_prompt: str = "", prior_steps: int = 25,
                 prior_guidance: float = 4.0, init_image: Image.Image | None = None, strength: float = 0.3,
                 product: Image.Image | None = None, product_mask: Image.Image | None = None,
                 placement: ProductPlacement = ProductPlacement(),
                 progress: Progress | None = None) -> list[Image.Image]:
        """Images for ``plan``; with ``init_image`` they are img2img variations of that photo; with
        ``product`` (RGBA, or any photo plus ``product_mask``: white = product) the product is placed by
        ``placement``, kept pixel-identical and everything around it is generated."""
        settings = GenerationSettings(seed=seed, n_images=n_images, steps=steps, guidance=guidance, size=size,
                                      negative_prompt=negative_prompt, prior_steps=prior_steps,
                                      prior_guidance=prior_guidance, strength=strength)
        try:
            lock = product_lock(product, product_mask, placement) if product is not None else None
        except ProductError as exc:
            raise BadRequestError(str(exc)) from exc
        return self.generate_with(plan, settings, images=images or {}, init_image=init_image, product=lock,
                                  progress=progress)

    def generate_with(self, plan: ConditioningPlan, settings: GenerationSettings, *,
                      images: Mapping[str, Image.Image], init_image: Image.Image | None = None,
                      product: ProductLock | None = None, progress: Progress | None = None) -> list[Image.Image]:
        validate_weights([item.weight for item in plan.items], what=f"plan '{plan.mode}'")
        missing = [image_key(i) for i in plan.image_items if image_key(i) not in images]
        if missing:
            raise MissingImageError(f"plan '{plan.mode}' needs images that were not supplied: {', '.join(missing)}")
        if init_image is not None and product is not None:
            raise BadRequestError("a variation of a photo and a locked product cannot be combined: "
                                  "drop the variation photo or the product")
        if init_image is not None and int(settings.steps * settings.strength) < 1:
            raise BadRequestError(f"a variation with strength {settings.strength} and {settings.steps} steps runs "
                                  "no denoising step: raise steps or strength")
        if product is not None:
            try:  # refuse a product that does not fit before any model runs or anything is uploaded
                place_product(product, settings.size)
            except ProductError as exc:
                raise BadRequestError(str(exc)) from exc
        return self._generate(plan, settings, images, init_image, product, progress)

    def _generate(self, plan: ConditioningPlan, settings: GenerationSettings, images: Mapping[str, Image.Image],
                  init_image: Image.Image | None, product: ProductLock | None,
                  progress: Progress | None) -> list[Image.Image]:
        raise NotImplementedError


class KandinskyGenerator(BaseGenerator):
    """Kandinsky 2.2 prior + decoder (+ img2img sharing the decoder's modules), loaded once; the
    inpainting decoder (product lock) is loaded on first use."""

    def __init__(self, prior_id: str, decoder_id: str, device: str = "auto", dtype: str | None = None,
                 inpaint_decoder_id: str = DEFAULT_INPAINT_DECODER_ID) -> None:
        import torch
        from diffusers import KandinskyV22Img2ImgPipeline, KandinskyV22Pipeline, KandinskyV22PriorPipeline

        from rdm.tiny import is_test_model

        # 1. device and precision: fp16 halves GPU memory; CPU kernels need fp32
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = dtype or ("float16" if device.startswith("cuda") else "float32")
        torch_dtype = getattr(torch, dtype)
        # 2. weights: local folder or Hugging Face id (from the local cache when offline)
        self.prior = _load_pipeline(KandinskyV22PriorPipeline, prior_id, torch_dtype).to(device)
        self.decoder = _load_pipeline(KandinskyV22Pipeline, decoder_id, torch_dtype).to(device)
        self.img2img = KandinskyV22Img2ImgPipeline(**self.decoder.components)
        for pipe in (self.prior, self.decoder, self.img2img):
            pipe.set_progress_bar_config(disable=True)
        self.device = device
        self.torch_dtype = torch_dtype
        self._inpaint = None
        self.info = GeneratorInfo(
            backend="local", prior_id=str(prior_id), decoder_id=str(decoder_id), device=device, dtype=dtype,
            test_model=is_test_model(prior_id) or is_test_model(decoder_id),
            gpu_name=torch.cuda.get_device_name(device) if device.startswith("cuda") else None,
            inpaint_decoder_id=str(inpaint_decoder_id))

    @property
    def inpaint(self):
        """``KandinskyV22InpaintPipeline``, loaded on first use: runs without a product never need it."""
        if self._inpaint is None:
            from diffusers import KandinskyV22InpaintPipeline

            pipe = _load_pipeline(KandinskyV22InpaintPipeline, self.info.inpaint_decoder_id, self.torch_dtype)
            pipe.set_progress_bar_config(disable=True)
            self._inpaint = pipe.to(self.device)
        return self._inpaint

    def _generate(self, plan, settings, images, init_image, product, progress):
        import torch

        try:
            with torch.inference_mode():
                return self._run(plan, settings, images, init_image, product, progress)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise OutOfGPUMemoryError(
                f"out of GPU memory on {self.info.gpu_name} generating {settings.n_images} image(s) at "
                f"{settings.size[0]}x{settings.size[1]}: lower the number of images or the size, or free the GPU"
            ) from exc

    def _run(self, plan: ConditioningPlan, settings: GenerationSettings, images: Mapping[str, Image.Image],
             init_image: Image.Image | None, product: ProductLock | None,
             progress: Progress | None) -> list[Image.Image]:
        import torch

        n = settings.n_images
        # 1. one CPU generator per output image: noise is identical on every device and any n_images
        generators = [torch.Generator("cpu").manual_seed(settings.seed + k) for k in range(n)]
        # 2. all text items (and a negative prompt) through the prior in one batched call
        texts = [item.text for item in plan.text_items]
        prompts = texts + ([settings.negative_prompt] if settings.negative_prompt else [])
        text_embeds = self._prior_embeds(prompts, settings, generators, progress) if prompts else None
        # 3. all distinct pictures through the prior's CLIP image encoder in one forward pass
        keys = list(dict.fromkeys(image_key(i) for i in plan.image_items))
        image_embeds = dict(zip(keys, self._image_embeds([images[key] for key in keys])))
        # 4. the blend: sum(w_i * emb_i), one row per output image (weights already sum to 1)
        dim = self.prior.prior.config.embedding_dim
        blend = torch.zeros(n, dim, dtype=torch.float32, device=self.device)
        for j, item in enumerate(plan.text_items):
            blend += item.weight * text_embeds[j]
        for item in plan.image_items:
            blend += item.weight * image_embeds[image_key(item)]
        negative = (text_embeds[len(texts)] if settings.negative_prompt
                    else self.prior.get_zero_embed(n, device=self.device).float())
        # 5. the decoder (img2img from the photo, or inpainting around the product) turns the blend into pixels
        if product is not None:
            return self._inpaint_around(blend, negative, settings, generators, place_product(product, settings.size),
                                        progress)
        return self._decode(blend, negative, settings, generators, init_image, progress)

    def _prior_embeds(self, prompts: list[str], settings: GenerationSettings, generators: list,
                      progress: Progress | None):
        """Image embeddings shaped (len(prompts), n_images, dim) from a single prior call."""
        n = settings.n_images
        # rows come out prompt-major (repeat_interleave), so row j*n+k draws from image k's generator
        out = self.prior(prompts, num_images_per_prompt=n, num_inference_steps=settings.prior_steps,
                         guidance_scale=settings.prior_guidance, generator=[g for _ in prompts for g in generators],
                         output_type="pt", callback_on_step_end=_step_callback("prior", settings.prior_steps, progress))
        return out.image_embeds.float().reshape(len(prompts), n, -1)

    def _image_embeds(self, pictures: list[Image.Image]):
        if not pictures:
            return []
        encoder = self.prior.image_encoder
        pixels = self.prior.image_processor([p.convert("RGB") for p in pictures], return_tensors="pt").pixel_values
        return encoder(pixels.to(device=self.device, dtype=encoder.dtype)).image_embeds.float()

    def _decode(self, blend, negative, settings: GenerationSettings, generators: list,
                init_image: Image.Image | None, progress: Progress | None) -> list[Image.Image]:
        common = _decoder_args(blend, negative, settings, generators, self.decoder.unet.dtype)
        if init_image is None:
            callback = _step_callback("decoder", settings.steps, progress)
            return list(self.decoder(**common, callback_on_step_end=callback).images)
        # img2img runs only the last `strength` share of the schedule
        callback = _step_callback("decoder", int(settings.steps * settings.strength), progress)
        photo = init_image.convert("RGB")
        return list(self.img2img(**common, image=[photo] * settings.n_images, strength=settings.strength,
                                 callback_on_step_end=callback).images)

    def _inpaint_around(self, blend, negative, settings: GenerationSettings, generators: list,
                        placed: PlacedProduct, progress: Progress | None) -> list[Image.Image]:
        pipe = self.inpaint
        common = _decoder_args(blend, negative, settings, generators, pipe.unet.dtype)
        # one canvas and mask per image: the pipeline concatenates them with the latents batch by batch
        n = settings.n_images
        generated = pipe(**common, image=[placed.canvas] * n, mask_image=[placed.repaint_mask] * n,
                         callback_on_step_end=_step_callback("decoder", settings.steps, progress)).images
        # the decoder only approximates kept pixels (MoVQ round trip): the product's own pixels go back on top
        return [placed.paste_onto(image) for image in generated]


def _decoder_args(blend, negative, settings: GenerationSettings, generators: list, dtype) -> dict:
    """The arguments every Kandinsky 2.2 decoder pipeline takes, from the blend and the settings."""
    width, height = settings.size
    return dict(image_embeds=blend.to(dtype), negative_image_embeds=negative.to(dtype), width=width,
                height=height, num_inference_steps=settings.steps, guidance_scale=settings.guidance,
                generator=generators, output_type="pil")


def _step_callback(stage: str, total: int, progress: Progress | None):
    if progress is None:
        return None

    def callback(pipe, step, timestep, callback_kwargs):
        progress(stage, step + 1, total)
        return callback_kwargs

    return callback


def _load_pipeline(cls, model_id: str | Path, torch_dtype):
    """``cls.from_pretrained`` with an actionable error when the weights are not on this machine."""
    model_id = str(model_id)
    local = Path(model_id).expanduser()
    looks_local = local.exists() or model_id.startswith(("/", ".", "~"))
    hint = "run with internet once, or set HF_HOME / point to a local folder"
    if looks_local and not (local / "model_index.json").is_file():
        raise WeightsNotFoundError(f"weights for {model_id} not found (no model_index.json there): {hint}")
    try:
        return cls.from_pretrained(str(local) if looks_local else model_id, dtype=torch_dtype)
    except OSError as exc:
        raise WeightsNotFoundError(f"weights for {model_id} not found: {hint} ({exc})") from exc


# --- remote backend ---


def encode_png(image: Image.Image, max_side: int | None = None, mode: str = "RGB") -> str:
    """Base64 PNG of ``image`` in ``mode``, shrunk so its longest side is at most ``max_side``."""
    if max_side and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_png(data: str, what: str = "image", mode: str = "RGB") -> Image.Image:
    try:
        with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as img:
            return img.convert(mode)
    except (ValueError, OSError) as exc:
        raise BadRequestError(f"{what} is not a base64-encoded PNG/JPEG: {exc}") from exc


class RemoteGenerator(BaseGenerator):
    """The same interface as ``KandinskyGenerator``, served by ``rdm worker`` over HTTP (rdm/worker.py)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 600.0,
                 connect_timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._health: dict | None = None

    @property
    def info(self) -> GeneratorInfo:
        # recorded in runs: keep host and port, never credentials embedded in the URL
        parts = urlsplit(self.url)
        public = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()
        return replace(GeneratorInfo.from_dict(self.health()["info"]), backend="remote", worker_url=public)

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
                f"cannot reach the GPU worker at {self.url} ({exc.__class__.__name__}): start it with "
                "`rdm worker --host 0.0.0.0 --port 8765` on the GPU machine, or fix RDM_WORKER_URL") from exc
        except httpx.TimeoutException as exc:
            raise GenerationTimeoutError(
                f"the GPU worker at {self.url} did not answer within {timeout:.0f}s: raise the timeout, "
                "or lower steps / number of images") from exc
        return _parse_reply(response, self.url)


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


# --- picking a backend from settings ---

BACKENDS = ("local", "remote", "tiny")


def make_generator(settings: Settings, backend: str | None = None, *, timeout: float = 600.0) -> BaseGenerator:
    """The generator for ``backend`` (default ``settings.backend``): local GPU/CPU, a remote worker,
    or the tiny random-weight test model (never the default)."""
    backend = backend or settings.backend
    if backend == "local":
        return KandinskyGenerator(settings.prior_id, settings.decoder_id,
                                  inpaint_decoder_id=settings.inpaint_decoder_id)
    if backend == "tiny":
        from rdm.tiny import ensure_tiny_kandinsky

        tiny = ensure_tiny_kandinsky()
        return KandinskyGenerator(str(tiny.prior), str(tiny.decoder), inpaint_decoder_id=str(tiny.inpaint))
    if backend == "remote":
        if not settings.worker_url:
            raise WorkerUnreachableError("backend 'remote' needs the worker's URL: set RDM_WORKER_URL "
                                         "(e.g. http://gpu-box:8765)")
        return RemoteGenerator(settings.worker_url, settings.worker_token, timeout=timeout)
    raise BadRequestError(f"unknown generation backend {backend!r}: choose one of {', '.join(BACKENDS)}")
