"""Secrets never reach a message that is shown, logged or saved: URL credentials and known keys."""

from __future__ import annotations

import json

import pytest
from openai_stub import OpenAIStub, error_reply, json_reply
from typer.testing import CliRunner

from rdm.cli import app
from rdm.decompose import LLMConfig, clear_cache, decompose
from rdm.errors import CredentialsInUrl
from rdm.generate import RemoteGenerator
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
        config = LLMConfig(base_url=stub.base_url, model="m", api_key="sk-live-abcdef123456", timeout_s=5, max_retries=0)
        d = decompose(PROMPT, "llm", llm=config)
    assert d.backend == "offline" and "Incorrect API key provided" in d.fallback_reason
    assert "sk-live-abcdef123456" not in d.fallback_reason


@pytest.mark.parametrize("make", [
    lambda url: LLMConfig(base_url=url + "/v1", model="m"),
    lambda url: RemoteGenerator(url),
], ids=["llm", "worker"])
def test_a_server_url_with_credentials_is_refused(make):
    """Defect 10: the client would send user:password@ as Basic auth, which servers echo; the variables exist."""
    with pytest.raises(CredentialsInUrl, match="RDM_LLM_API_KEY|RDM_WORKER_TOKEN") as caught:
        make("http://admin:s3cr3tpw@127.0.0.1:9")
    assert "s3cr3tpw" not in str(caught.value) and "127.0.0.1:9" in str(caught.value)


def test_an_llm_answer_echoing_the_key_is_saved_without_it():
    """Defect 10: what the LLM answers is kept with runs (and in their PNGs); a key in it is masked first."""
    answer = {"summary": "a dog sk-live-abcdef123456", "subqueries": [
        {"text": "a dog Basic sk-live-abcdef123456", "weight": 0.7}, {"text": "a sofa", "weight": 0.3}]}
    with OpenAIStub(json_reply(answer)) as stub:
        config = LLMConfig(base_url=stub.base_url, model="m", api_key="sk-live-abcdef123456", max_retries=0)
        saved = json.dumps(decompose(PROMPT, "llm", llm=config).to_dict())
    assert "a dog" in saved and "sk-live-abcdef123456" not in saved and "***" in saved


def test_a_stored_url_keeps_no_password(tmp_path, tiny_encoder):
    """Defect 10: the URL an image came from is stored and shown without its user name and password."""
    from rdm.db import ImageStore
    from rdm.settings import DEMO_PHOTOS

    photo = sorted((DEMO_PHOTOS / "images").glob("*.jpg"))[0]
    store = ImageStore.create(tmp_path / "db", tiny_encoder)
    store.ingest([photo], metadata={photo.name: {"source": "https://bob:hunter2@cdn.example/a.jpg"}})
    assert store.records()[0].source == "https://cdn.example/a.jpg"


def test_the_cli_never_prints_a_known_secret(monkeypatch, tmp_path):
    monkeypatch.setenv("RDM_WORKER_URL", "http://admin:s3cr3tpw@127.0.0.1:9")
    monkeypatch.setenv("RDM_WORKER_TOKEN", "tok-never-shown")
    result = CliRunner().invoke(app, ["stats", "--db", str(tmp_path / "tok-never-shown")])
    assert result.exit_code == 1 and "tok-never-shown" not in result.output and "***" in result.output


def test_a_run_saves_no_credentials(tiny_db, tmp_path, monkeypatch):
    with OpenAIStub() as stub:
        stub.script(error_reply(500, "upstream echoed key sk-echoed-999999"))
        monkeypatch.setenv("RDM_LLM_BASE_URL", stub.base_url)
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
    assert "sk-echoed-999999" not in saved  # ... without the secret
    json.loads(saved)
