"""Status checks behind the Overview page: each problem comes back as a level and a fix, never a crash."""

import json
import socket
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from openai_stub import OpenAIStub, chat_reply
from rdm.decompose import LLMConfig
from rdm.health import backend_check, llm_check, weights_present
from rdm.settings import load_settings


def _closed_port_url(path: str = "") -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


@pytest.fixture
def settings(tmp_path):
    return replace(load_settings(), db=tmp_path / "db", runs_dir=tmp_path / "runs", worker_url=None,
                   worker_token=None, llm_base_url=None, llm_api_key=None)


def test_tiny_backend_is_flagged_as_a_test_model(settings):
    check = backend_check(settings, "tiny")
    assert check.level == "warning" and "noise" in check.detail


def test_local_backend_without_weights_says_how_to_get_them(settings, tmp_path):
    folder = tmp_path / "no-weights"
    folder.mkdir()
    check = backend_check(replace(settings, prior_id=str(folder), decoder_id=str(folder)), "local")
    assert check.level == "error"
    assert f"weights for {folder}" in check.detail and "HF_HOME" in check.detail
    assert not weights_present(str(folder))
    (folder / "model_index.json").write_text("{}")
    assert weights_present(str(folder))


def test_remote_backend_needs_a_url_and_reports_an_unreachable_worker(settings):
    assert "RDM_WORKER_URL" in backend_check(settings, "remote").detail
    check = backend_check(replace(settings, worker_url=_closed_port_url()), "remote", timeout_s=1)
    assert check.level == "error" and "rdm worker" in check.detail


def test_reachable_worker_reports_its_gpu(settings):
    class Health(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps({"status": "ok", "queue": 1, "info": {
                "backend": "local", "prior_id": "p", "decoder_id": "d", "device": "cuda",
                "dtype": "float16", "test_model": False, "gpu_name": "NVIDIA H100"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        check = backend_check(replace(settings, worker_url=url), "remote")
        both = backend_check(replace(settings, worker_url=f"{url},{url}"), "remote")
        one_down = backend_check(replace(settings, worker_url=f"{url} {_closed_port_url()}"), "remote", timeout_s=1)
    finally:
        server.shutdown()
        server.server_close()
    assert check.ok and "NVIDIA H100" in check.detail and "1 job(s) queued" in check.detail
    assert both.ok and both.title == "2 GPU workers reachable"  # RDM_WORKER_URL may list several
    assert one_down.level == "error"  # every listed worker must answer


def test_llm_not_configured_unreachable_and_reachable():
    assert llm_check(LLMConfig(base_url=None, model="m")).level == "warning"
    down = llm_check(LLMConfig(base_url=_closed_port_url("/v1"), model="m"), timeout_s=1)
    assert down.level == "error" and "RDM_LLM_BASE_URL" in down.detail
    with OpenAIStub(chat_reply("{}")) as stub:
        up = llm_check(LLMConfig(base_url=stub.base_url, model="stub-model", api_key="k"))
    assert up.ok and stub.base_url in up.detail
