"""The study's stakeholder page: one self-contained HTML file (no scripts, images inlined as thumbnails).

Whether the study was pre-registered; per metric the per-mode means over prompts as bars with their t 95%
intervals, the per-prompt win-rate matrix with p and p_adjusted, and the verdicts; per scorer a per-requirement
heatmap; the best and worst images; the blind reviewers' ranking with kappa.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from rdm.common.files import atomic_write, inside, jpeg_thumbnail
from rdm.common.sources import decode_image, read_file
from rdm.errors import BadImage
from rdm.study.summary import ScoredImage, metrics_of
from rdm.study.plan import registration_line
from rdm.study.stats import fmt
from rdm.study.votes import VoteBook, ranking, votes_text

THUMB = 160
EXAMPLES = 3
CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#202124}
h1{font-size:1.5rem}h2{margin-top:2rem;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #e3e3e3;padding:.25rem .5rem;text-align:right}th{background:#f6f7f9}td.l,th.l{text-align:left}
.bar{position:relative;height:14px;background:#eef1f6;width:260px}
.bar i{position:absolute;top:0;bottom:0;background:#4c78a8}
.bar b{position:absolute;top:-3px;bottom:-3px;border-left:2px solid #202124;border-right:2px solid #202124}
.warn{background:#fff4ce;padding:.5rem .75rem}.note{background:#e8f0fe;padding:.4rem .75rem;margin:.3rem 0}
figure{display:inline-block;margin:.3rem;width:170px;font-size:12px;vertical-align:top}img{width:160px}"""


def _colour(value: float | None, low: float, high: float) -> str:
    """Blue for high, red for low, on [low, high]."""
    if value is None:
        return "#ffffff"
    t = 0.5 if high == low else min(max((value - low) / (high - low), 0.0), 1.0)
    return f"rgb({int(200 - 150 * t)},{int(60 + 30 * t)},{int(60 + 130 * t)})"


def study_html(study: dict, folder: str | Path, out: str | Path | None = None) -> str:
    folder, esc = Path(folder), html.escape
    r = study["request"]
    images = [ScoredImage.from_dict(i) for i in study["images"]]
    modes = list(study["modes"])
    parts = [f"<h1>Study {esc(folder.name)}</h1>",
             f"<p>{esc(study['id'])}: {len(study['suite'])} prompt(s) × {len(modes)} modes × {r['seeds'] * r['n']} seed(s)"
             + (f", best of {r['candidates']}" if r["candidates"] > 1 else "")
             + f"; scorers {esc(', '.join(study['scorers']))}; backend {esc(r['backend'])}; "
             f"{esc(study['created'])}</p>", f"<p><b>{esc(registration_line(study))}</b></p>"]
    if study.get("test_model"):
        parts.append('<p class="warn">TEST MODEL: tiny random-weight models made or judged these images; the numbers '
                     "only show that the pipeline runs.</p>")
    parts += [f'<p class="note">{esc(n)}</p>' for n in study["notes"]]
    for metric in metrics_of([i for i in images if i.kept]):
        parts.append(f"<h2>{esc(metric)}</h2>")
        parts.append(_bars(study, metric))
        parts.append(_wins(study, metric, modes))
    for scorer in study["scorers"]:
        parts.append(_requirements(study, scorer, modes))
    parts.append(_examples(study, images, folder))
    parts.append(_humans(study, folder))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Study {esc(folder.name)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    if out is not None:
        atomic_write(Path(out), page.encode("utf-8"))
    return page


def _bars(study: dict, metric: str) -> str:
    rows = [(m, e) for m, row in study["modes"].items() if (e := row["scores"].get(metric)) and e["mean"] is not None]
    values = [v for _, e in rows for v in ([e["mean"]] + (e["ci95"] or []))]
    low, high = min(values + [0.0]), max(values + [0.0])
    span = (high - low) or 1.0

    def pos(v: float) -> float:
        return 100 * (v - low) / span

    out = ["<p>Mean over prompts (each prompt's seeds averaged first) with its t 95% interval; n counts prompts.</p>"
           "<table><tr><th class='l'>mode</th><th>mean</th><th>95% interval</th><th>n (prompts)</th><th>images</th>"
           "<th class='l'></th></tr>"]
    for mode, e in rows:
        zero, mean = pos(0.0), pos(e["mean"])
        bar = f"<i style='left:{min(zero, mean):.1f}%;width:{abs(mean - zero):.1f}%'></i>"
        if e["ci95"]:
            lo, hi = pos(e["ci95"][0]), pos(e["ci95"][1])
            bar += f"<b style='left:{lo:.1f}%;width:{max(hi - lo, 0.3):.1f}%'></b>"
        ci = f"[{fmt(e['ci95'][0])}, {fmt(e['ci95'][1])}]" if e["ci95"] else "n/a"
        out.append(f"<tr><td class='l'>{html.escape(mode)}</td><td>{fmt(e['mean'])}</td><td>{ci}</td><td>{e['n']}</td>"
                   f"<td>{e['images']}</td><td class='l'><div class='bar'>{bar}</div></td></tr>")
    return "".join(out) + "</table>"


def _wins(study: dict, metric: str, modes: list[str]) -> str:
    pairs = [p for p in study["pairs"] if p["scorer"] == metric]
    cell = {}
    for p in pairs:
        cell[(p["a"], p["b"])] = (p["win_rate"], p, p["n"])
        cell[(p["b"], p["a"])] = (round(1 - p["win_rate"], 4), p, p["n"])
    out = ["<p>Win rate of the row over the column over prompts (each prompt's seeds averaged), with the paired "
           "test's p and p_adjusted (Holm across the study's tests; the verdicts use p_adjusted):</p>",
           "<table><tr><th></th>" + "".join(f"<th>{html.escape(m)}</th>" for m in modes) + "</tr>"]
    for a in modes:
        row = [f"<th class='l'>{html.escape(a)}</th>"]
        for b in modes:
            if (a, b) in cell:
                rate, p, n = cell[(a, b)]
                row.append(f"<td style='background:{_colour(rate, 0, 1)};color:#fff'>{rate:.2f}<br>"
                           f"<small>p {fmt(p['p_value'])} · p_adj {fmt(p['p_adjusted'])} · n {n}</small></td>")
            else:
                row.append("<td></td>")
        out.append("<tr>" + "".join(row) + "</tr>")
    out.append("</table><ul>" + "".join(f"<li>{html.escape(p['a'])} vs {html.escape(p['b'])}: "
                                        f"{html.escape(p['verdict'])}</li>" for p in pairs) + "</ul>")
    return "".join(out)


def _requirements(study: dict, scorer: str, modes: list[str]) -> str:
    rows = [r for r in study["per_requirement"] if r["scorer"] == scorer]
    if not rows:
        return ""
    labels = list(dict.fromkeys((r["prompt_id"], r["requirement"]) for r in rows))
    value = {(r["prompt_id"], r["requirement"], r["mode"]): r["mean"] for r in rows}
    low, high = min(value.values()), max(value.values())
    out = [f"<h2>{html.escape(scorer)} per requirement</h2><table><tr><th class='l'>prompt: requirement</th>"
           + "".join(f"<th>{html.escape(m)}</th>" for m in modes) + "</tr>"]
    for prompt_id, text in labels:
        cells = "".join(
            f"<td style='background:{_colour(value.get((prompt_id, text, m)), low, high)};color:#fff'>"
            f"{fmt(value[(prompt_id, text, m)])}</td>" if (prompt_id, text, m) in value else "<td></td>" for m in modes)
        out.append(f"<tr><td class='l'>{html.escape(prompt_id)}: {html.escape(text)}</td>{cells}</tr>")
    return "".join(out) + "</table>"


def _examples(study: dict, images: list[ScoredImage], folder: Path) -> str:
    metric = study["scorers"][0]
    ranked = sorted((i for i in images if i.kept and metric in i.scores), key=lambda i: -i.scores[metric])
    prompts = {p["id"]: p["prompt"] for p in study["suite"]}
    out = [f"<h2>Best and worst images by {html.escape(metric)}</h2>"]
    for title, chosen in (("Best", ranked[:EXAMPLES]), ("Worst", ranked[-EXAMPLES:][::-1])):
        out.append(f"<h3>{title}</h3>")
        for image in chosen:
            out.append(f"<figure>{_thumb(folder, image.file)}<figcaption>{html.escape(image.mode)} · "
                       f"{html.escape(image.prompt_id)} · seed {image.seed} · {fmt(image.scores[metric])}<br>"
                       f"{html.escape(prompts.get(image.prompt_id, '')[:80])}</figcaption></figure>")
    return "".join(out)


def _thumb(folder: Path, rel: str) -> str:
    path = inside(folder, rel)  # only files of the study's own folder are inlined
    if path is None or not path.is_file():
        return "<span>[picture missing from the study folder]</span>"
    try:  # the one allow-listed decoder: a study folder is handed on (an EPS named .png must not reach Ghostscript)
        data = base64.b64encode(jpeg_thumbnail(decode_image(read_file(path), rel), THUMB)).decode("ascii")
    except (BadImage, OSError) as exc:
        return f"<span>[{html.escape(rel)} is not a readable image: {html.escape(str(exc))}]</span>"
    return f"<img src='data:image/jpeg;base64,{data}' alt='{html.escape(rel)}'>"


def _humans(study: dict, folder: Path) -> str:
    votes = VoteBook(folder).votes() if (folder / "votes.sqlite").exists() else []
    if not votes:
        return "<h2>Blind reviewers</h2><p>No votes yet.</p>"
    result = ranking(study, votes)
    out = ["<h2>Blind reviewers' ranking (Bradley-Terry)</h2><table><tr><th class='l'>mode</th><th>strength</th>"
           "<th>95% interval</th><th>wins</th><th>ties</th></tr>"]
    out += [f"<tr><td class='l'>{html.escape(m)}</td><td>{fmt(s) if s is not None else 'no votes'}</td>"
            f"<td>{f'[{fmt(ci[0])}, {fmt(ci[1])}]' if ci else '–'}</td><td>{result.wins[m]}</td>"
            f"<td>{result.ties[m]}</td></tr>" for m, s, ci in result.ranked()]
    out.append(f"</table><p>{html.escape(votes_text(result, votes))}</p><table><tr><th class='l'>metric</th>"
               "<th>agrees with the humans</th><th>decided votes</th></tr>")
    out += [f"<tr><td class='l'>{html.escape(m)}</td><td>{'–' if share is None else f'{share:.2f}'}</td>"
            f"<td>{n}</td></tr>" for m, (share, n) in result.metric_agreement.items()]
    return "".join(out) + "</table>"
