"""A study as text: every score as CSV rows, and the figures as a plain table for the terminal."""

from __future__ import annotations

import csv
import io

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


def summary_lines(study: dict) -> list[str]:
    """Mean [95% CI] per mode and metric, the paired comparisons, and the notes."""
    modes = study["modes"]
    metrics = sorted({m for row in modes.values() for m in row["scores"]})
    lines = [f"study {study['id']}: {len(study['suite'])} prompt(s) x {len(modes)} modes x "
             f"{study['request']['seeds'] * study['request']['n']} seed(s); scorers {', '.join(study['scorers'])}"]
    if study.get("test_model"):
        lines.append("TEST MODEL: the tiny models have random weights; these numbers only prove the pipeline runs")
    for metric in metrics:
        lines.append(f"\n{metric}")
        for mode, row in modes.items():
            est = row["scores"].get(metric)
            if est:
                ci = f"[{est['ci95'][0]:.4f}, {est['ci95'][1]:.4f}]" if est["ci95"] else "[n/a]"
                lines.append(f"  {mode:<18} {est['mean']:.4f} {ci}  n={est['n']}")
    lines.append("\npaired comparisons (same prompt and seed)")
    for p in study["pairs"]:
        lines.append(f"  {p['a']} vs {p['b']} on {p['scorer']}: win rate {p['win_rate']:.2f}, p {p['p_value']}, "
                     f"n {p['n']} - {p['verdict']}")
    lines += [f"\nnote: {n}" for n in study["notes"]]
    return lines
