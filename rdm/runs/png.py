"""PNG provenance: an AUTOMATIC1111-compatible ``parameters`` text chunk, and an ``rdm`` JSON chunk
with enough to trace an image back to its references and reproduce it."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, PngImagePlugin

from rdm import __version__
from rdm.common.sources import open_image, read_file
from rdm.runs.record import ImageResult, ModeResult, RunRecord


def a1111_parameters(record: RunRecord, mode: ModeResult, image: ImageResult) -> str:
    """AUTOMATIC1111's ``parameters`` text: prompt, negative prompt, then one line of settings."""
    s, g = record.settings, record.generator
    fields = {
        # Steps, Sampler, CFG scale and Seed first, as AUTOMATIC1111 writes them: readers of the format
        # (e.g. sd-parsers) need the sampler to accept the chunk at all.
        "Steps": s.steps, "Sampler": g.sampler, "CFG scale": s.guidance, "Seed": image.seed,
        "Size": f"{s.size[0]}x{s.size[1]}",
        "Model": g.decoder_id, "Prior": g.prior_id, "Prior steps": s.prior_steps,
        "Prior CFG scale": s.prior_guidance, "RDM mode": mode.mode, "RDM run": record.id,
    }
    if record.variation_of:
        fields["Denoising strength"] = s.strength
    if record.product:
        fields["Product lock"] = f"pixel-identical, {record.product.placement_text()}"
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
    decomposition = mode.retrieval.decomposition if mode.retrieval else None
    return {
        "run_id": record.id, "mode": mode.mode, "prompt": record.prompt, "seed": image.seed,
        "test_model": record.test_model,
        "subqueries": decomposition.to_dict()["subqueries"] if decomposition else [],
        "summary": decomposition.summary if decomposition else None,
        "plan": mode.plan.to_dict(),
        "reference_ids": list(mode.plan.reference_ids),
        "scores": {"prompt": image.prompt_score,
                   "requirements": dict(zip(record.requirements, image.requirement_scores)),
                   "scorer": record.scorer},
        "db": record.db.to_dict() if record.db else None, "settings": record.settings.to_dict(),
        "model": {"prior_id": record.generator.prior_id, "decoder_id": record.generator.decoder_id,
                  **({"inpaint_decoder_id": record.generator.inpaint_decoder_id} if record.product else {})},
        "variation_of": record.variation_of, "product": record.product.to_dict() if record.product else None,
        "rdm_version": __version__,
    }


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
    with open_image(read_file(Path(path)), str(path), min_side=1) as img:  # a run folder may be tampered with
        text = dict(getattr(img, "text", {}) or {})
    rdm = text.get("rdm")
    return text.get("parameters"), json.loads(rdm) if rdm else None
