"""One generation run, top to bottom, as a diffusers pipeline reads: the request, then its steps.

The CLI (`rdm generate`), the dashboard (Generate & compare, Variations, through a background job), the
job worker and the study runner all build a ``RunRequest`` and call ``run_request``:

1. settings: the request (prompt, modes, photos, generation and retrieval knobs), checked when built;
2. decompose the prompt into weighted sub-queries (``rdm.decompose``), or take the user's edited table;
3. retrieve top-k references per sub-query (``rdm.retrieve.references``);
4. filter them (``rdm.retrieve.filter``);
5. weight the conditioning plan (``rdm.retrieve.planning``);
6. generate every mode from the same seed (``rdm.generate``);
7. score and save the run folder (``rdm.runs.save``).

What a run records about its options comes from the request, so every front end records the same.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from PIL import Image

from rdm.db import ImageStore
from rdm.decompose import Decomposition, LLMConfig
from rdm.errors import BadRequestError, RetrievalError
from rdm.generate import BaseGenerator, GenerationSettings, load_input_image, resolve_images
from rdm.generate.product import ProductLock
from rdm.plan import ConditioningPlan
from rdm.retrieve import RECIPES, Retrieval, RetrievalSettings, plan_for
from rdm.runs.record import DbProvenance, ModeOutput, ProductRecord, RetrievalRecord, RunRecord, requirements_of
from rdm.runs.save import PRODUCT_KEY, RunProgress, Scorer, save_run

RETRIEVAL_STAGE = "retrieval"  # the progress stage reported once per mode before generation starts


@dataclass(frozen=True)
class RunRequest:
    """Everything one generation run needs.

    Args:
        prompt: the ad prompt.
        modes: modes and/or presets to generate side by side with the same seed (rdm.retrieve.RECIPES).
        input_images: the advertiser's product photos (paths), conditioning every mode with fixed weights.
        input_weights: one weight per input photo; None: each preset's own (exp1/exp2 0.2, 0.3; others 0.4).
        variation_of: a product photo to make img2img variations of (``settings.strength``).
        product: a product kept pixel-identical; the model generates around it.
        settings: the generation knobs (steps, guidance, size, seed, images per mode, ...).
        retrieval: k, reference budget, decomposer and filter.
        decomposition: sub-queries the user edited; they replace the decomposer's in every mode that
            does not force its own decomposer (exp1 always uses KeyBERT).
        backend: local | remote | tiny, recorded with the run.
    """

    prompt: str
    modes: tuple[str, ...] = ("subquery+filter",)
    input_images: tuple[str, ...] = ()
    input_weights: tuple[float, ...] | None = None
    variation_of: str | None = None
    product: ProductLock | None = None
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    decomposition: Decomposition | None = None
    backend: str = "local"

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes", tuple(self.modes))
        object.__setattr__(self, "input_images", tuple(str(p) for p in self.input_images))
        if self.input_weights is not None:
            object.__setattr__(self, "input_weights", tuple(float(w) for w in self.input_weights))
        if not " ".join(self.prompt.split()):
            raise RetrievalError("the prompt is empty: describe the image to generate")
        if not self.modes:
            raise RetrievalError(f"no mode chosen: pick at least one of {', '.join(RECIPES)}")
        unknown = [m for m in self.modes if m not in RECIPES]
        if unknown:
            raise RetrievalError(f"unknown mode {unknown[0]!r}: use one of {', '.join(RECIPES)}")
        if len(set(self.modes)) != len(self.modes):
            raise RetrievalError(f"a mode is listed twice in {', '.join(self.modes)}: list each once")
        if self.variation_of is not None and self.product is not None:
            raise BadRequestError("a variation of a photo and a locked product cannot be combined: "
                                  "drop the variation photo or the product")

    def to_dict(self) -> dict:
        """Plain JSON (a background job's payload); the product as its files and placement."""
        product = self.product
        return {"prompt": self.prompt, "modes": list(self.modes), "input_images": list(self.input_images),
                "input_weights": list(self.input_weights) if self.input_weights is not None else None,
                "variation_of": self.variation_of, "settings": self.settings.to_dict(),
                "retrieval": {"k": self.retrieval.k, "budget": self.retrieval.budget,
                              "decomposer": self.retrieval.decomposer, "filters": asdict(self.retrieval.filters),
                              "fusion": asdict(self.retrieval.fusion)},
                "decomposition": self.decomposition.to_dict() if self.decomposition else None,
                "product": {"source": product.source, "mask": product.mask_source,
                            "placement": product.placement.to_dict()} if product else None,
                "backend": self.backend}

    @classmethod
    def from_dict(cls, data: dict) -> "RunRequest":
        """The request ``to_dict`` wrote; the product is loaded again from its files."""
        from rdm.retrieve import FilterSettings, Fusion
        from rdm.generate.product import ProductPlacement, load_product

        r, product = data.get("retrieval") or {}, data.get("product")
        if product is not None and not product.get("source"):
            raise BadRequestError("a locked product needs its photo file: upload it again")
        return cls(
            prompt=data["prompt"], modes=tuple(data["modes"]), input_images=tuple(data.get("input_images") or ()),
            input_weights=tuple(data["input_weights"]) if data.get("input_weights") is not None else None,
            variation_of=data.get("variation_of"), settings=GenerationSettings.from_dict(data.get("settings") or {}),
            retrieval=RetrievalSettings(k=r.get("k", RetrievalSettings.k), budget=r.get("budget"),
                                        decomposer=r.get("decomposer", RetrievalSettings.decomposer),
                                        filters=FilterSettings(**(r.get("filters") or {})),
                                        fusion=Fusion(**(r.get("fusion") or {}))),
            decomposition=Decomposition.from_dict(data["decomposition"]) if data.get("decomposition") else None,
            product=load_product(product["source"], product.get("mask"),
                                 ProductPlacement.from_dict(product["placement"])) if product else None,
            backend=data.get("backend", "local"))

    def options(self) -> dict:
        """The run record's ``options`` section: how references were found, for every front end alike."""
        return {"modes": list(self.modes), "k": self.retrieval.k, "budget": self.retrieval.budget,
                "decomposer": "edited" if self.decomposition is not None else self.retrieval.decomposer,
                "filters": asdict(self.retrieval.filters), "fusion": asdict(self.retrieval.fusion),
                "backend": self.backend,
                "input_weights": list(self.input_weights) if self.input_weights is not None else None}


def run_request(request: RunRequest, *, store: ImageStore, generator: Callable[[], BaseGenerator],
                runs_dir: str | Path, llm: LLMConfig | None = None,
                progress: RunProgress | None = None) -> RunRecord:
    """One run, top to bottom: every mode of the request retrieved, generated with the same seed, scored, saved.

    ``generator`` is called once retrieval has succeeded, so a bad prompt or DB is reported before
    any model loads. ``progress(mode, stage, step, total)`` reports the retrieval of each mode and
    then every denoising step.
    """
    # 1. Settings: the request checked its knobs when it was built; the run records them as given.
    r = request.retrieval
    retrievals = []
    for mode in request.modes:
        # 2-5. Decompose (the user's edited sub-queries where the mode takes them), retrieve per sub-query,
        #      filter, and weight the conditioning plan: ``rdm.retrieve.plan_for`` reads in those steps.
        edited = request.decomposition if RECIPES[mode].decomposer is None else None
        retrievals.append(plan_for(store, request.prompt, mode, input_images=request.input_images,
                                   input_weights=request.input_weights, k=r.k, budget=r.budget, filters=r.filters,
                                   fusion=r.fusion, decomposer_backend=r.decomposer, llm=llm, decomposition=edited))
        if progress:
            progress(mode, RETRIEVAL_STAGE, 1, 1)
    # 6-7. Generate every plan from the same seed, then score and save the run folder.
    return generate_run(generator(), retrievals, settings=request.settings, runs_dir=runs_dir,
                        open_image=store.open_image, scorer=store.encoder, db=DbProvenance.of(store),
                        init_image=request.variation_of, product=request.product, progress=progress,
                        options=request.options())


def generate_run(generator: BaseGenerator, retrievals: Sequence[Retrieval | ConditioningPlan], *,
                 settings: GenerationSettings, runs_dir: str | Path,
                 open_image: Callable[[int], Image.Image] | None = None, scorer: Scorer | None = None,
                 db: DbProvenance | None = None, init_image: str | Path | None = None,
                 product: ProductLock | None = None, requirements: Sequence[str] | None = None,
                 options: Mapping | None = None, progress: RunProgress | None = None) -> RunRecord:
    """Generate every retrieval's plan with the same settings and seed, then save one run.

    Args:
        generator: local, remote or tiny Kandinsky 2.2.
        retrievals: ``rdm.retrieve.Retrieval`` objects, or bare ``ConditioningPlan``s.
        settings: steps, guidance, size, seed, ... shared by every mode.
        runs_dir: where the run folder goes.
        open_image: DB image id -> picture, for the plans' references.
        scorer: scores every image against the prompt and each requirement (None: no scores).
        db: the DB the references came from.
        init_image: a product photo to make img2img variations of.
        product: a product to keep pixel-identical in every mode.
        requirements: what to score against (default: the decomposition's sub-queries).
        options: the request's retrieval knobs, recorded as they are.
        progress: ``progress(mode, stage, step, total)`` for each denoising step.
    """
    # 6. Generate: each plan's pictures (DB references, the advertiser's photos), all modes from one seed.
    started = time.monotonic()
    photo = load_input_image(init_image) if init_image else None
    outputs, pictures = [], ({PRODUCT_KEY: product.image} if product else {})
    for retrieval in retrievals:
        plan = retrieval if isinstance(retrieval, ConditioningPlan) else retrieval.plan
        images = resolve_images(plan, open_image, loaded=pictures)
        pictures.update(images)
        step = (lambda stage, i, n, mode=plan.mode: progress(mode, stage, i, n)) if progress else None
        t0 = time.monotonic()
        generated = generator.generate(plan, settings, images=images, init_image=photo, product=product,
                                       progress=step)
        outputs.append(ModeOutput(plan=plan, images=tuple(generated), seconds=round(time.monotonic() - t0, 3),
                                  retrieval=None if isinstance(retrieval, ConditioningPlan)
                                  else RetrievalRecord.of(retrieval)))
    if requirements is None:
        requirements = requirements_of([o.retrieval for o in outputs])
    # 7. Save: scores, PNGs with provenance, thumbnails and run.json, as one folder.
    return save_run(runs_dir, outputs, settings=settings, generator=generator.info, requirements=requirements,
                    scorer=scorer, db=db, pictures=pictures, options=options,
                    variation_of=str(init_image) if init_image else None,
                    product=ProductRecord.of(product) if product else None,
                    timings={"generation_s": round(time.monotonic() - started, 3)})
