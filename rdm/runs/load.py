"""Finding runs: every complete run folder under a runs directory, and one run by id or unique prefix."""

from __future__ import annotations

import glob
import io
import json
import re
import warnings
import zipfile
from pathlib import Path

from rdm.errors import RunError
from rdm.common.files import atomic_write
from rdm.runs.record import RUN_FILE, RunRecord

RUN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a folder name: no separators, no leading dot


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
    """The run with this id (or a unique prefix of it): a name inside ``runs_dir``, never a path."""
    runs_dir = Path(runs_dir)
    if not RUN_ID.fullmatch(run_id or ""):
        raise RunError(f"{run_id!r} is not a run id (letters, digits, '-', '_' and '.', e.g. "
                       "20261201-101500-compare-ab12): `rdm runs list` shows the runs")
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
    folder = run_folder(record)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, f"{record.id}/{path.relative_to(folder).as_posix()}")
    if out is not None:
        atomic_write(Path(out), buffer.getvalue())
    return buffer.getvalue()


def run_folder(record: RunRecord) -> Path:
    if record.folder is None:
        raise RunError(f"run {record.id} has no folder: load it with load_run()")
    return record.folder
