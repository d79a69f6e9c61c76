"""The settings of one generation request and the description of what generates: plain data,
stored in run records and sent to the GPU worker. The defaults here are the only ones: the CLI's
options and the dashboard's widgets read them from these classes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

from rdm.common.bounds import check_number
from rdm.errors import BadRequestError

SIZE_MULTIPLE = 64  # MoVQ works on 8x8 latents of 8-pixel blocks; other sizes get silently rounded
MAX_IMAGES_PER_REQUEST = 16
# Upper bounds: memory is allocated before the first step, so a deadline alone cannot stop a
# request that is too big. The schedulers were trained on 1000 timesteps; 500 is far past useful.
MAX_STEPS = 500
MAX_PRIOR_STEPS = 200
MAX_SIDE = 2048
MAX_BATCH_PIXELS = MAX_IMAGES_PER_REQUEST * 768 * 768  # n_images x width x height
MAX_GUIDANCE = 30.0
MAX_NEGATIVE_CHARS = 1000
# what `rdm worker` accepts unless told otherwise
DEFAULT_MAX_BODY_BYTES = 64 * 2**20
DEFAULT_MAX_TIMEOUT_S = 600.0
DEFAULT_MAX_PIXELS = 48_000_000  # every picture of one request together: about 150 MB decoded


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
        def check(value, name, low, high, **kw):
            return check_number(value, name, low, high, error=BadRequestError, **kw)

        check(self.seed, "seed", 0, 2**63 - 1, integer=True)
        check(self.n_images, "n_images", 1, MAX_IMAGES_PER_REQUEST, integer=True)
        check(self.steps, "steps", 1, MAX_STEPS, integer=True)
        # the prior's UnCLIP scheduler divides by (prior_steps - 1)
        check(self.prior_steps, "prior_steps", 2, MAX_PRIOR_STEPS, integer=True)
        check(self.guidance, "guidance", 0.0, MAX_GUIDANCE)
        check(self.prior_guidance, "prior_guidance", 0.0, MAX_GUIDANCE)
        check(self.strength, "strength", 0.0, 1.0, low_open=True)
        if not isinstance(self.size, (tuple, list)) or len(self.size) != 2:
            raise BadRequestError(f"size must be two multiples of {SIZE_MULTIPLE} (e.g. 768x768), got {self.size!r}")
        for side in self.size:
            check(side, "width and height", SIZE_MULTIPLE, MAX_SIDE, integer=True)
        object.__setattr__(self, "size", tuple(self.size))
        if any(v % SIZE_MULTIPLE for v in self.size):
            raise BadRequestError(f"size must be two multiples of {SIZE_MULTIPLE} (e.g. 768x768), got {self.size}")
        pixels = self.n_images * self.size[0] * self.size[1]
        if pixels > MAX_BATCH_PIXELS:
            raise BadRequestError(f"{self.n_images} image(s) of {self.size[0]}x{self.size[1]} are {pixels / 1e6:.1f} MP, "
                                  f"over the {MAX_BATCH_PIXELS / 1e6:.1f} MP one request may generate: "
                                  "lower the number of images or the size")
        if not isinstance(self.negative_prompt, str) or len(self.negative_prompt) > MAX_NEGATIVE_CHARS:
            raise BadRequestError(f"the negative prompt must be text of at most {MAX_NEGATIVE_CHARS} characters")

    def to_dict(self) -> dict:
        return {**asdict(self), "size": list(self.size)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "GenerationSettings":
        if not isinstance(data, Mapping):
            raise BadRequestError(f"generation settings must be an object, got {data!r}")
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
    scheduler: str | None = None  # the decoder's diffusers scheduler class, e.g. DDPMScheduler

    @property
    def sampler(self) -> str:
        """The sampler's name as image tools show it: ``DDPM`` for ``DDPMScheduler``."""
        return (self.scheduler or "DDPMScheduler").removesuffix("Scheduler")  # Kandinsky 2.2's own default

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "GeneratorInfo":
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})

