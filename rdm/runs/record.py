"""A run record: the plain data of one saved generation, as ``run.json`` holds it.

Every section is a small frozen dataclass with ``to_dict`` / ``from_dict``: the DB the references
came from, the product kept pixel-identical, what each mode retrieved, and each image's scores.
``run.json`` carries ``format``; a run written in a format this version does not read is refused
with a message that says so (format 1: the runs written before the format was recorded, which
have the same layout).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from rdm import __version__
from rdm.decompose import Decomposition
from rdm.errors import RDMError, RunError
from rdm.common.bounds import check_list, check_number, check_text
from rdm.common.files import inside
from rdm.generate import GenerationSettings, GeneratorInfo
from rdm.plan import ConditioningPlan
from rdm.generate.product import ProductLock, ProductPlacement
from rdm.retrieve import FilterSettings, Retrieval

RUN_FILE = "run.json"
RUN_FORMAT = 2
READABLE_FORMATS = (1, 2)
SCORE_DIGITS = 4
MAX_ITEMS = 1000  # per list in run.json: a tampered one cannot make a report of millions of rows
MAX_TEXT = 20_000  # characters per text


def _text(value: object, what: str, optional: bool = False) -> str | None:
    """``value`` if it is text of a sane length (or None when ``optional``), else a ValueError naming ``what``."""
    return None if value is None and optional else check_text(value, what, MAX_TEXT, error=ValueError)


def _items(value: object, what: str) -> list:
    return check_list(value, what, MAX_ITEMS, error=ValueError)


def _score(value: object, what: str) -> float | None:
    return None if value is None else float(check_number(value, what, -1e6, 1e6, error=RunError))


@dataclass(frozen=True)
class DbProvenance:
    """Which DB, index version and encoder a run's references and scores came from."""

    path: str
    index_version: int
    encoder: str

    @classmethod
    def of(cls, store: Any) -> "DbProvenance":
        stats = store.stats()
        return cls(path=str(store.path), index_version=stats.index_version, encoder=stats.encoder)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "DbProvenance":
        return cls(path=str(data["path"]), index_version=int(data["index_version"]), encoder=str(data["encoder"]))


@dataclass(frozen=True)
class ProductRecord:
    """The product a run kept pixel-identical: where it came from, its fingerprint and its placement."""

    source: str | None
    mask: str | None
    size: tuple[int, int]
    placement: ProductPlacement
    sha256: str

    @classmethod
    def of(cls, lock: ProductLock) -> "ProductRecord":
        return cls(source=lock.source, mask=lock.mask_source, size=tuple(lock.image.size),
                   placement=lock.placement, sha256=lock.sha256())

    def placement_text(self) -> str:
        """``scale 0.5 at (0.5, 0.6)``."""
        p = self.placement
        return f"scale {p.scale:g} at ({p.x:g}, {p.y:g})"

    def to_dict(self) -> dict:
        return {"pixel_identical": True, "source": self.source, "mask": self.mask, "size": list(self.size),
                "placement": self.placement.to_dict(), "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Mapping) -> "ProductRecord":
        return cls(source=_text(data.get("source"), "the product's source", optional=True),
                   mask=_text(data.get("mask"), "the product's mask", optional=True), size=tuple(data["size"]),
                   placement=ProductPlacement.from_dict(data["placement"]), sha256=str(data["sha256"]))


@dataclass(frozen=True)
class HitRecord:
    """One retrieved reference as the run saw it, and why it was left out (if it was)."""

    id: int
    score: float
    filename: str
    category: str = ""
    tags: tuple[str, ...] = ()
    caption: str = ""
    subquery: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict:
        d = {"id": self.id, "score": self.score, "filename": self.filename, "category": self.category,
             "tags": list(self.tags), "caption": self.caption}
        if self.subquery is not None:
            d["subquery"] = self.subquery
        if self.reason is not None:
            d["reason"] = self.reason
        return d

    @classmethod
    def from_dict(cls, data: Mapping) -> "HitRecord":
        return cls(id=int(data["id"]), score=float(data["score"]), filename=str(data["filename"]),
                   category=str(data.get("category", "")), tags=tuple(data.get("tags", ())),
                   caption=str(data.get("caption", "")), subquery=data.get("subquery"), reason=data.get("reason"))


@dataclass(frozen=True)
class RetrievalRecord:
    """What one mode retrieved: its sub-queries, every hit, the kept set, what was left out and why."""

    decomposition: Decomposition | None = None
    filters: FilterSettings | None = None
    hits: tuple[HitRecord, ...] = ()
    kept: tuple[HitRecord, ...] = ()
    filtered: tuple[HitRecord, ...] = ()
    uncovered: tuple[str, ...] = ()

    @classmethod
    def of(cls, retrieval: Retrieval) -> "RetrievalRecord":
        return cls.from_dict(retrieval.to_dict())

    def to_dict(self) -> dict:
        return {"decomposition": self.decomposition.to_dict() if self.decomposition else None,
                "filters": asdict(self.filters) if self.filters else None,
                "hits": [h.to_dict() for h in self.hits], "kept": [h.to_dict() for h in self.kept],
                "filtered": [h.to_dict() for h in self.filtered], "uncovered": list(self.uncovered)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "RetrievalRecord":
        hits = {key: tuple(HitRecord.from_dict(h) for h in data.get(key) or ()) for key in ("hits", "kept", "filtered")}
        return cls(decomposition=Decomposition.from_dict(data["decomposition"]) if data.get("decomposition") else None,
                   filters=FilterSettings(**data["filters"]) if data.get("filters") else None,
                   uncovered=tuple(data.get("uncovered", ())), **hits)


@dataclass(frozen=True)
class ModeOutput:
    """What one mode produced, before it is saved."""

    plan: ConditioningPlan
    images: tuple[Image.Image, ...]
    seconds: float
    retrieval: RetrievalRecord | None = None


@dataclass(frozen=True)
class ImageResult:
    file: str  # relative to the run folder
    seed: int
    prompt_score: float | None  # cosine against the full prompt
    requirement_scores: tuple[float, ...]  # one per run requirement, same order

    def to_dict(self) -> dict:
        return {**asdict(self), "requirement_scores": list(self.requirement_scores)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "ImageResult":
        return cls(file=_text(data["file"], "an image's file"),
                   seed=int(check_number(data["seed"], "an image's seed", 0, 2**63, integer=True, error=RunError)),
                   prompt_score=_score(data.get("prompt_score"), "an image's prompt score"),
                   requirement_scores=tuple(_score(v, "a requirement score") for v in
                                            _items(data.get("requirement_scores", []), "requirement_scores")))


@dataclass(frozen=True)
class ModeResult:
    mode: str
    plan: ConditioningPlan
    images: tuple[ImageResult, ...]
    seconds: float
    retrieval: RetrievalRecord | None = None

    def mean_scores(self) -> tuple[float | None, tuple[float, ...]]:
        """Mean prompt score and mean score per requirement over this mode's images."""
        prompt = [i.prompt_score for i in self.images if i.prompt_score is not None]
        rows = [i.requirement_scores for i in self.images if i.requirement_scores]
        return (round(float(np.mean(prompt)), SCORE_DIGITS) if prompt else None,
                tuple(round(float(v), SCORE_DIGITS) for v in np.mean(rows, axis=0)) if rows else ())

    def to_dict(self) -> dict:
        return {"mode": self.mode, "seconds": self.seconds, "plan": self.plan.to_dict(),
                "retrieval": self.retrieval.to_dict() if self.retrieval else None,
                "images": [i.to_dict() for i in self.images]}

    @classmethod
    def from_dict(cls, data: Mapping) -> "ModeResult":
        return cls(mode=_text(data["mode"], "a mode's name"), plan=ConditioningPlan.from_dict(data["plan"]),
                   seconds=float(check_number(data["seconds"], "a mode's seconds", 0, 1e9, error=RunError)),
                   retrieval=RetrievalRecord.from_dict(data["retrieval"]) if data.get("retrieval") else None,
                   images=tuple(ImageResult.from_dict(i) for i in _items(data["images"], "a mode's images")))


@dataclass(frozen=True)
class RunRecord:
    id: str
    created: str
    prompt: str
    requirements: tuple[str, ...]  # sub-queries every image is scored against
    modes: tuple[ModeResult, ...]
    settings: GenerationSettings
    generator: GeneratorInfo
    db: DbProvenance | None = None
    scorer: str | None = None  # encoder name used for the scores
    thumbnails: dict[str, str] = field(default_factory=dict)  # image key -> refs/ file
    timings: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # the request's retrieval knobs (RunRequest.options)
    variation_of: str | None = None  # the product photo an img2img run started from
    product: ProductRecord | None = None  # the product kept pixel-identical, and where
    folder: Path | None = field(default=None, compare=False)  # where it was loaded from; not saved

    @property
    def test_model(self) -> bool:
        return self.generator.test_model

    @property
    def comparison(self) -> bool:
        return len(self.modes) > 1

    def image_path(self, image: ImageResult) -> Path | None:
        """Where ``image`` is, inside this run's folder (None for a path that would leave it)."""
        return inside(self.folder or Path("."), image.file)

    def image_paths(self) -> list[Path]:
        return [p for mode in self.modes for image in mode.images if (p := self.image_path(image)) is not None]

    def to_dict(self) -> dict:
        return {
            "format": RUN_FORMAT, "id": self.id, "created": self.created, "prompt": self.prompt,
            "test_model": self.test_model, "requirements": list(self.requirements),
            "modes": [m.to_dict() for m in self.modes],
            "settings": self.settings.to_dict(), "generator": self.generator.to_dict(),
            "db": self.db.to_dict() if self.db else None, "scorer": self.scorer, "thumbnails": self.thumbnails,
            "timings": self.timings, "options": self.options, "variation_of": self.variation_of,
            "product": self.product.to_dict() if self.product else None, "rdm_version": __version__,
        }

    @classmethod
    def from_dict(cls, data: dict, folder: Path | None = None) -> "RunRecord":
        where = folder or data.get("id", "")
        version = data.get("format", 1) if isinstance(data, dict) else None
        if version not in READABLE_FORMATS:
            raise RunError(f"run {where} is in run format {version!r} (written by RDM Studio "
                           f"{data.get('rdm_version', '?') if isinstance(data, dict) else '?'}); this version "
                           f"({__version__}) reads formats {', '.join(map(str, READABLE_FORMATS))}: open it with "
                           "the RDM Studio that wrote it, or a newer one")
        try:
            thumbnails = data.get("thumbnails", {})
            if not isinstance(thumbnails, dict) or len(thumbnails) > MAX_ITEMS:
                raise ValueError(f"thumbnails must map at most {MAX_ITEMS:,} image keys to files")
            return cls(id=_text(data["id"], "id"), created=_text(data["created"], "created"),
                       prompt=_text(data["prompt"], "prompt"),
                       requirements=tuple(_text(r, "a requirement") for r in _items(data.get("requirements", []),
                                                                                   "requirements")),
                       modes=tuple(ModeResult.from_dict(m) for m in _items(data["modes"], "modes")),
                       settings=GenerationSettings.from_dict(data["settings"]),
                       generator=GeneratorInfo.from_dict(data["generator"]),
                       db=DbProvenance.from_dict(data["db"]) if data.get("db") else None,
                       scorer=_text(data.get("scorer"), "scorer", optional=True),
                       thumbnails={_text(k, "a thumbnail key"): _text(v, "a thumbnail file") for k, v in thumbnails.items()},
                       timings=dict(data.get("timings", {})), options=dict(data.get("options", {})),
                       variation_of=data.get("variation_of"),
                       product=ProductRecord.from_dict(data["product"]) if data.get("product") else None,
                       folder=folder)
        except (KeyError, TypeError, ValueError, AttributeError, RDMError) as exc:
            what = f"{exc} is missing" if isinstance(exc, KeyError) else str(exc)
            raise RunError(f"damaged run: {what} (in {where}; the run folder was edited or damaged: "
                           "save the run again, or delete it)") from exc


def requirements_of(retrievals: Sequence[RetrievalRecord | None]) -> tuple[str, ...]:
    """The sub-queries to score against: from the first LLM/offline decomposition, else KeyBERT's."""
    decompositions = [r.decomposition for r in retrievals if r and r.decomposition]
    decompositions.sort(key=lambda d: d.backend == "keybert")  # stable: keeps mode order otherwise
    return tuple(q.text for q in decompositions[0].subqueries) if decompositions else ()
