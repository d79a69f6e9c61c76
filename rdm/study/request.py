"""A study as plain data: prompts x modes x seeds, the scorers and the shared settings, checked when built."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

from rdm.errors import BadRequestError
from rdm.generate import GenerationSettings
from rdm.retrieve import RECIPES, RetrievalSettings
from rdm.study.suite import SuitePrompt

DEFAULT_MODES = ("none", "full", "subquery", "subquery+filter")


@dataclass(frozen=True)
class StudyRequest:
    """A study: prompts x modes x seeds.

    Args:
        suite: the prompts (``rdm.study.suite.load_suite``).
        modes: modes or presets, generated side by side with the same seeds.
        seeds: seeds per prompt; with ``n``, ``seeds * n`` images per mode and prompt, image k from seed
            ``settings.seed + k`` in every mode, so images pair on (prompt, seed).
        n: images per seed.
        candidates: best-of-N: generate N candidates per (mode, prompt, seed) and keep the one with the
            best mean VQAScore over the requirements (the first scorer's, without a VQA scorer).
        scorers: ``clip[:MODEL]``, ``vqa[:MODEL]`` (``:tiny`` for the test models).
        settings: generation settings shared by every image (``seed`` is the first seed).
        retrieval: k, budget, decomposer, filter, retrieval kind.
        backend: local | remote | tiny, recorded.
        variation_strength: make every image an img2img variation of the prompt's first product photo at this
            strength (the seed's "variations of a photographed image"); None: generate from noise.
    """

    suite: tuple[SuitePrompt, ...]
    modes: tuple[str, ...] = DEFAULT_MODES
    seeds: int = 3
    n: int = 1
    candidates: int = 1
    scorers: tuple[str, ...] = ("clip", "vqa")
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    backend: str = "local"
    variation_strength: float | None = None

    def __post_init__(self) -> None:
        for name in ("suite", "modes", "scorers"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.suite:
            raise BadRequestError("the study has no prompts: give a suite with at least one")
        unknown = [m for m in self.modes if m not in RECIPES]
        if unknown or len(self.modes) < 2:
            raise BadRequestError(f"a study compares two or more modes of {', '.join(RECIPES)}; got "
                                  f"{', '.join(self.modes) or 'none'}")
        for name, value in (("seeds", self.seeds), ("n", self.n), ("candidates", self.candidates)):
            if not isinstance(value, int) or value < 1:
                raise BadRequestError(f"--{name} must be a whole number of at least 1, got {value!r}")
        if not self.scorers:
            raise BadRequestError("a study needs a scorer: --scorer clip, --scorer vqa (or clip:tiny, vqa:tiny)")
        GenerationSettings(**{**asdict(self.settings), "n_images": self.seeds * self.n})  # within the limits
        if self.variation_strength is not None:
            GenerationSettings(strength=self.variation_strength)  # (0, 1]
            bare = [p.id for p in self.suite if not p.products]
            if bare:
                raise BadRequestError(f"variations need a product photo per prompt; {', '.join(bare)} has none: "
                                      "add \"products\" to those lines or drop --variation-strength")

    def to_dict(self) -> dict:
        return {"modes": list(self.modes), "seeds": self.seeds, "n": self.n, "candidates": self.candidates,
                "scorers": list(self.scorers), "settings": self.settings.to_dict(), "backend": self.backend,
                "variation_strength": self.variation_strength,
                "retrieval": {"k": self.retrieval.k, "budget": self.retrieval.budget,
                              "decomposer": self.retrieval.decomposer, "filters": asdict(self.retrieval.filters),
                              "fusion": asdict(self.retrieval.fusion)}}

    @classmethod
    def from_dict(cls, data: Mapping, suite: Sequence[SuitePrompt]) -> "StudyRequest":
        """The request ``to_dict`` wrote (a plan's), over ``suite``."""
        from rdm.retrieve import FilterSettings, Fusion

        r = data["retrieval"]
        return cls(tuple(suite), tuple(data["modes"]), data["seeds"], data["n"], data["candidates"],
                   tuple(data["scorers"]), GenerationSettings.from_dict(data["settings"]),
                   RetrievalSettings(k=r["k"], budget=r["budget"], decomposer=r["decomposer"],
                                     filters=FilterSettings(**r["filters"]), fusion=Fusion(**r["fusion"])),
                   data["backend"], data["variation_strength"])
