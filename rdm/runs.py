"""Run records: every generation is saved as a folder that can be compared, exported and handed on.

A run folder (``<runs_dir>/<id>/``) holds ``run.json`` (prompt, decomposition, hits, plan,
settings, model ids, DB/index version, encoder, timings, scores), the images as PNG under
``images/`` and thumbnails of the conditioning pictures under ``refs/`` so the HTML export needs
no DB. Each PNG carries an AUTOMATIC1111-style ``parameters`` text chunk and an ``rdm`` JSON chunk
with the provenance. A comparison run holds several modes generated with the same seed. The
folder is assembled under a temporary name and renamed into place, so a run is whole or absent.
Scores are CLIP cosines (the DB's encoder) of each image against the full prompt and against each
requirement (sub-query): one check per requirement rather than one global number. A run with a
product lock records the product (source, size, pixel fingerprint) and its placement, and its
images carry the product's own pixels.
"""

from __future__ import annotations

import base64
import glob
import html
import io
import json
import os
import secrets
import shutil
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
from PIL import Image, PngImagePlugin

from rdm import __version__
from rdm.generate import (BaseGenerator, GenerationSettings, GeneratorInfo, image_key, load_input_image,
                          resolve_images)
from rdm.files import atomic_write, fsync_dir, jpeg_thumbnail, slug
from rdm.plan import ConditioningPlan
from rdm.product import ProductLock
from rdm.errors import RunError

RUN_FILE = "run.json"
PRODUCT_KEY = "product"  # the locked product's thumbnail key
THUMB_SIDE = 256
SCORE_DIGITS = 4


class Scorer(Protocol):
    """The DB's encoder: L2-normalised rows, so a dot product is a cosine."""

    name: str

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


# --- plain data ---


@dataclass(frozen=True)
class ModeOutput:
    """What one mode produced, before it is saved."""

    plan: ConditioningPlan
    images: tuple[Image.Image, ...]
    seconds: float
    retrieval: dict | None = None  # Retrieval.to_dict(): decomposition and hits


@dataclass(frozen=True)
class ImageResult:
    file: str  # relative to the run folder
    seed: int
    prompt_score: float | None  # cosine against the full prompt
    requirement_scores: tuple[float, ...]  # one per run requirement, same order


@dataclass(frozen=True)
class ModeResult:
    mode: str
    plan: ConditioningPlan
    images: tuple[ImageResult, ...]
    seconds: float
    retrieval: dict | None = None

    def mean_scores(self) -> tuple[float | None, tuple[float, ...]]:
        """Mean prompt score and mean score per requirement over this mode's images."""
        prompt = [i.prompt_score for i in self.images if i.prompt_score is not None]
        rows = [i.requirement_scores for i in self.images if i.requirement_scores]
        return (round(float(np.mean(prompt)), SCORE_DIGITS) if prompt else None,
                tuple(round(float(v), SCORE_DIGITS) for v in np.mean(rows, axis=0)) if rows else ())


@dataclass(frozen=True)
class RunRecord:
    id: str
    created: str
    prompt: str
    requirements: tuple[str, ...]  # sub-queries every image is scored against
    modes: tuple[ModeResult, ...]
    settings: GenerationSettings
    generator: GeneratorInfo
    db: dict | None = None  # path, index_version, encoder
    scorer: str | None = None  # encoder name used for the scores
    thumbnails: dict[str, str] = field(default_factory=dict)  # image key -> refs/ file
    timings: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # retrieval knobs (k, decomposer, backend)
    variation_of: str | None = None  # the product photo an img2img run started from
    product: dict | None = None  # ProductLock.to_dict(): the product kept pixel-identical, and where
    folder: Path | None = field(default=None, compare=False)  # where it was loaded from; not saved

    @property
    def test_model(self) -> bool:
        return self.generator.test_model

    @property
    def comparison(self) -> bool:
        return len(self.modes) > 1

    def image_paths(self) -> list[Path]:
        base = self.folder or Path(".")
        return [base / image.file for mode in self.modes for image in mode.images]

    def to_dict(self) -> dict:
        return {
            "id": self.id, "created": self.created, "prompt": self.prompt, "test_model": self.test_model,
            "requirements": list(self.requirements),
            "modes": [{"mode": m.mode, "seconds": m.seconds, "plan": m.plan.to_dict(), "retrieval": m.retrieval,
                       "images": [{**asdict(i), "requirement_scores": list(i.requirement_scores)}
                                  for i in m.images]}
                      for m in self.modes],
            "settings": self.settings.to_dict(), "generator": self.generator.to_dict(), "db": self.db,
            "scorer": self.scorer, "thumbnails": self.thumbnails, "timings": self.timings,
            "options": self.options, "variation_of": self.variation_of, "product": self.product,
            "rdm_version": __version__,
        }

    @classmethod
    def from_dict(cls, data: dict, folder: Path | None = None) -> "RunRecord":
        try:
            modes = tuple(ModeResult(
                mode=m["mode"], plan=ConditioningPlan.from_dict(m["plan"]), seconds=m["seconds"],
                retrieval=m.get("retrieval"),
                images=tuple(ImageResult(file=i["file"], seed=i["seed"], prompt_score=i.get("prompt_score"),
                                         requirement_scores=tuple(i.get("requirement_scores", ())))
                             for i in m["images"]))
                for m in data["modes"])
            return cls(id=data["id"], created=data["created"], prompt=data["prompt"],
                       requirements=tuple(data.get("requirements", ())), modes=modes,
                       settings=GenerationSettings.from_dict(data["settings"]),
                       generator=GeneratorInfo.from_dict(data["generator"]), db=data.get("db"),
                       scorer=data.get("scorer"), thumbnails=dict(data.get("thumbnails", {})),
                       timings=dict(data.get("timings", {})), options=dict(data.get("options", {})),
                       variation_of=data.get("variation_of"), product=data.get("product"), folder=folder)
        except (KeyError, TypeError, ValueError) as exc:
            raise RunError(f"run record {folder or ''} is damaged: {exc.__class__.__name__}: {exc}") from exc


# --- generating and saving a run ---


def generate_run(generator: BaseGenerator, retrievals: Sequence[Any], *, settings: GenerationSettings,
                 runs_dir: str | Path, open_image: Callable[[int], Image.Image] | None = None,
                 scorer: Scorer | None = None, db: Mapping | None = None, init_image: str | Path | None = None,
                 product: ProductLock | None = None, requirements: Sequence[str] | None = None,
                 options: Mapping | None = None,
                 progress: Callable[[str, str, int, int], None] | None = None) -> RunRecord:
    """Generate every retrieval's plan with the same settings and seed, then save one run.

    ``retrievals`` are ``rdm.retrieve.Retrieval`` objects (``.plan``, ``.to_dict()``) or bare
    ``ConditioningPlan``s. With ``product`` every mode generates around the locked product.
    ``progress(mode, stage, step, total)`` reports each denoising step.
    """
    started = time.monotonic()
    photo = load_input_image(init_image) if init_image else None
    outputs, pictures = [], ({PRODUCT_KEY: product.image} if product else {})
    for retrieval in retrievals:
        # 1. the pictures this plan needs: references from the DB, the advertiser's photos from disk
        plan = retrieval if isinstance(retrieval, ConditioningPlan) else retrieval.plan
        images = resolve_images(plan, open_image, loaded=pictures)
        pictures.update(images)
        # 2. the images, all modes from the same seed
        step = (lambda stage, i, n, mode=plan.mode: progress(mode, stage, i, n)) if progress else None
        t0 = time.monotonic()
        generated = generator.generate(plan, settings, images=images, init_image=photo, product=product,
                                       progress=step)
        found = None if isinstance(retrieval, ConditioningPlan) else retrieval.to_dict()
        outputs.append(ModeOutput(plan=plan, images=tuple(generated), seconds=round(time.monotonic() - t0, 3),
                                  retrieval={k: v for k, v in found.items() if k != "plan"} if found else None))
    if requirements is None:
        requirements = requirements_of([o.retrieval for o in outputs])
    # 3. scores and the run folder
    return save_run(runs_dir, outputs, settings=settings, generator=generator.info, requirements=requirements,
                    scorer=scorer, db=db, pictures=pictures, options=options,
                    variation_of=str(init_image) if init_image else None,
                    product=product.to_dict() if product else None, timings={"generation_s": round(time.monotonic() - started, 3)})


def requirements_of(retrievals: Sequence[dict | None]) -> tuple[str, ...]:
    """The sub-queries to score against: from the first LLM/offline decomposition, else KeyBERT's."""
    decompositions = [r["decomposition"] for r in retrievals if r and r.get("decomposition")]
    decompositions.sort(key=lambda d: d.get("backend") == "keybert")  # stable: keeps mode order otherwise
    return tuple(q["text"] for q in decompositions[0]["subqueries"]) if decompositions else ()


def save_run(runs_dir: str | Path, outputs: Sequence[ModeOutput], *, settings: GenerationSettings,
             generator: GeneratorInfo, requirements: Sequence[str] = (), scorer: Scorer | None = None,
             db: Mapping | None = None, pictures: Mapping[str, Image.Image] | None = None,
             options: Mapping | None = None, variation_of: str | None = None, product: Mapping | None = None,
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
        requirements=tuple(requirements), modes=results, settings=settings, generator=generator,
        db=dict(db) if db else None, scorer=getattr(scorer, "name", None), thumbnails=thumbnails,
        timings={**(timings or {}), "scoring_s": scoring_s}, options=dict(options or {}), variation_of=variation_of,
        product=dict(product) if product else None)
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


def db_provenance(store: Any) -> dict:
    """Which DB, index version and encoder a run's references and scores came from."""
    stats = store.stats()
    return {"path": str(store.path), "index_version": stats.index_version, "encoder": stats.encoder}


# --- PNG provenance ---


def a1111_parameters(record: RunRecord, mode: ModeResult, image: ImageResult) -> str:
    """AUTOMATIC1111's ``parameters`` text: prompt, negative prompt, then one line of settings."""
    s, g = record.settings, record.generator
    fields = {
        "Steps": s.steps, "CFG scale": s.guidance, "Seed": image.seed, "Size": f"{s.size[0]}x{s.size[1]}",
        "Model": g.decoder_id, "Prior": g.prior_id, "Prior steps": s.prior_steps,
        "Prior CFG scale": s.prior_guidance, "RDM mode": mode.mode, "RDM run": record.id,
    }
    if record.variation_of:
        fields["Denoising strength"] = s.strength
    if record.product:
        fields["Product lock"] = f"pixel-identical, {placement_text(record.product)}"
        fields["Inpaint model"] = g.inpaint_decoder_id
    if g.test_model:
        fields["Test model"] = "random weights, not a real generation"
    line = ", ".join(f"{k}: {_a1111_value(v)}" for k, v in fields.items())
    negative = f"\nNegative prompt: {s.negative_prompt}" if s.negative_prompt else ""
    return f"{record.prompt}{negative}\n{line}"


def _a1111_value(value: object) -> str:
    text = str(value)
    return json.dumps(text) if any(c in text for c in ',:\n"') else text


def provenance(record: RunRecord, mode: ModeResult, image: ImageResult) -> dict:
    """The ``rdm`` PNG chunk: enough to trace an image back to its references and reproduce it."""
    decomposition = (mode.retrieval or {}).get("decomposition") or {}
    return {
        "run_id": record.id, "mode": mode.mode, "prompt": record.prompt, "seed": image.seed,
        "test_model": record.test_model,
        "subqueries": decomposition.get("subqueries", []),
        "summary": decomposition.get("summary"),
        "plan": mode.plan.to_dict(),
        "reference_ids": list(mode.plan.reference_ids),
        "scores": {"prompt": image.prompt_score,
                   "requirements": dict(zip(record.requirements, image.requirement_scores)),
                   "scorer": record.scorer},
        "db": record.db, "settings": record.settings.to_dict(),
        "model": {"prior_id": record.generator.prior_id, "decoder_id": record.generator.decoder_id,
                  **({"inpaint_decoder_id": record.generator.inpaint_decoder_id} if record.product else {})},
        "variation_of": record.variation_of, "product": record.product, "rdm_version": __version__,
    }


def placement_text(product: Mapping) -> str:
    """``scale 0.5 at (0.5, 0.6)`` from a recorded product lock."""
    p = product.get("placement", {})
    return f"scale {p.get('scale'):g} at ({p.get('x'):g}, {p.get('y'):g})"


def png_bytes(image: Image.Image, record: RunRecord, mode: ModeResult, entry: ImageResult) -> bytes:
    info = PngImagePlugin.PngInfo()
    # PIL writes iTXt instead of tEXt when the text is not Latin-1 (e.g. a Korean prompt)
    info.add_text("parameters", a1111_parameters(record, mode, entry))
    info.add_text("rdm", json.dumps(provenance(record, mode, entry), ensure_ascii=False))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def read_png_provenance(path: str | Path) -> tuple[str | None, dict | None]:
    """(A1111 ``parameters`` text, ``rdm`` provenance dict) from a PNG written by a run."""
    with Image.open(path) as img:
        text = dict(getattr(img, "text", {}) or {})
    rdm = text.get("rdm")
    return text.get("parameters"), json.loads(rdm) if rdm else None


# --- finding runs ---


def list_runs(runs_dir: str | Path) -> list[RunRecord]:
    """All complete runs, newest first (half-written ``.partial`` folders are ignored)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    records = []
    for folder in runs_dir.iterdir():
        if folder.is_dir() and not folder.name.startswith(".") and (folder / RUN_FILE).is_file():
            try:
                records.append(load_run(runs_dir, folder.name))
            except RunError as exc:  # one damaged run must not hide the others
                warnings.warn(str(exc), stacklevel=2)
    return sorted(records, key=lambda r: (r.created, r.id), reverse=True)


def load_run(runs_dir: str | Path, run_id: str) -> RunRecord:
    """The run with this id (or a unique prefix of it)."""
    runs_dir = Path(runs_dir)
    folder = runs_dir / run_id
    if not (folder / RUN_FILE).is_file():
        matches = sorted(p for p in runs_dir.glob(f"{glob.escape(run_id)}*") if (p / RUN_FILE).is_file()
                         and not p.name.startswith(".")) if runs_dir.is_dir() else []
        if len(matches) != 1:
            found = "several runs match" if matches else "no such run"
            raise RunError(f"run {run_id!r} not found in {runs_dir} ({found}): `rdm runs list` shows the runs")
        folder = matches[0]
    try:
        data = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunError(f"cannot read {folder / RUN_FILE}: {exc}") from exc
    return RunRecord.from_dict(data, folder=folder)


def zip_run(record: RunRecord, out: str | Path | None = None) -> bytes:
    """The run folder (run.json, images, reference thumbnails) as zip bytes for a download;
    also written to ``out`` when given."""
    folder = _folder(record)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, f"{record.id}/{path.relative_to(folder).as_posix()}")
    if out is not None:
        atomic_write(Path(out), buffer.getvalue())
    return buffer.getvalue()


# --- the stakeholder page ---


def export_html(record: RunRecord, out: str | Path | None = None) -> str:
    """A self-contained HTML page (images inlined as base64); written to ``out`` when given."""
    folder = _folder(record)
    esc = html.escape
    s, g = record.settings, record.generator

    def img(rel: str, alt: str, css: str = "") -> str:
        data = base64.b64encode((folder / rel).read_bytes()).decode("ascii")
        mime = "image/png" if rel.endswith(".png") else "image/jpeg"
        return f'<img class="{css}" src="data:{mime};base64,{data}" alt="{esc(alt)}">'

    def fmt(score: float | None) -> str:
        return "–" if score is None else f"{score:.3f}"

    parts = [f"<h1>{esc(record.prompt)}</h1>"]
    if record.test_model:
        parts.append('<p class="warn">TEST MODEL: tiny random-weight Kandinsky. These images are noise, not '
                     'results.</p>')
    parts.append(
        f'<p class="meta">Run {esc(record.id)} · {esc(record.created)} · seed {s.seed} · {s.steps} steps · '
        f'CFG {s.guidance} · {s.size[0]}x{s.size[1]} · prior {esc(g.prior_id)} · decoder {esc(g.decoder_id)} '
        f'on {esc(g.gpu_name or g.device)}'
        + (f' · DB index v{esc(str(record.db.get("index_version")))}, encoder {esc(str(record.db.get("encoder")))}'
           if record.db else "") + "</p>")
    if record.product:
        thumb = record.thumbnails.get(PRODUCT_KEY)
        picture = img(thumb, "the locked product", "thumb") if thumb else ""
        parts.append(f'<div class="lock">{picture}<p><b>Product kept pixel-identical.</b> The advertiser\'s product '
                     f'({esc(Path(record.product.get("source") or "uploaded photo").name)}) was placed at '
                     f'{esc(placement_text(record.product))} of the canvas; the model generated only what is '
                     f'around it, and every opaque product pixel in these images is the original\'s.</p></div>')
    # 1. requirement satisfaction: one row per sub-query, one column per mode
    if record.scorer:
        head = "".join(f"<th>{esc(m.mode)}</th>" for m in record.modes)
        means = [m.mean_scores() for m in record.modes]
        rows = [f"<tr><th>full prompt</th>{''.join(f'<td>{fmt(p)}</td>' for p, _ in means)}</tr>"]
        rows += [f"<tr><td>{esc(req)}</td>{''.join(f'<td>{fmt(r[i] if r else None)}</td>' for _, r in means)}</tr>"
                 for i, req in enumerate(record.requirements)]
        parts.append(f"<h2>Requirement satisfaction (mean CLIP cosine, {esc(record.scorer)})</h2>"
                     f"<table><tr><th>requirement</th>{head}</tr>{''.join(rows)}</table>")
    # 2. the images of each mode side by side
    columns = []
    for mode in record.modes:
        cells = []
        for image in mode.images:
            detail = "".join(f"<li>{esc(req)}: {fmt(v)}</li>"
                             for req, v in zip(record.requirements, image.requirement_scores))
            cells.append(f'<figure>{img(image.file, f"{mode.mode} seed {image.seed}", "result")}'
                         f"<figcaption>seed {image.seed} · prompt {fmt(image.prompt_score)}"
                         f"<ul>{detail}</ul></figcaption></figure>")
        columns.append(f'<div class="col"><h3>{esc(mode.mode)}</h3><p class="meta">{mode.seconds:.1f}s</p>'
                       f"{''.join(cells)}</div>")
    parts.append(f'<h2>Images</h2><div class="grid">{"".join(columns)}</div>')
    # 3. what conditioned each mode: text items, and references grouped by sub-query
    for mode in record.modes:
        texts = "".join(f"<tr><td>{esc(i.source)}</td><td>{esc(i.text or '')}</td><td>{i.weight:.3f}</td></tr>"
                        for i in mode.plan.text_items)
        groups: dict[str, list[str]] = {}
        for item in mode.plan.image_items:
            label = item.subquery or ("input photo" if item.source == "input" else item.source)
            thumb = record.thumbnails.get(image_key(item))
            picture = img(thumb, item.label(), "thumb") if thumb else esc(item.label())
            score = f" · cos {item.score:.3f}" if item.score is not None else ""
            groups.setdefault(label, []).append(
                f"<figure>{picture}<figcaption>{esc(item.label())}<br>weight {item.weight:.3f}{score}"
                f"</figcaption></figure>")
        refs = "".join(f'<h4>{esc(label)}</h4><div class="row">{"".join(figs)}</div>' for label, figs in groups.items())
        notes = "".join(f"<li>{esc(n)}</li>" for n in mode.plan.notes)
        parts.append(f"<h2>Conditioning: {esc(mode.mode)}</h2>"
                     f"<table><tr><th>source</th><th>text</th><th>weight</th></tr>{texts}</table>{refs}"
                     + (f"<ul class='meta'>{notes}</ul>" if notes else ""))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>RDM run {esc(record.id)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    if out is not None:
        atomic_write(Path(out), page.encode("utf-8"))
    return page


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}h1{font-size:1.4rem}
.meta{color:#666;font-size:.85rem}.lock{display:flex;gap:1rem;align-items:center;background:#e6f4ea;
border:1px solid #9ccfa9;padding:.5rem}.warn{background:#fde2e1;border:1px solid #e0a0a0;padding:.5rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;font-size:.9rem}
.grid{display:flex;gap:1rem;align-items:flex-start}.col{flex:1}.row{display:flex;flex-wrap:wrap;gap:.5rem}
img.result{width:100%;max-width:384px}img.thumb{width:128px}figure{margin:0 0 .75rem}
figcaption{font-size:.8rem}figcaption ul{margin:.2rem 0;padding-left:1rem}
"""


# --- small helpers ---


def new_run_id(label: str) -> str:
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{slug(label)}-{secrets.token_hex(2)}"


def _folder(record: RunRecord) -> Path:
    if record.folder is None:
        raise RunError(f"run {record.id} has no folder: load it with load_run()")
    return record.folder


