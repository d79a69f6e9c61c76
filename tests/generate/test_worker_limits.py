"""The worker bounds every request before doing its work: settings, plan size, pictures (declared
dimensions, only what the plan uses, total pixels), the deadline; and a job whose client has gone
is cancelled so it does not block the queue."""

from __future__ import annotations

import base64
import io
import json
import resource
import threading
import time

import httpx
import pytest
from PIL import Image
from worker_app import plan_with_reference, serving

from rdm.errors import GenerationCancelledError, RDMError
from rdm.generate import BaseGenerator, GenerationSettings, encode_png
from rdm.plan import prompt_only_plan
from rdm.generate.worker import check_exposure, create_app

AUTH = {"Authorization": "Bearer s3cret"}


@pytest.fixture(scope="module")
def worker(generator):
    with serving(create_app(generator, token="s3cret", max_body_bytes=2_000_000, max_timeout_s=5,
                            max_pixels=2_000_000)) as url:
        yield url


def post(url: str, body: dict, headers=AUTH) -> httpx.Response:
    """As any client could send it: NaN and Infinity included (Python's json writes them)."""
    return httpx.post(url + "/generate", content=json.dumps(body, allow_nan=True).encode(),
                      headers={**headers, "Content-Type": "application/json"}, timeout=30)


def settings(**overrides) -> dict:
    return {**GenerationSettings(steps=2, prior_steps=2, size=(64, 64)).to_dict(), **overrides}


@pytest.mark.parametrize("overrides, message", [
    ({"prior_steps": 50_000_000}, "prior_steps must be at least 2 and at most 200"),
    ({"steps": 5000}, "steps must be at least 1 and at most 500"),
    ({"steps": 1000}, "at most 500"),
    ({"size": [8192, 8192]}, "at most 2048"),
    ({"n_images": 16, "size": [1024, 1024]}, "lower the number of images or the size"),
    ({"guidance": float("nan")}, "guidance must be a finite number"),
    ({"seed": True}, "seed must be a whole number"),
    ({"steps": "50"}, "steps must be a whole number"),
])
def test_out_of_bounds_settings_are_422_with_the_bound(worker, overrides, message):
    reply = post(worker, {"plan": prompt_only_plan("x").to_dict(), "settings": settings(**overrides)})
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == "bad_request" and message in reply.json()["message"]


def test_the_same_bounds_hold_for_the_cli():
    from typer.testing import CliRunner

    from rdm.cli import app

    result = CliRunner().invoke(app, ["generate", "a dog", "--steps", "5000", "--backend", "tiny"])
    assert result.exit_code == 1 and "steps must be at least 1 and at most 500" in result.output


def test_a_boolean_plan_weight_and_a_nan_deadline_are_refused(worker):
    plan = prompt_only_plan("x").to_dict()
    plan["items"][0]["weight"] = True
    reply = post(worker, {"plan": plan, "settings": settings()})
    assert reply.status_code == 422 and "positive number, got True" in reply.json()["message"]
    for timeout in (float("nan"), float("inf"), -1, "soon"):
        body = {"plan": prompt_only_plan("x").to_dict(), "settings": settings(), "timeout_s": timeout}
        reply = post(worker, body)
        assert reply.status_code == 422 and "timeout_s" in reply.json()["message"], reply.text


def one_bit_png(side: int) -> str:
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def test_pictures_are_checked_before_they_are_decoded(worker):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    plan = plan_with_reference().to_dict()
    # a decompression bomb: 144 MP in a few KB
    reply = post(worker, {"plan": plan, "settings": settings(), "images": {"db:3": one_bit_png(12_000)}})
    assert reply.status_code == 422 and "decompression bomb" in reply.json()["message"]
    # pictures the plan does not use are refused, not decoded
    extra = {f"db:{i}": one_bit_png(64) for i in (3, 4, 5, 6)}
    reply = post(worker, {"plan": plan, "settings": settings(), "images": extra})
    assert reply.status_code == 422 and "not used by the plan" in reply.json()["message"]
    # the request's pictures together stay within the worker's pixel budget (2 MP here)
    reply = post(worker, {"plan": plan, "settings": settings(), "images": {"db:3": one_bit_png(1600)}})
    assert reply.status_code == 422 and "over this worker's limit of 2.0 MP" in reply.json()["message"]
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 200, f"the worker's process grew by {grown_mb:.0f} MB"


def test_a_request_its_settings_refuse_is_refused_before_any_picture_is_decoded(monkeypatch):
    from rdm.errors import BadRequestError
    from rdm.generate import worker as worker_module

    decoded = []
    monkeypatch.setattr(worker_module, "load_pixels", lambda *args, **kwargs: decoded.append(args[1]))
    # a 4 MP variation photo (a 48 MP one cost the worker 360 MB) whose settings run no denoising step
    body = {"plan": prompt_only_plan("x").to_dict(), "settings": settings(steps=2, strength=0.01),
            "init_image": one_bit_png(2000)}
    with pytest.raises(BadRequestError, match="runs no denoising step"):
        worker_module.parse_job(json.dumps(body).encode(), 60, max_pixels=50_000_000)
    assert decoded == []


def test_a_deeply_nested_body_is_a_bad_request(worker):
    body = b'{"plan": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    reply = httpx.post(worker + "/generate", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert reply.status_code == 422


def test_the_bearer_scheme_is_case_insensitive(worker):
    for scheme in ("bearer", "BEARER", "Bearer"):
        reply = httpx.get(worker + "/health", headers={"Authorization": f"{scheme} s3cret"})
        assert reply.status_code == 200
    assert httpx.get(worker + "/health", headers={"Authorization": "Basic s3cret"}).status_code == 401


class SlowGenerator(BaseGenerator):
    """Counts denoising steps slowly, so a client can leave in the middle."""

    info = None

    def __init__(self):
        from rdm.generate import GeneratorInfo

        self.info = GeneratorInfo(backend="local", prior_id="slow", decoder_id="slow", device="cpu",
                                  dtype="float32", test_model=True)
        self.steps, self.stopped = 0, threading.Event()
        self.outcome = None

    def _generate(self, plan, settings, images, init_image, product, progress):
        try:
            for step in range(1, 1001):
                time.sleep(0.01)
                self.steps = step
                progress("decoder", step, 1000)
        except GenerationCancelledError as exc:
            self.outcome = exc
            raise
        finally:
            self.stopped.set()
        return [Image.new("RGB", settings.size)]


def test_a_job_whose_client_went_away_is_cancelled_and_frees_the_queue():
    slow = SlowGenerator()
    with serving(create_app(slow, max_timeout_s=60)) as url:
        body = {"plan": prompt_only_plan("x").to_dict(), "settings": settings(), "timeout_s": 60}
        with pytest.raises(httpx.TimeoutException):
            httpx.post(url + "/generate", json=body, timeout=0.5)  # the client gives up and disconnects
        assert slow.stopped.wait(5), "the job kept running after its client left"
        assert isinstance(slow.outcome, GenerationCancelledError) and slow.steps < 500
        assert httpx.get(url + "/health").json()["queue"] == 0


def test_a_worker_off_loopback_needs_a_token():
    with pytest.raises(RDMError, match="refusing to listen on 0.0.0.0 without a token"):
        check_exposure("0.0.0.0", None)
    check_exposure("0.0.0.0", "s3cret")
    check_exposure("0.0.0.0", None, insecure_no_token=True)
    check_exposure("127.0.0.1", None)
    from typer.testing import CliRunner

    from rdm.cli import app

    result = CliRunner().invoke(app, ["worker", "--host", "0.0.0.0", "--backend", "tiny"], env={"RDM_WORKER_TOKEN": ""})
    assert result.exit_code == 1 and "--insecure-no-token" in result.output


def test_encoded_pictures_round_trip():
    image = Image.new("RGB", (32, 32), (10, 20, 30))
    from rdm.generate import decode_png

    assert decode_png(encode_png(image)).getpixel((0, 0)) == (10, 20, 30)


def test_too_many_prior_runs_in_one_request_are_refused(generator):
    from rdm.errors import BadRequestError
    from rdm.plan import ConditioningPlan, PlanItem

    items = tuple(PlanItem(kind="text", weight=1 / 40, source="subquery", text=f"thing {i}") for i in range(40))
    plan = ConditioningPlan(prompt="p", items=items, mode="subquery")
    with pytest.raises(BadRequestError, match="prior runs, over the 256"):
        generator.generate(plan, GenerationSettings(n_images=8, steps=2, prior_steps=2, size=(64, 64)))


def test_the_ingest_read_ahead_is_bounded_in_bytes():
    from rdm.db.intake import _prefetch

    class Weighted:
        def __init__(self, n):
            self.nbytes, self.n = 40, n

    produced, consumed, ahead = [], [], []

    def items():
        for n in range(20):
            produced.append(n)
            yield n, Weighted(n)

    for done, item in _prefetch(items(), budget=100):
        time.sleep(0.01)  # a slow consumer: the reader would run far ahead if it could
        consumed.append(done)
        ahead.append(len(produced) - len(consumed))
    assert consumed == list(range(20))
    assert max(ahead) <= 100 // 40 + 1  # at most the budget's worth of items waits (plus the one being read)


def test_a_client_asking_for_more_time_than_the_worker_allows_gets_the_workers_cap(worker):
    from rdm.generate import RemoteGenerator

    client = RemoteGenerator(worker, "s3cret", timeout=600)  # the worker allows 5 s
    assert len(client.generate(prompt_only_plan("x"), GenerationSettings(steps=2, prior_steps=2, size=(64, 64)))) == 1
