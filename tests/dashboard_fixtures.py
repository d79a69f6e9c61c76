"""A small DB (tiny encoder, a dozen demo photos) and the environment the dashboard tests run in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rdm.demo import manifest_metadata
from rdm.encoders import load_encoder
from rdm.settings import DEMO_PHOTOS
from rdm.db import ImageStore

PER_CATEGORY = 3
ENV_CLEARED = ("RDM_LLM_BASE_URL", "OPENAI_BASE_URL", "RDM_LLM_API_KEY", "OPENAI_API_KEY", "RDM_WORKER_URL",
               "RDM_WORKER_TOKEN")


def demo_files(per_category: int = PER_CATEGORY) -> list[Path]:
    """The first few demo photos of each category, so every category shows up."""
    picked: dict[str, list[Path]] = {}
    for line in (DEMO_PHOTOS / "manifest.jsonl").read_text().splitlines():
        rec = json.loads(line)
        group = picked.setdefault(rec["category"], [])
        if len(group) < per_category:
            group.append(DEMO_PHOTOS / rec["file"])
    return [p for files in picked.values() for p in files]


def build_tiny_db(path: Path) -> ImageStore:
    store = ImageStore.create(path, load_encoder("tiny"), encoder_reason="tiny encoder for tests")
    store.ingest(demo_files(), metadata=manifest_metadata(DEMO_PHOTOS))
    return store


@pytest.fixture(scope="session")
def tiny_db_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "db"
    build_tiny_db(path)
    return path


@pytest.fixture
def tiny_db(tiny_db_template, tmp_path) -> Path:
    """A fresh copy per test: tests edit, delete and upload."""
    path = tmp_path / "db"
    shutil.copytree(tiny_db_template, path)
    return path


@pytest.fixture
def dashboard_env(tiny_db, tmp_path, monkeypatch) -> Path:
    """RDM_DB at the tiny DB, the tiny generator, runs in tmp, no LLM or worker configured."""
    monkeypatch.setenv("RDM_DB", str(tiny_db))
    monkeypatch.setenv("RDM_BACKEND", "tiny")
    monkeypatch.setenv("RDM_RUNS", str(tmp_path / "runs"))
    for name in ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    return tiny_db
