"""Run a study: every prompt of a suite in every mode with the same seeds, scored by judges of their own.

A study folder holds ``study.json`` (the request, every scored image, the figures) and ``runs/`` with one
ordinary run record per prompt (and per best-of-N candidate), so each run opens in Runs & report too.
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from rdm import __version__
from rdm.db import ImageStore
from rdm.decompose import LLMConfig
from rdm.errors import BadRequestError, RunError
from rdm.files import atomic_write
from rdm.generate import BaseGenerator, GenerationSettings, made_once
from rdm.request import RunRequest, run_request
from rdm.retrieve import RECIPES, RetrievalSettings
from rdm.runs import RunRecord, list_runs
from rdm.study.plan import PLAN_FILE, read_plan
from rdm.study.scorers import ClipScorer, Scorer, make_scorer
from rdm.study.stats import ALPHA, Primary
from rdm.study.suite import SuitePrompt
from rdm.study.summary import FIDELITY, REQUIREMENTS_SUFFIX, ScoredImage, summarise

STUDY_FILE = "study.json"
STUDY_FORMAT = 1
CANDIDATE_SEED_STRIDE = 100_003  # candidate c of image k uses seed base + k + c * stride: no seed is reused
DEFAULT_MODES = ("none", "full", "subquery", "subquery+filter")

# progress(done, total, what): one step per generated run and per scored run
StudyProgress = Callable[[int, int, str], None]


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
        from rdm.modes import FilterSettings, Fusion

        r = data["retrieval"]
        return cls(tuple(suite), tuple(data["modes"]), data["seeds"], data["n"], data["candidates"],
                   tuple(data["scorers"]), GenerationSettings.from_dict(data["settings"]),
                   RetrievalSettings(k=r["k"], budget=r["budget"], decomposer=r["decomposer"],
                                     filters=FilterSettings(**r["filters"]), fusion=Fusion(**r["fusion"])),
                   data["backend"], data["variation_strength"])


def run_study(request: StudyRequest, *, store: ImageStore,
              generator: Callable[[], BaseGenerator] | Sequence[Callable[[], BaseGenerator]], out: str | Path,
              llm: LLMConfig | None = None, scorers: Sequence[Scorer] | None = None,
              progress: StudyProgress | None = None, primary: Primary | None = None,
              alpha: float | None = None) -> dict:
    """Generate, score and summarise; writes ``out/study.json`` (atomically) and returns its content.

    A plan in ``out`` (``rdm study plan``) supplies the primary comparison and the level unless they are
    given, and the study records whether it ran as registered (``preregistration``). ``primary``: the one
    comparison judged at the full level ``alpha``; the others are exploratory.

    ``generator`` is one generator factory, or one per GPU worker: the runs are then spread over the
    workers, each generating one run at a time. Runs already in ``out/runs`` for the same prompt,
    settings, modes and options (an interrupted attempt's) are reused, so a resumed study keeps its
    finished images. ``progress(done, total, what)`` reports every run and every denoising step.
    """
    out = Path(out)
    if (out / STUDY_FILE).exists():
        raise RunError(f"{out} already holds a study: choose a new --out folder")
    plan = read_plan(out) if (out / PLAN_FILE).exists() else None
    primary = primary or (plan.primary if plan else None)
    alpha = alpha if alpha is not None else plan.alpha if plan else ALPHA
    judges = list(scorers) if scorers is not None else [make_scorer(s) for s in request.scorers]
    factories = [generator] if callable(generator) else list(generator)
    units = [(prompt, c) for prompt in request.suite for c in range(request.candidates)]
    total, count = len(units) * 2, _Counter(progress)
    # 1. one ordinary run per prompt and candidate (every mode, the same seeds), over every worker
    records = _generate_all(request, units, [made_once(f) for f in factories], store, out, llm, count, total)
    # 2. every run's images judged by every scorer, against the prompt and each requirement (here, in order)
    images: list[ScoredImage] = []
    runs: dict[str, list[str]] = {}
    requirements: dict[str, list[str]] = {}
    for (prompt, c), record in zip(units, records):
        texts = list(prompt.requirements or record.requirements)
        requirements[prompt.id] = texts
        runs.setdefault(prompt.id, []).append(record.id)
        images += score_run(record, prompt.id, c, texts, judges, store, out)
        count.step(total, f"scored {prompt.id} (candidate {c + 1})")
    # 3. best-of-N, then the figures
    images = keep_best(images, judges)
    study = {"format": STUDY_FORMAT, "id": f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}",
             "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rdm_version": __version__,
             "request": request.to_dict(), "suite": [p.to_dict() for p in request.suite],
             "requirements": requirements, "runs": runs, "scorers": [j.name for j in judges],
             "workers": len(factories),
             "test_model": request.backend == "tiny" or any(j.name.endswith(":tiny") for j in judges),
             "preregistration": plan.check(request, primary, alpha) if plan else None,
             **summarise(images, request.modes, requirements, primary, alpha), "images": [i.to_dict() for i in images]}
    atomic_write(out / STUDY_FILE, json.dumps(study, indent=1, ensure_ascii=False).encode("utf-8"))
    return study


class _Counter:
    """Progress shared by the worker threads."""

    def __init__(self, progress: StudyProgress | None):
        self.progress, self.done, self.lock = progress, 0, threading.Lock()

    def step(self, total: int, what: str) -> None:
        with self.lock:
            self.done += 1
            done = self.done
        if self.progress:
            self.progress(done, total, what)

    def report(self, total: int, what: str) -> None:
        if self.progress:
            self.progress(self.done, total, what)


def _run_request_of(request: StudyRequest, prompt: SuitePrompt, candidate: int) -> RunRequest:
    settings = replace(request.settings, seed=request.settings.seed + candidate * CANDIDATE_SEED_STRIDE,
                       n_images=request.seeds * request.n)
    variation = request.variation_strength is not None
    if variation:
        settings = replace(settings, strength=request.variation_strength)
    return RunRequest(prompt.prompt, request.modes, input_images=prompt.products, settings=settings,
                      retrieval=request.retrieval, backend=request.backend,
                      variation_of=prompt.products[0] if variation else None)


def _generate_all(request: StudyRequest, units, generators, store: ImageStore, out: Path,
                  llm: LLMConfig | None, count: _Counter, total: int) -> list[RunRecord]:
    def key(run: RunRequest) -> tuple:
        return run.prompt, run.settings, run.modes, json.dumps(run.options(), sort_keys=True)

    finished = {(r.prompt, r.settings, tuple(m.mode for m in r.modes), json.dumps(r.options, sort_keys=True)): r
                for r in list_runs(out / "runs")}
    idle: queue.Queue = queue.Queue()
    for made in generators:
        idle.put(made)

    def one(unit) -> RunRecord:
        prompt, c = unit
        run = _run_request_of(request, prompt, c)
        record = finished.get(key(run))  # an interrupted attempt's run: kept, not generated again
        if record is None:
            what = f"{prompt.id}, candidate {c + 1}"
            made = idle.get()  # one run at a time per worker
            try:
                record = run_request(run, store=store, generator=made, runs_dir=out / "runs", llm=llm,
                                     progress=lambda mode, stage, i, n: count.report(total, f"{what}: {mode} {stage} "
                                                                                            f"{i}/{n}"))
            finally:
                idle.put(made)
        count.step(total, f"generated {prompt.id} (candidate {c + 1})")
        return record

    if len(generators) == 1:
        return [one(unit) for unit in units]
    with ThreadPoolExecutor(max_workers=len(generators), thread_name_prefix="study-worker") as pool:
        return list(pool.map(one, units))


def score_run(record: RunRecord, prompt_id: str, candidate: int, requirements: Sequence[str],
              judges: Sequence[Scorer], store: ImageStore, out: Path) -> list[ScoredImage]:
    clip = next((j for j in judges if isinstance(j, ClipScorer)), None)
    rows = []
    for mode in record.modes:
        pictures = [_open(record, image) for image in mode.images]
        scores = {j.name: j.score(pictures, record.prompt, requirements) for j in judges}
        embeddings = clip.embed(pictures) if clip else None
        fidelity = _fidelity(clip, embeddings, mode.plan, store) if clip else None
        for k, image in enumerate(mode.images):
            values = {}
            for name, per_image in scores.items():
                values[name] = per_image[k].prompt
                if per_image[k].requirements:
                    values[name + REQUIREMENTS_SUFFIX] = round(float(np.mean(per_image[k].requirements)), 4)
            if fidelity is not None:
                values[FIDELITY] = float(fidelity[k])
            rows.append(ScoredImage(prompt_id, mode.mode, image.seed - candidate * CANDIDATE_SEED_STRIDE, candidate,
                                    True, str((record.folder / image.file).relative_to(out)), record.id, values,
                                    {name: per_image[k].requirements for name, per_image in scores.items()},
                                    tuple(float(v) for v in embeddings[k]) if embeddings is not None else ()))
    return rows


def _open(record: RunRecord, image) -> Image.Image:
    path = record.image_path(image)
    if path is None:
        raise RunError(f"run {record.id} lists {image.file} but the file is not in its folder")
    with Image.open(path) as im:
        return im.convert("RGB")


def _fidelity(clip: ClipScorer, embeddings: np.ndarray, plan, store: ImageStore) -> np.ndarray | None:
    """Per image: the mean cosine to the DB references its plan used (None for a mode without any)."""
    ids = [item.image_id for item in plan.items if item.image_id is not None]
    if not ids:
        return None
    refs = clip.embed([store.open_image(i).convert("RGB") for i in ids])
    return np.round((embeddings @ refs.T).mean(axis=1), 4)


def keep_best(images: Sequence[ScoredImage], judges: Sequence[Scorer]) -> list[ScoredImage]:
    """Per (prompt, mode, seed) keep the candidate with the best mean requirement score of the VQA
    scorer (GenAI-Bench: ranking candidates by VQAScore raises human ratings), else of the first scorer."""
    if not images or max(i.candidate for i in images) == 0:
        return list(images)
    ranker = next((j.name for j in judges if j.name.startswith("vqa:")), judges[0].name)
    key = ranker + REQUIREMENTS_SUFFIX

    def value(image: ScoredImage) -> float:
        return image.scores.get(key, image.scores.get(ranker, float("-inf")))

    best: dict[tuple[str, str, int], ScoredImage] = {}
    for image in images:
        unit = (image.prompt_id, image.mode, image.seed)
        if unit not in best or value(image) > value(best[unit]):
            best[unit] = image
    chosen = {id(i) for i in best.values()}
    return [replace(i, kept=id(i) in chosen) for i in images]


def load_study(folder: str | Path) -> dict:
    path = Path(folder) / STUDY_FILE
    try:
        study = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RunError(f"no study at {folder}: run `rdm study run SUITE --out {folder}` first") from exc
    except json.JSONDecodeError as exc:
        raise RunError(f"{path} is not valid JSON ({exc.msg}); it may have been edited by hand") from exc
    if study.get("format") != STUDY_FORMAT:
        raise RunError(f"{path} is in study format {study.get('format')!r}; this version reads {STUDY_FORMAT}")
    if "analysis" not in study:  # analysed with (prompt, seed) as the unit: its figures again, from its images
        study |= summarise([ScoredImage.from_dict(i) for i in study["images"]], study["request"]["modes"],
                           study["requirements"])
    return study

