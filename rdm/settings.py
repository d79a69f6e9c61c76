"""Where things live and which backends to use: CLI flag, else environment, else a default."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from rdm.common.bounds import check_number
from rdm.errors import RDMError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_PHOTOS = REPO_ROOT / "data" / "demo-photos"
DEMO_DB = REPO_ROOT / "data" / "demo-db"

DEFAULT_PRIOR_ID = "kandinsky-community/kandinsky-2-2-prior"
DEFAULT_DECODER_ID = "kandinsky-community/kandinsky-2-2-decoder"
DEFAULT_INPAINT_DECODER_ID = "kandinsky-community/kandinsky-2-2-decoder-inpaint"  # product lock
DEFAULT_LLM_MODEL = "gpt-4o-mini"
DEFAULT_LLM_TIMEOUT_S = 30.0
DEFAULT_LLM_RETRIES = 2


@dataclass(frozen=True)
class Settings:
    db: Path
    runs_dir: Path
    encoder: str  # name given to `rdm reindex` / the demo build; "auto" picks one
    llm_base_url: str | None
    llm_model: str
    llm_api_key: str | None
    backend: str  # local | remote | tiny
    worker_url: str | None
    worker_token: str | None
    prior_id: str
    decoder_id: str
    inpaint_decoder_id: str = DEFAULT_INPAINT_DECODER_ID
    llm_timeout_s: float = DEFAULT_LLM_TIMEOUT_S  # per attempt
    llm_retries: int = DEFAULT_LLM_RETRIES  # attempts after the first
    user: str = ""  # who curation changes are recorded as (RDM_USER); empty: nobody named
    studies_dir: Path = Path("studies")  # where the dashboard looks for study folders (RDM_STUDIES)
    jobs_dir: Path = Path("jobs")  # the background job queue and its state (RDM_JOBS)

    @property
    def worker_urls(self) -> tuple[str, ...]:
        """RDM_WORKER_URL may list several GPU workers (comma- or space-separated); a study spreads over all."""
        return tuple(u for u in re.split(r"[,\s]+", self.worker_url or "") if u)


@dataclass(frozen=True)
class VectorConfig:
    """The vector index's engine: ``backend`` for DBs created from now on (a DB keeps its own)."""

    backend: str = "faiss"  # RDM_VECTOR_BACKEND: faiss | milvus
    milvus_uri: str = ""  # RDM_MILVUS_URI: a Milvus server; empty: Milvus Lite inside the DB folder
    milvus_token: str = ""  # RDM_MILVUS_TOKEN


def vector_config() -> VectorConfig:
    return VectorConfig(_env("RDM_VECTOR_BACKEND", "faiss").lower(), _env("RDM_MILVUS_URI", ""),
                        _env("RDM_MILVUS_TOKEN", ""))


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def _number(name: str, default: float, low: float, high: float, integer: bool = False) -> float:
    text = _env(name)
    if text is None:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise RDMError(f"{name}={text!r} is not a number: use e.g. {default:g}") from None
    return check_number(value, name, low, high, integer=integer)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; keyword overrides (CLI flags) win when not None."""
    settings = Settings(
        db=Path(_env("RDM_DB", str(DEMO_DB))),
        runs_dir=Path(_env("RDM_RUNS", "runs")),
        encoder=_env("RDM_ENCODER", "auto"),
        llm_base_url=_env("RDM_LLM_BASE_URL") or _env("OPENAI_BASE_URL"),
        llm_model=_env("RDM_LLM_MODEL", DEFAULT_LLM_MODEL),
        llm_api_key=_env("RDM_LLM_API_KEY") or _env("OPENAI_API_KEY"),
        backend=_env("RDM_BACKEND", "local"),
        worker_url=_env("RDM_WORKER_URL"),
        worker_token=_env("RDM_WORKER_TOKEN"),
        prior_id=_env("RDM_PRIOR_ID", DEFAULT_PRIOR_ID),
        decoder_id=_env("RDM_DECODER_ID", DEFAULT_DECODER_ID),
        inpaint_decoder_id=_env("RDM_INPAINT_DECODER_ID", DEFAULT_INPAINT_DECODER_ID),
        llm_timeout_s=_number("RDM_LLM_TIMEOUT_S", DEFAULT_LLM_TIMEOUT_S, 0.1, 3600.0),
        llm_retries=int(_number("RDM_LLM_RETRIES", DEFAULT_LLM_RETRIES, 0, 10, integer=True)),
        user=_env("RDM_USER", ""),
        studies_dir=Path(_env("RDM_STUDIES", "studies")),
        jobs_dir=Path(_env("RDM_JOBS", "jobs")),
    )
    paths = ("db", "runs_dir", "studies_dir", "jobs_dir")
    given = {k: (Path(v) if k in paths else v) for k, v in overrides.items() if v is not None}
    return replace(settings, **given)
