"""Secrets never reach a message that is shown, logged or saved: URL credentials and known keys."""

from __future__ import annotations

import json

import pytest
from openai_stub import OpenAIStub, error_reply
from typer.testing import CliRunner

from rdm.cli import app
from rdm.decompose import LLMConfig, clear_cache, decompose
from rdm.errors import WorkerUnreachableError
from rdm.generate import RemoteGenerator
from rdm.plan import prompt_only_plan
from rdm.common.redact import public_url, redact, register_secret

PROMPT = "A cute dog wearing a yellow hoodie sits on a stylish sofa."


@pytest.fixture(autouse=True)
def fresh():
    clear_cache()
    yield
    clear_cache()


def test_redact_removes_url_credentials_and_known_secrets(monkeypatch):
    monkeypatch.setenv("RDM_WORKER_TOKEN", "tok-12345")
    register_secret("from-secrets-toml")
    text = "http://alice:hunter2@gpu-box:8765 said tok-12345 and from-secrets-toml; https://bob@h/x"
    assert redact(text) == "http://***@gpu-box:8765 said *** and ***; https://***@h/x"
    assert public_url("http://alice:hunter2@gpu-box:8765/v1") == "http://gpu-box:8765/v1"
    assert public_url("http://gpu-box:8765") == "http://gpu-box:8765"


def test_llm_credentials_never_reach_the_fallback_reason():
    with OpenAIStub() as stub:
        stub.script(error_reply(401, "Incorrect API key provided: sk-live-abcdef123456"))
        base = stub.base_url.replace("http://", "http://user:p4ssw0rd@")
        config = LLMConfig(base_url=base, model="m", api_key="sk-live-abcdef123456", timeout_s=5, max_retries=0)
        d = decompose(PROMPT, "llm", llm=config)
    assert d.backend == "offline" and "Incorrect API key provided" in d.fallback_reason
    assert "p4ssw0rd" not in d.fallback_reason and "sk-live-abcdef123456" not in d.fallback_reason


def test_a_worker_url_with_credentials_is_not_printed():
    remote = RemoteGenerator("http://admin:s3cr3tpw@127.0.0.1:9")
    with pytest.raises(WorkerUnreachableError) as caught:
        remote.generate(prompt_only_plan("x"))
    assert "s3cr3tpw" not in str(caught.value) and "127.0.0.1:9" in str(caught.value)


def test_the_cli_never_prints_a_known_secret(monkeypatch, tmp_path):
    monkeypatch.setenv("RDM_WORKER_URL", "http://admin:s3cr3tpw@127.0.0.1:9")
    monkeypatch.setenv("RDM_WORKER_TOKEN", "tok-never-shown")
    result = CliRunner().invoke(app, ["stats", "--db", str(tmp_path / "tok-never-shown")])
    assert result.exit_code == 1 and "tok-never-shown" not in result.output and "***" in result.output


def test_a_run_saves_no_credentials(tiny_db, tmp_path, monkeypatch):
    with OpenAIStub() as stub:
        stub.script(error_reply(500, "upstream echoed key sk-echoed-999999"))
        monkeypatch.setenv("RDM_LLM_BASE_URL", stub.base_url.replace("http://", "http://u:pw-in-url@"))
        monkeypatch.setenv("RDM_LLM_API_KEY", "sk-echoed-999999")
        monkeypatch.setenv("RDM_LLM_RETRIES", "0")
        runs = tmp_path / "runs"
        result = CliRunner().invoke(app, ["generate", PROMPT, "--backend", "tiny", "--decomposer", "llm", "--steps", "1",
                                          "--prior-steps", "2", "--size", "64", "--db", str(tiny_db),
                                          "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    (folder,) = runs.iterdir()
    saved = (folder / "run.json").read_text()
    assert "upstream echoed key" in saved  # the reason is kept ...
    assert "sk-echoed-999999" not in saved and "pw-in-url" not in saved  # ... without the secrets
    json.loads(saved)
