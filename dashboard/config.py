"""Which DB, backend and LLM the dashboard runs against: the environment, then .streamlit/secrets.toml."""

from __future__ import annotations

import os
from typing import Mapping

import streamlit as st

from rdm.decompose import LLMConfig
from rdm.common.redact import public_url, register_secret
from rdm.settings import Settings, load_settings

# Secret names (env or .streamlit/secrets.toml) -> Settings fields; the environment wins.
SECRET_FIELDS = {
    "RDM_LLM_API_KEY": "llm_api_key", "OPENAI_API_KEY": "llm_api_key",
    "RDM_LLM_BASE_URL": "llm_base_url", "OPENAI_BASE_URL": "llm_base_url",
    "RDM_LLM_MODEL": "llm_model", "RDM_WORKER_URL": "worker_url", "RDM_WORKER_TOKEN": "worker_token",
}


def secret_overrides(secrets: Mapping[str, object], environ: Mapping[str, str]) -> dict[str, str]:
    """Settings fields to take from ``secrets``: those that no environment variable already sets."""
    from_env = {f for name, f in SECRET_FIELDS.items() if environ.get(name, "").strip()}
    overrides: dict[str, str] = {}
    for name, field in SECRET_FIELDS.items():
        value = secrets.get(name)
        usable = isinstance(value, (str, int, float)) and str(value).strip()
        if usable and field not in from_env and field not in overrides:
            overrides[field] = str(value).strip()
    return overrides


def settings() -> Settings:
    try:
        secrets = {k: st.secrets[k] for k in st.secrets}
    except Exception:  # noqa: BLE001 - no secrets.toml (the usual case) or an unreadable one: env only
        secrets = {}
    overrides = secret_overrides(secrets, os.environ)
    for field in ("llm_api_key", "worker_token"):  # secrets.toml's secrets are kept out of messages too
        register_secret(overrides.get(field))
    return load_settings(**overrides)


def llm_config(s: Settings) -> LLMConfig:
    return LLMConfig.from_settings(s)


def settings_summary(s: Settings) -> dict[str, str]:
    """What the dashboard runs against, for the sidebar (never secrets: only whether they are set)."""
    return {"DB": str(s.db), "Runs": str(s.runs_dir), "Studies": str(s.studies_dir), "Backend": s.backend,
            "Worker": public_url(s.worker_url) if s.worker_url else "–",
            "Worker token": "set" if s.worker_token else "not set",
            "LLM": public_url(s.llm_base_url) if s.llm_base_url else ("api.openai.com" if s.llm_api_key
                                                                       else "not configured"),
            "LLM key": "set" if s.llm_api_key else "not set"}


def worker_env(s: Settings) -> dict[str, str]:
    """The settings a job worker started by the dashboard must share with it (secrets.toml is the
    dashboard's alone), as RDM_* variables for the worker's environment only."""
    values = {"RDM_DB": s.db, "RDM_RUNS": s.runs_dir, "RDM_BACKEND": s.backend, "RDM_WORKER_URL": s.worker_url,
              "RDM_WORKER_TOKEN": s.worker_token, "RDM_LLM_BASE_URL": s.llm_base_url, "RDM_LLM_MODEL": s.llm_model,
              "RDM_LLM_API_KEY": s.llm_api_key, "RDM_PRIOR_ID": s.prior_id, "RDM_DECODER_ID": s.decoder_id,
              "RDM_INPAINT_DECODER_ID": s.inpaint_decoder_id}
    return {name: str(value) for name, value in values.items() if value}
