"""A study as text: every score as CSV rows, and the figures as a plain table for the terminal."""

from __future__ import annotations

import csv
import io

from rdm.study.plan import registration_line
from rdm.study.stats import fmt

CSV_COLUMNS = ("prompt_id", "mode", "seed", "candidate", "kept", "metric", "requirement", "value", "file", "run_id")


def scores_csv(study: dict) -> str:
    """One row per image and metric, and per image, scorer and requirement (kept and rejected candidates)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for image in study["images"]:
        base = [image["prompt_id"], image["mode"], image["seed"], image["candidate"], int(image["kept"])]
        for metric, value in image["scores"].items():
            writer.writerow([*base, metric, "", value, image["file"], image["run_id"]])
        texts = study["requirements"].get(image["prompt_id"], [])
        for scorer, values in image["requirements"].items():
            for text, value in zip(texts, values):
                writer.writerow([*base, scorer, text, value, image["file"], image["run_id"]])
    return buffer.getvalue()


def estimate_text(est: dict) -> str:
    """``mean [low, high]`` in significant digits, with its n and unit and the images behind it."""
    ci = f"[{fmt(est['ci95'][0])}, {fmt(est['ci95'][1])}]" if est["ci95"] else "[n/a]"
    dropped = f", {est['dropped']} NaN left out" if est["dropped"] else ""
    return f"{fmt(est['mean'])} {ci}  n={est['n']} {est['unit']}s ({est['images']} images{dropped})"


def pair_text(p: dict) -> str:
    """One comparison: wins over prompts, both p-values, and the verdict (on p_adjusted)."""
    return (f"{p['a']} vs {p['b']} on {p['scorer']}: {p['wins']} wins, {p['losses']} losses, {p['ties']} ties over "
            f"{p['n']} {p['unit']}s ({p['images']} image pairs); mean difference "
            f"{fmt(p['mean_difference'])}; p {fmt(p['p_value'])}, p_adjusted {fmt(p['p_adjusted'])} - "
            f"{p['verdict']}")


def summary_lines(study: dict) -> list[str]:
    """Mean [95% CI] per mode and metric, the paired comparisons, and the notes."""
    modes = study["modes"]
    metrics = sorted({m for row in modes.values() for m in row["scores"]})
    lines = [f"study {study['id']}: {len(study['suite'])} prompt(s) x {len(modes)} modes x "
             f"{study['request']['seeds'] * study['request']['n']} seed(s); scorers {', '.join(study['scorers'])}",
             registration_line(study)]
    if study.get("test_model"):
        lines.append("TEST MODEL: the tiny models have random weights; these numbers only prove the pipeline runs")
    lines.append("\nmean [t 95% interval] over prompts (each prompt's seeds averaged first)")
    for metric in metrics:
        lines.append(f"\n{metric}")
        for mode, row in modes.items():
            est = row["scores"].get(metric)
            if est:
                lines.append(f"  {mode:<18} {estimate_text(est)}")
    lines.append("\npaired comparisons (per-prompt differences; the verdict uses p_adjusted)")
    lines += [f"  {pair_text(p)}" for p in study["pairs"]]
    lines += [f"\nnote: {n}" for n in study["notes"]]
    return lines
