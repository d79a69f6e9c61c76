"""Saving a run: every mode's images scored and written as one folder (PNGs with provenance, reference
thumbnails, run.json), whole or absent."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np
from PIL import Image

from rdm.common.files import atomic_write, fsync_dir, jpeg_thumbnail, slug
from rdm.generate import GenerationSettings, GeneratorInfo
from rdm.runs.png import png_bytes
from rdm.runs.record import (RUN_FILE, SCORE_DIGITS, DbProvenance, ImageResult, ModeOutput, ModeResult, ProductRecord,
                             RunRecord)

PRODUCT_KEY = "product"  # the locked product's thumbnail key
THUMB_SIDE = 256

# progress(mode, stage, step, total)
RunProgress = Callable[[str, str, int, int], None]


class Scorer(Protocol):
    """An encoder whose rows are L2-normalised, so a dot product is a cosine."""

    name: str

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def save_run(runs_dir: str | Path, outputs: Sequence[ModeOutput], *, settings: GenerationSettings,
             generator: GeneratorInfo, requirements: Sequence[str] = (), scorer: Scorer | None = None,
             db: DbProvenance | None = None, pictures: Mapping[str, Image.Image] | None = None,
             options: Mapping | None = None, variation_of: str | None = None, product: ProductRecord | None = None,
             timings: Mapping[str, float] | None = None, run_id: str | None = None) -> RunRecord:
    """Score the images, write PNGs with provenance, thumbnails and run.json; returns the record."""
    if not outputs:
        raise ValueError("a run needs at least one mode's images")
    runs_dir = Path(runs_dir)
    prompt = outputs[0].plan.prompt
    modes = [o.plan.mode for o in outputs]
    run_id = run_id or new_run_id(modes[0] if len(modes) == 1 else "compare")
    # 1. scores: every image against the prompt and each requirement
    t0 = time.monotonic()
    scores = score_images([o.images for o in outputs], prompt, requirements, scorer)
    scoring_s = round(time.monotonic() - t0, 3)
    # 2. the record
    results = tuple(
        ModeResult(mode=o.plan.mode, plan=o.plan, seconds=o.seconds, retrieval=o.retrieval, images=tuple(
            ImageResult(file=f"images/{slug(o.plan.mode)}-{k:02d}.png", seed=settings.seed + k,
                        prompt_score=p, requirement_scores=r)
            for k, (p, r) in enumerate(mode_scores)))
        for o, mode_scores in zip(outputs, scores))
    thumbnails = {key: f"refs/{slug(key)}.jpg" for key in (pictures or {})}
    record = RunRecord(
        id=run_id, created=datetime.now(timezone.utc).isoformat(timespec="seconds"), prompt=prompt,
        requirements=tuple(requirements), modes=results, settings=settings, generator=generator, db=db,
        scorer=getattr(scorer, "name", None), thumbnails=thumbnails,
        timings={**(timings or {}), "scoring_s": scoring_s}, options=dict(options or {}), variation_of=variation_of,
        product=product)
    # 3. the folder, assembled under a temporary name and renamed into place
    runs_dir.mkdir(parents=True, exist_ok=True)
    staging = runs_dir / f".{run_id}.partial"
    staging.mkdir()
    try:
        for output, result in zip(outputs, results):
            for image, entry in zip(output.images, result.images):
                atomic_write(staging / entry.file, png_bytes(image, record, result, entry))
        for key, name in thumbnails.items():
            atomic_write(staging / name, jpeg_thumbnail(pictures[key], THUMB_SIDE))
        atomic_write(staging / RUN_FILE, json.dumps(record.to_dict(), indent=2, ensure_ascii=False).encode("utf-8"))
        os.replace(staging, runs_dir / run_id)
        fsync_dir(runs_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return replace(record, folder=runs_dir / run_id)


def score_images(groups: Sequence[Sequence[Image.Image]], prompt: str, requirements: Sequence[str],
                 scorer: Scorer | None) -> list[list[tuple[float | None, tuple[float, ...]]]]:
    """Per group (a mode's images), per image: (cosine to the prompt, cosines to each
    requirement); None without a scorer. The texts are encoded once for all modes."""
    if scorer is None:
        return [[(None, ()) for _ in images] for images in groups]
    text_vecs = np.asarray(scorer.encode_texts([prompt, *requirements]), dtype=np.float32)
    out = []
    for images in groups:
        image_vecs = np.asarray(scorer.encode_images(list(images)), dtype=np.float32)
        sims = np.round(image_vecs @ text_vecs.T, SCORE_DIGITS)
        out.append([(float(row[0]), tuple(float(v) for v in row[1:])) for row in sims])
    return out


def new_run_id(label: str) -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{slug(label)}-{secrets.token_hex(2)}"
