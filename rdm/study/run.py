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
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from rdm import __version__
from rdm.db import ImageStore
from rdm.decompose import LLMConfig
from rdm.errors import BadImage, RunError
from rdm.common.files import atomic_write
from rdm.common.sources import decode_image, read_file
from rdm.generate import BaseGenerator, made_once
from rdm.runs import RunRequest, run_request
from rdm.runs import RunRecord, list_runs
from rdm.study.checked import checked_study
from rdm.study.plan import PLAN_FILE, read_plan
from rdm.study.request import StudyRequest
from rdm.study.scorers import ClipScorer, Scorer, make_scorer
from rdm.study.stats import ALPHA, Primary
from rdm.study.suite import SuitePrompt
from rdm.study.summary import FIDELITY, REQUIREMENTS_SUFFIX, ScoredImage, summarise

STUDY_FILE = "study.json"
STUDY_FORMAT = 1
CANDIDATE_SEED_STRIDE = 100_003  # candidate c of image k uses seed base + k + c * stride: no seed is reused

# progress(done, total, what): one step per generated run and per scored run
StudyProgress = Callable[[int, int, str], None]


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
    """A generated image, through the one allow-listed decoder (a study folder is handed on: an EPS named .png
    must not reach Ghostscript)."""
    path = record.image_path(image)
    if path is None:
        raise RunError(f"run {record.id} lists {image.file} but the file is not in its folder")
    try:
        return decode_image(read_file(path), str(path))
    except (BadImage, OSError) as exc:
        raise RunError(f"run {record.id}: {image.file} is not a readable image ({exc})") from exc


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
    if not isinstance(study, dict) or study.get("format") != STUDY_FORMAT:
        found = study.get("format") if isinstance(study, dict) else type(study).__name__
        raise RunError(f"{path} is in study format {found!r}; this version reads {STUDY_FORMAT}")
    return checked_study(study, path)
