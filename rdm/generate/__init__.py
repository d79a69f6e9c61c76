"""Kandinsky 2.2 generation from a conditioning plan: in-process or on a remote GPU worker.

The blended image embedding is ``sum(w_i * emb_i)`` over the plan's items (weights sum to 1):
every text item goes through the prior in ONE batched call, every image item through the prior's
own CLIP image encoder in one forward pass; the decoder then gets the blend and a negative
embedding. Image ``k`` of a request uses seed ``seed + k`` on its own CPU ``torch.Generator``, so
the same seed, plan and settings give the same images on any device and for any ``n_images``.
With a product lock (rdm/generate/product.py) the inpainting decoder generates around the placed product
from the same blend, and the product's own pixels are pasted back over the result.
"""

from __future__ import annotations

from typing import Callable

from rdm.errors import (BadRequestError, GenerationError, GenerationTimeoutError, MissingImageError,
                        OutOfGPUMemoryError, RequestTooLargeError, WeightsMissing, WorkerAuthError,
                        WorkerUnreachableError)
from rdm.generate.base import BaseGenerator, Progress, image_key, load_input_image, resolve_images
from rdm.generate.kandinsky import KandinskyGenerator
from rdm.generate.remote import RemoteGenerator, decode_png, encode_png, too_large_message
from rdm.generate.settings import MAX_IMAGES_PER_REQUEST, SIZE_MULTIPLE, GenerationSettings, GeneratorInfo
from rdm.settings import Settings

__all__ = ["BACKENDS", "BadRequestError", "BaseGenerator", "GenerationError", "GenerationSettings",
           "GenerationTimeoutError", "GeneratorInfo", "KandinskyGenerator", "MAX_IMAGES_PER_REQUEST",
           "MissingImageError", "OutOfGPUMemoryError", "Progress", "RemoteGenerator", "RequestTooLargeError",
           "SIZE_MULTIPLE", "WeightsMissing", "WorkerAuthError", "WorkerUnreachableError", "decode_png",
           "encode_png", "generator_factories", "image_key", "load_input_image", "made_once", "make_generator",
           "resolve_images", "too_large_message"]

BACKENDS = ("local", "remote", "tiny")


def make_generator(settings: Settings, backend: str | None = None, *, timeout: float = 600.0,
                   worker: int = 0) -> BaseGenerator:
    """The generator for ``backend`` (default ``settings.backend``): local GPU/CPU, a remote worker (the
    ``worker``-th of RDM_WORKER_URL's list), or the tiny random-weight test model (never the default)."""
    backend = backend or settings.backend
    if backend == "local":
        return KandinskyGenerator(settings.prior_id, settings.decoder_id,
                                  inpaint_decoder_id=settings.inpaint_decoder_id)
    if backend == "tiny":
        from rdm.generate.tiny import ensure_tiny_kandinsky

        tiny = ensure_tiny_kandinsky()
        return KandinskyGenerator(str(tiny.prior), str(tiny.decoder), inpaint_decoder_id=str(tiny.inpaint))
    if backend == "remote":
        if not settings.worker_urls:
            raise WorkerUnreachableError("backend 'remote' needs the worker's URL: set RDM_WORKER_URL "
                                         "(e.g. http://gpu-box:8765)")
        return RemoteGenerator(settings.worker_urls[worker % len(settings.worker_urls)], settings.worker_token,
                               timeout=timeout)
    raise BadRequestError(f"unknown generation backend {backend!r}: choose one of {', '.join(BACKENDS)}")


def generator_factories(settings: Settings, backend: str | None = None) -> list[Callable[[], BaseGenerator]]:
    """One generator factory per GPU worker for ``remote`` with several RDM_WORKER_URLs, else one."""
    backend = backend or settings.backend
    count = len(settings.worker_urls) if backend == "remote" else 1
    return [lambda n=n: make_generator(settings, backend, worker=n) for n in range(max(count, 1))]


def made_once(factory: Callable[[], BaseGenerator]) -> Callable[[], BaseGenerator]:
    """``factory`` called once, when a run first needs the generator (a model loads once per job)."""
    cache: list[BaseGenerator] = []
    return lambda: cache[0] if cache else cache.append(factory()) or cache[0]
