"""The stakeholder page: one self-contained HTML file per run, every image inlined.

Every value from ``run.json`` was type-checked when the run was loaded (``RunRecord.from_dict``: texts are
texts, numbers finite numbers, lists bounded; a damaged run is refused there) and is escaped here.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from rdm.common.files import atomic_write, inside
from rdm.generate import image_key
from rdm.runs.load import run_folder
from rdm.runs.record import RunRecord
from rdm.runs.save import PRODUCT_KEY


def export_html(record: RunRecord, out: str | Path | None = None) -> str:
    """A self-contained HTML page (images inlined as base64); written to ``out`` when given."""
    folder = run_folder(record)
    esc = html.escape
    s, g = record.settings, record.generator

    def img(rel: str, alt: str, css: str = "") -> str:
        # Only files inside the run's own folder are inlined: a tampered run.json naming
        # ../../secret.txt or /etc/hostname gets a placeholder, not the file.
        path = inside(folder, rel)
        if path is None or not path.is_file():
            return f'<span class="missing">[{esc(alt)}: picture missing from the run folder]</span>'
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        mime = "image/png" if path.suffix == ".png" else "image/jpeg"
        return f'<img class="{esc(css)}" src="data:{mime};base64,{data}" alt="{esc(alt)}">'

    def fmt(score: float | None) -> str:
        return "–" if score is None else f"{score:.3f}"

    parts = [f"<h1>{esc(record.prompt)}</h1>"]
    if record.test_model:
        parts.append('<p class="warn">TEST MODEL: tiny random-weight Kandinsky. These images are noise, not '
                     'results.</p>')
    parts.append(
        f'<p class="meta">Run {esc(record.id)} · {esc(record.created)} · seed {esc(str(s.seed))} · '
        f'{esc(str(s.steps))} steps · CFG {esc(str(s.guidance))} · {esc(str(s.size[0]))}x{esc(str(s.size[1]))} · '
        f'prior {esc(model_name(g.prior_id))} · decoder {esc(model_name(g.decoder_id))} on '
        f'{esc(str(g.gpu_name or g.device))}'
        + (f' · DB index v{esc(str(record.db.index_version))}, encoder {esc(record.db.encoder)}'
           if record.db else "") + "</p>")
    if record.variation_of:
        parts.append(f'<p class="meta"><b>Variations</b> of the photo {esc(Path(record.variation_of).name)} at '
                     f'strength {s.strength:g} (img2img: how far the images may move away from it)</p>')
    if record.product:
        thumb = record.thumbnails.get(PRODUCT_KEY)
        picture = img(thumb, "the locked product", "thumb") if thumb else ""
        parts.append(f'<div class="lock">{picture}<p><b>Product kept pixel-identical.</b> The advertiser\'s product '
                     f'({esc(Path(record.product.source or "uploaded photo").name)}) was placed at '
                     f'{esc(record.product.placement_text())} of the canvas; the model generated only what is '
                     f'around it, and every opaque product pixel in these images is the original\'s.</p></div>')
    # 1. requirement satisfaction: one row per sub-query, one column per mode
    if record.scorer:
        head = "".join(f"<th>{esc(m.mode)}</th>" for m in record.modes)
        means = [m.mean_scores() for m in record.modes]
        rows = [f"<tr><th>full prompt</th>{''.join(f'<td>{fmt(p)}</td>' for p, _ in means)}</tr>"]
        rows += [f"<tr><td>{esc(req)}</td>{''.join(f'<td>{fmt(r[i] if r else None)}</td>' for _, r in means)}</tr>"
                 for i, req in enumerate(record.requirements)]
        parts.append(f"<h2>Requirement satisfaction (mean cosine, scored with {esc(record.scorer)})</h2>"
                     f"<table><tr><th>requirement</th>{head}</tr>{''.join(rows)}</table>")
    # 2. the images of each mode side by side
    columns = []
    for mode in record.modes:
        cells = []
        for image in mode.images:
            detail = "".join(f"<li>{esc(req)}: {fmt(v)}</li>"
                             for req, v in zip(record.requirements, image.requirement_scores))
            cells.append(f'<figure>{img(image.file, f"{mode.mode} seed {image.seed}", "result")}'
                         f"<figcaption>seed {esc(str(image.seed))} · prompt {fmt(image.prompt_score)}"
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
    title = record.prompt if len(record.prompt) <= 60 else record.prompt[:59] + "…"
    page = (f"<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{esc(title)} · RDM run of {esc(record.created[:16].replace('T', ' '))}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    if out is not None:
        atomic_write(Path(out), page.encode("utf-8"))
    return page


def model_name(model: str) -> str:
    """A hub id as it is; a local weights folder by its name only (the report is handed on: no paths
    of this machine in it)."""
    path = Path(model)
    if path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
        return f"{path.name} (local folder)"
    return model


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}h1{font-size:1.4rem}
.meta{color:#666;font-size:.85rem}.lock{display:flex;gap:1rem;align-items:center;background:#e6f4ea;
border:1px solid #9ccfa9;padding:.5rem}.warn{background:#fde2e1;border:1px solid #e0a0a0;padding:.5rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;font-size:.9rem}
.grid{display:flex;gap:1rem;align-items:flex-start}.col{flex:1}.row{display:flex;flex-wrap:wrap;gap:.5rem}
img.result{width:100%;max-width:384px}img.thumb{width:128px}figure{margin:0 0 .75rem}
figcaption{font-size:.8rem}figcaption ul{margin:.2rem 0;padding-left:1rem}
"""

