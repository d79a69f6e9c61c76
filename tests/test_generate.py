"""Generation with the tiny random-weight Kandinsky 2.2 (same classes and code paths as real weights)."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from rdm.generate import (BadRequestError, KandinskyGenerator, MissingImageError, WeightsNotFoundError,
                          image_key, make_generator, resolve_images)
from rdm.plan import ConditioningPlan, PlanError, PlanItem, prompt_only_plan
from rdm.settings import load_settings
from rdm.store import StoreError
from rdm.tiny import ensure_tiny_kandinsky

FAST = dict(steps=3, prior_steps=2, size=(64, 64))


@pytest.fixture(scope="module")
def generator():
    tiny = ensure_tiny_kandinsky()
    return KandinskyGenerator(str(tiny.prior), str(tiny.decoder))


def photo(colour, size=(96, 80)):
    return Image.new("RGB", size, colour)


def rich_plan(input_path="/ads/collar.png"):
    """1 summary + 5 sub-queries + 2 references + 1 input photo, as in experiment 3."""
    texts = ["a cute dog in a yellow hoodie on a sofa", "a cute dog wearing a yellow hoodie", "a stylish sofa",
             "a warm and cozy living room", "soft lighting casting gentle shadows", "plush cushions"]
    items = [PlanItem(kind="text", weight=0.1, source="summary" if i == 0 else "subquery", text=t)
             for i, t in enumerate(texts)]
    items += [PlanItem(kind="image", weight=0.1, source="reference", image_id=7, subquery=texts[1], score=0.31),
              PlanItem(kind="image", weight=0.1, source="reference", image_id=9, subquery=texts[2], score=0.28),
              PlanItem(kind="image", weight=0.2, source="input", path=input_path)]
    return ConditioningPlan(prompt=texts[0], items=tuple(items), mode="exp3")


def rich_images():
    return {"db:7": photo((200, 180, 40)), "db:9": photo((90, 60, 30)), "file:/ads/collar.png": photo((20, 30, 120))}


def pixels(image):
    return np.asarray(image, dtype=np.int16)


class CountingPrior:
    """Wraps the prior pipeline and records the prompts of each full prior run."""

    def __init__(self, pipe):
        self.pipe, self.calls = pipe, []

    def __call__(self, prompt, **kwargs):
        self.calls.append(list(prompt))
        return self.pipe(prompt, **kwargs)

    def __getattr__(self, name):
        return getattr(self.pipe, name)


def test_same_seed_gives_identical_images_and_other_seeds_differ(generator):
    plan = rich_plan()
    first = generator.generate(plan, images=rich_images(), seed=3, n_images=2, **FAST)
    again = generator.generate(plan, images=rich_images(), seed=3, n_images=2, **FAST)
    other = generator.generate(plan, images=rich_images(), seed=4, n_images=1, **FAST)
    assert [im.size for im in first] == [(64, 64), (64, 64)]
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(first, again))
    assert not np.array_equal(pixels(first[0]), pixels(first[1]))
    assert not np.array_equal(pixels(first[0]), pixels(other[0]))


def test_image_k_of_a_batch_is_reproduced_alone_with_seed_plus_k(generator):
    plan = prompt_only_plan("a dog collar on a cushion")
    batch = generator.generate(plan, seed=10, n_images=3, **FAST)
    alone = generator.generate(plan, seed=12, n_images=1, **FAST)
    # identical up to float rounding between batch sizes
    assert np.abs(pixels(batch[2]) - pixels(alone[0])).max() <= 2


def test_all_text_items_go_through_the_prior_in_one_call(generator, monkeypatch):
    counting = CountingPrior(generator.prior)
    monkeypatch.setattr(generator, "prior", counting)
    generator.generate(rich_plan(), images=rich_images(), negative_prompt="blurry, watermark", **FAST)
    assert len(counting.calls) == 1
    assert counting.calls[0] == [i.text for i in rich_plan().text_items] + ["blurry, watermark"]


def test_an_image_only_plan_needs_no_prior_run(generator, monkeypatch):
    counting = CountingPrior(generator.prior)
    monkeypatch.setattr(generator, "prior", counting)
    plan = ConditioningPlan(prompt="collar", mode="none", items=(
        PlanItem(kind="image", weight=1.0, source="input", path="/ads/collar.png"),))
    images = generator.generate(plan, images={"file:/ads/collar.png": photo((20, 30, 120))}, **FAST)
    assert counting.calls == [] and len(images) == 1


def test_decoder_gets_the_weighted_sum_of_the_item_embeddings(generator, monkeypatch):
    seen = {}
    real_decode = generator._decode

    def spy(blend, negative, *args):
        seen["blend"], seen["negative"] = blend.clone(), negative.clone()
        return real_decode(blend, negative, *args)

    monkeypatch.setattr(generator, "_decode", spy)
    red, blue = photo((220, 10, 10)), photo((10, 10, 220))
    plan = ConditioningPlan(prompt="p", mode="exp4", items=(
        PlanItem(kind="image", weight=0.25, source="reference", image_id=1),
        PlanItem(kind="image", weight=0.75, source="input", path="blue.png")))
    generator.generate(plan, images={"db:1": red, "file:blue.png": blue}, **FAST)

    encoder, processor = generator.prior.image_encoder, generator.prior.image_processor
    with torch.no_grad():
        embeds = encoder(processor([red, blue], return_tensors="pt").pixel_values).image_embeds
    expected = 0.25 * embeds[0] + 0.75 * embeds[1]
    assert torch.allclose(seen["blend"][0], expected, atol=1e-5)
    assert torch.allclose(seen["negative"], generator.prior.get_zero_embed(1), atol=1e-6)


def test_a_plan_whose_weights_do_not_sum_to_one_is_refused(generator):
    short = (PlanItem(kind="text", weight=0.6, source="prompt", text="x"),)
    with pytest.raises(PlanError, match="sum to 1"):
        dataclasses.replace(prompt_only_plan("x"), items=short)
    forged = prompt_only_plan("x")
    object.__setattr__(forged, "items", short)  # bypass the plan's own check: the generator re-checks
    with pytest.raises(PlanError, match="sum to 1"):
        generator.generate(forged, **FAST)


def test_missing_reference_image_is_named(generator):
    images = rich_images()
    del images["db:9"]
    with pytest.raises(MissingImageError, match="db:9"):
        generator.generate(rich_plan(), images=images, **FAST)


def test_resolve_images_loads_db_references_and_input_files(tmp_path):
    path = tmp_path / "collar.png"
    photo((1, 2, 3)).save(path)
    plan = rich_plan(input_path=str(path))
    opened = []
    images = resolve_images(plan, lambda image_id: opened.append(image_id) or photo((image_id, 0, 0)))
    assert opened == [7, 9]
    assert images[image_key(plan.items[-1])].getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(MissingImageError, match="not found"):
        resolve_images(rich_plan(input_path=str(tmp_path / "nope.png")), lambda i: photo((0, 0, 0)))


def test_a_reference_purged_from_the_db_is_a_missing_image_not_a_crash():
    def purged(image_id):
        raise StoreError(f"no image with id {image_id} in the DB")

    with pytest.raises(MissingImageError, match="reference image #7 cannot be loaded"):
        resolve_images(rich_plan(), purged)


def test_variations_start_from_the_product_photo(generator):
    plan = prompt_only_plan("a dog collar, studio photo")
    kwargs = dict(seed=1, steps=4, strength=0.5, prior_steps=2, size=(64, 64))
    from_red = generator.generate(plan, init_image=photo((230, 20, 20), (64, 64)), **kwargs)
    from_red_again = generator.generate(plan, init_image=photo((230, 20, 20), (64, 64)), **kwargs)
    from_blue = generator.generate(plan, init_image=photo((20, 20, 230), (64, 64)), **kwargs)
    assert np.array_equal(pixels(from_red[0]), pixels(from_red_again[0]))
    assert not np.array_equal(pixels(from_red[0]), pixels(from_blue[0]))
    with pytest.raises(BadRequestError, match="no denoising step"):
        generator.generate(plan, init_image=photo((1, 1, 1)), steps=2, strength=0.3, size=(64, 64))


def test_progress_reports_prior_and_decoder_steps(generator):
    events = []
    generator.generate(prompt_only_plan("x"), progress=lambda *e: events.append(e), **FAST)
    assert events == [("prior", 1, 2), ("prior", 2, 2), ("decoder", 1, 3), ("decoder", 2, 3), ("decoder", 3, 3)]


def test_bad_settings_are_refused_with_the_fix(generator):
    with pytest.raises(BadRequestError, match="multiples of 64"):
        generator.generate(prompt_only_plan("x"), size=(100, 64), steps=2)


def test_tiny_output_is_labelled_as_test_model(generator):
    assert generator.info.test_model is True
    assert generator.info.device == "cpu" and generator.info.dtype == "float32"


def test_missing_weights_give_an_actionable_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="run with internet once, or set HF_HOME"):
        KandinskyGenerator(str(tmp_path / "no-prior"), str(tmp_path / "no-decoder"))
    with pytest.raises(WeightsNotFoundError, match="weights for rdm-test/absent-prior not found"):
        make_generator(load_settings(prior_id="rdm-test/absent-prior"), "local")
