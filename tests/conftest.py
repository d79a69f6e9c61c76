"""Shared test set-up and fixtures (each defined here once).

One CPU thread: on 2 cores more threads ran 10-40x slower under load. No hub downloads.
"""

import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# gRPC's C core logs a Milvus server's keepalive complaints ("too_many_pings") at exit; failures still raise
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from retrieval_db import build_or_open  # noqa: E402
from tiny_db import ENV_CLEARED, build_tiny_db  # noqa: E402


@pytest.fixture(scope="session")
def tiny_encoder():
    """The toy open_clip encoder with fixed random weights."""
    from rdm.encoders import load_encoder

    return load_encoder("tiny")


@pytest.fixture(scope="session")
def generator():
    """The tiny random-weight Kandinsky 2.2 (prior, decoder and inpainting decoder), loaded once."""
    from rdm.generate import KandinskyGenerator
    from rdm.generate.tiny import ensure_tiny_kandinsky

    tiny = ensure_tiny_kandinsky()
    return KandinskyGenerator(str(tiny.prior), str(tiny.decoder), inpaint_decoder_id=str(tiny.inpaint))


@pytest.fixture(scope="session")
def conse_store(tmp_path_factory):
    """The demo-photo subset DB with the offline ConSE encoder (retrieval needs real semantics)."""
    return build_or_open(tmp_path_factory.getbasetemp() / "retrieval-db")


@pytest.fixture(scope="session")
def tiny_db_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "db"
    build_tiny_db(path)
    return path


@pytest.fixture
def tiny_db(tiny_db_template, tmp_path) -> Path:
    """A fresh copy of the tiny-encoder DB per test: tests edit, delete and upload."""
    path = tmp_path / "db"
    shutil.copytree(tiny_db_template, path)
    return path


@pytest.fixture
def dashboard_env(tiny_db, tmp_path, monkeypatch) -> Path:
    """RDM_DB at the tiny DB, the tiny generator, runs, studies and jobs in tmp, no LLM or GPU worker
    configured, no job worker started by the pages (tests run their own)."""
    monkeypatch.setenv("RDM_DB", str(tiny_db))
    monkeypatch.setenv("RDM_BACKEND", "tiny")
    monkeypatch.setenv("RDM_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("RDM_STUDIES", str(tmp_path / "studies"))
    monkeypatch.setenv("RDM_JOBS", str(tmp_path / "jobs"))
    monkeypatch.setenv("RDM_JOBS_WORKER", "off")
    for name in ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    return tiny_db


STUDY_SUITE = [{"id": "sofa", "prompt": "a dog on a sofa", "requirements": ["a dog", "a sofa"]},
               {"id": "toy", "prompt": "a cat with a toy"},
               {"id": "collar", "prompt": "a red collar on a puppy"}]


@pytest.fixture(scope="session")
def small_study(tmp_path_factory, tiny_db_template, generator):
    """A 3-prompt, 3-mode, 2-seed tiny study folder (its own DB copy: studies only read it)."""
    import json

    from rdm.db import ImageStore
    from rdm.generate import GenerationSettings
    from rdm.study.run import StudyRequest, run_study
    from rdm.study.scorers import make_scorer
    from rdm.study.suite import load_suite

    out = tmp_path_factory.mktemp("study") / "pets"
    db = shutil.copytree(tiny_db_template, out.parent / "db")
    suite = out.parent / "suite.jsonl"
    suite.write_text("".join(json.dumps(row) + "\n" for row in STUDY_SUITE))
    request = StudyRequest(load_suite(suite), ("none", "full", "subquery+filter"), seeds=2,
                           scorers=("clip:tiny", "vqa:tiny"),
                           settings=GenerationSettings(steps=2, prior_steps=2, size=(64, 64)), backend="tiny")
    run_study(request, store=ImageStore.open(db), generator=lambda: generator, out=out,
              scorers=[make_scorer("clip:tiny"), make_scorer("vqa:tiny")])
    return out
