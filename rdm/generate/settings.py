"""The settings of one generation request and the description of what generates: plain data,
stored in run records and sent to the GPU worker. The defaults here are the only ones: the CLI's
options and the dashboard's widgets read them from these classes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

from rdm.errors import BadRequestError

SIZE_MULTIPLE = 64  # MoVQ works on 8x8 latents of 8-pixel blocks; other sizes get silently rounded
MAX_IMAGES_PER_REQUEST = 16
# what `rdm worker` accepts unless told otherwise
DEFAULT_MAX_BODY_BYTES = 64 * 2**20
DEFAULT_MAX_TIMEOUT_S = 600.0


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

