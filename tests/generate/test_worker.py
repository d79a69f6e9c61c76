"""The GPU worker on 127.0.0.1 (uvicorn in a thread) driven by RemoteGenerator, with the tiny model."""

from dataclasses import replace
import socket
import time

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from rdm.generate import (GenerationSettings, GenerationTimeoutError, OutOfGPUMemoryError, RemoteGenerator,
                          RequestTooLargeError, WorkerAuthError, WorkerUnreachableError, encode_png)
from rdm.plan import prompt_only_plan
from rdm.generate.product import ProductPlacement, place_product, product_lock
from rdm.generate.worker import create_app
from worker_app import plan_with_reference, serving

FAST = GenerationSettings(steps=3, prior_steps=2, size=(64, 64))


@pytest.fixture(scope="module")
def worker(generator):
    with serving(create_app(generator, token="s3cret", max_body_bytes=200_000)) as url:
        yield url


def test_health_reports_models_device_and_queue(worker, generator):
    health = RemoteGenerator(worker, "s3cret").health()
    assert health["info"]["prior_id"] == generator.info.prior_id
    assert health["info"]["decoder_id"] == generator.info.decoder_id
    assert health["info"]["device"] == "cpu" and health["gpu"] is None
    assert health["queue"] == 0 and health["max_body_bytes"] == 200_000
    remote = RemoteGenerator(worker, "s3cret").info
    assert remote.backend == "remote" and remote.test_model is True and remote.worker_url == worker


def same_picture(a: Image.Image, b: Image.Image) -> bool:
    """Equal up to float rounding. The worker runs the job on another thread, and CPU kernels don't
    promise bit-identical sums across threads; exact equality failed once under heavy load."""
    diff = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16))
    return a.size == b.size and diff.max() <= 8 and diff.mean() < 0.5


def test_remote_generation_matches_local_generation(worker, generator):
    images = {"db:3": Image.new("RGB", (80, 60), (120, 90, 40))}
    settings = replace(FAST, seed=5, n_images=2)
    remote = RemoteGenerator(worker, "s3cret").generate(plan_with_reference(), settings, images=images)
    local = generator.generate(plan_with_reference(), settings, images=images)
    assert len(remote) == 2
    assert all(same_picture(r, l) for r, l in zip(remote, local))
    photo = Image.new("RGB", (64, 64), (200, 30, 30))
    variation = GenerationSettings(strength=0.5, seed=2, steps=4, prior_steps=2, size=(64, 64))
    remote = RemoteGenerator(worker, "s3cret").generate(plan_with_reference(), variation, images=images, init_image=photo)
    local = generator.generate(plan_with_reference(), variation, images=images, init_image=photo)
    assert same_picture(remote[0], local[0])


def test_remote_product_lock_returns_the_product_pixels_unchanged(worker, generator):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:, :2, 3] = 90  # a semi-transparent column, and a transparent strip
    rgba[:3, :, 3] = 0
    product = Image.fromarray(rgba, mode="RGBA")
    placement = ProductPlacement(scale=0.5, x=0.5, y=0.6)  # 32 px wide on 64 px: no resampling
    settings, lock = replace(FAST, seed=4, n_images=2), product_lock(product, placement=placement)
    remote = RemoteGenerator(worker, "s3cret").generate(prompt_only_plan("a collar on a cushion"), settings, product=lock)
    local = generator.generate(prompt_only_plan("a collar on a cushion"), settings, product=lock)
    box = place_product(product_lock(product, placement=placement), (64, 64)).box
    opaque = rgba[3:, :, 3] == 255  # the lock crops the transparent strip away
    for image in remote:
        region = np.asarray(image)[box[1]:box[3], box[0]:box[2]]
        assert np.array_equal(region[opaque], rgba[3:, :, :3][opaque])
    assert all(same_picture(r, l) for r, l in zip(remote, local))


def test_the_worker_refuses_an_unusable_product_with_the_reason(worker):
    empty = encode_png(Image.new("RGBA", (16, 16), (0, 0, 0, 0)), mode="RGBA")
    body = {"plan": prompt_only_plan("x").to_dict(), "settings": {"steps": 2, "size": [64, 64]},
            "product": {"image": empty, "placement": {"scale": 0.5, "x": 0.5, "y": 0.5}}}
    reply = httpx.post(worker + "/generate", json=body, headers={"Authorization": "Bearer s3cret"})
    assert reply.status_code == 422 and "empty" in reply.json()["message"]


def test_wrong_or_missing_token_is_refused(worker):
    for token in ("wrong", None):
        with pytest.raises(WorkerAuthError, match="token"):
            RemoteGenerator(worker, token).generate(prompt_only_plan("x"), FAST)


def test_request_body_size_limit(worker):
    big = {"db:3": Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8))}
    with pytest.raises(RequestTooLargeError, match="exceeds the worker's limit"):
        RemoteGenerator(worker, "s3cret").generate(plan_with_reference(), FAST, images=big)
    # the worker itself refuses an oversized body, whatever the client
    reply = httpx.post(worker + "/generate", content=b"x" * 300_000,
                       headers={"Authorization": "Bearer s3cret", "Content-Type": "application/json"})
    assert reply.status_code == 413 and reply.json()["error"] == "too_large"


def test_malformed_request_is_answered_with_a_message(worker):
    bad_plan = {"plan": {"prompt": "x", "items": [{"kind": "text", "weight": 0.5, "source": "prompt", "text": "x"}]}}
    reply = httpx.post(worker + "/generate", json=bad_plan, headers={"Authorization": "Bearer s3cret"})
    assert reply.status_code == 422 and "sum to 1" in reply.json()["message"]


def test_generation_past_its_timeout_is_stopped(worker):
    with pytest.raises(GenerationTimeoutError, match="timeout"):
        RemoteGenerator(worker, "s3cret", timeout=1e-4).generate(prompt_only_plan("x"), FAST)
    # the worker is free again afterwards
    assert RemoteGenerator(worker, "s3cret").health(refresh=True)["queue"] == 0


def test_out_of_gpu_memory_is_reported_not_a_crash(generator, monkeypatch):
    def exhausted(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(generator, "_decode", exhausted)
    with serving(create_app(generator)) as url:
        with pytest.raises(OutOfGPUMemoryError, match="out of GPU memory"):
            RemoteGenerator(url).generate(prompt_only_plan("x"), FAST)
        assert RemoteGenerator(url).health()["queue"] == 0


def test_unreachable_worker_fails_fast():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(WorkerUnreachableError, match="rdm worker"):
        RemoteGenerator(f"http://127.0.0.1:{closed_port}").generate(prompt_only_plan("x"), FAST)
    assert time.monotonic() - started < 10


def test_a_worker_that_never_answers_does_not_hang_the_client():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(GenerationTimeoutError, match="did not answer"):
            RemoteGenerator(url, timeout=0.5).health()


def test_worker_command_without_weights_says_how_to_get_them(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rdm.cli import app

    monkeypatch.setenv("RDM_PRIOR_ID", str(tmp_path / "kandinsky-2-2-prior"))
    result = CliRunner().invoke(app, ["worker", "--backend", "local", "--port", "0"])
    assert result.exit_code == 1
    assert "weights for" in result.output and "set HF_HOME / point to a local folder" in result.output
