"""Generation with the tiny random-weight Kandinsky 2.2 (same classes and code paths as real weights)."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from rdm.generate import (BadRequestError, GenerationSettings, KandinskyGenerator, MissingImageError,
                          WeightsMissing, image_key, make_generator, resolve_images)
from rdm.plan import ConditioningPlan, PlanError, PlanItem, prompt_only_plan
from rdm.generate.product import ProductPlacement, place_product, product_lock
from rdm.settings import load_settings
from rdm.db import StoreError
from rdm.generate.tiny import ensure_tiny_kandinsky

FAST = dict(steps=3, prior_steps=2, size=(64, 64))


def fast(**overrides) -> GenerationSettings:
    return GenerationSettings(**{**FAST, **overrides})


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
    first = generator.generate(plan, fast(seed=3, n_images=2), images=rich_images())
    again = generator.generate(plan, fast(seed=3, n_images=2), images=rich_images())
    other = generator.generate(plan, fast(seed=4, n_images=1), images=rich_images())
    assert [im.size for im in first] == [(64, 64), (64, 64)]
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(first, again))
    assert not np.array_equal(pixels(first[0]), pixels(first[1]))
    assert not np.array_equal(pixels(first[0]), pixels(other[0]))


def test_image_k_of_a_batch_is_reproduced_alone_with_seed_plus_k(generator):
    plan = prompt_only_plan("a dog collar on a cushion")
    batch = generator.generate(plan, fast(seed=10, n_images=3))
    alone = generator.generate(plan, fast(seed=12, n_images=1))
    # identical up to float rounding between batch sizes
    assert np.abs(pixels(batch[2]) - pixels(alone[0])).max() <= 2


def test_all_text_items_go_through_the_prior_in_one_call(generator, monkeypatch):
    counting = CountingPrior(generator.prior)
    monkeypatch.setattr(generator, "prior", counting)
    generator.generate(rich_plan(), fast(negative_prompt="blurry, watermark"), images=rich_images())
    assert len(counting.calls) == 1
    assert counting.calls[0] == [i.text for i in rich_plan().text_items] + ["blurry, watermark"]


def test_an_image_only_plan_needs_no_prior_run(generator, monkeypatch):
    counting = CountingPrior(generator.prior)
    monkeypatch.setattr(generator, "prior", counting)
    plan = ConditioningPlan(prompt="collar", mode="none", items=(
        PlanItem(kind="image", weight=1.0, source="input", path="/ads/collar.png"),))
    images = generator.generate(plan, fast(), images={"file:/ads/collar.png": photo((20, 30, 120))})
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
    generator.generate(plan, fast(), images={"db:1": red, "file:blue.png": blue})

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
        generator.generate(forged, fast())


def test_missing_reference_image_is_named(generator):
    images = rich_images()
    del images["db:9"]
    with pytest.raises(MissingImageError, match="db:9"):
        generator.generate(rich_plan(), fast(), images=images)


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
    settings = GenerationSettings(seed=1, steps=4, strength=0.5, prior_steps=2, size=(64, 64))
    from_red = generator.generate(plan, settings, init_image=photo((230, 20, 20), (64, 64)))
    from_red_again = generator.generate(plan, settings, init_image=photo((230, 20, 20), (64, 64)))
    from_blue = generator.generate(plan, settings, init_image=photo((20, 20, 230), (64, 64)))
    assert np.array_equal(pixels(from_red[0]), pixels(from_red_again[0]))
    assert not np.array_equal(pixels(from_red[0]), pixels(from_blue[0]))
    with pytest.raises(BadRequestError, match="no denoising step"):
        generator.generate(plan, GenerationSettings(steps=2, strength=0.3, size=(64, 64)), init_image=photo((1, 1, 1)))


def test_progress_reports_prior_and_decoder_steps(generator):
    events = []
    generator.generate(prompt_only_plan("x"), fast(), progress=lambda *e: events.append(e))
    assert events == [("prior", 1, 2), ("prior", 2, 2), ("decoder", 1, 3), ("decoder", 2, 3), ("decoder", 3, 3)]


def test_bad_settings_are_refused_with_the_fix(generator):
    with pytest.raises(BadRequestError, match="multiples of 64"):
        generator.generate(prompt_only_plan("x"), GenerationSettings(size=(100, 64), steps=2))


def test_tiny_output_is_labelled_as_test_model(generator):
    assert generator.info.test_model is True
    assert generator.info.device == "cpu" and generator.info.dtype == "float32"


def test_missing_weights_give_an_actionable_error(tmp_path):
    with pytest.raises(WeightsMissing, match="run with internet once, or set HF_HOME"):
        KandinskyGenerator(str(tmp_path / "no-prior"), str(tmp_path / "no-decoder"))
    with pytest.raises(WeightsMissing, match="weights for rdm-test/absent-prior not found"):
        make_generator(load_settings(prior_id="rdm-test/absent-prior"), "local")


# --- product lock: the product stays pixel-identical, the decoder generates around it ---


def product_png(size=(32, 32), colour=(200, 30, 40)):
    """An RGBA product: an opaque ellipse with a soft (semi-transparent) rim on a transparent background."""
    yy, xx = np.mgrid[:size[1], :size[0]]
    r = np.hypot((xx - (size[0] - 1) / 2) / (size[0] / 2), (yy - (size[1] - 1) / 2) / (size[1] / 2))
    alpha = np.clip((1.0 - r) * 8 * 255, 0, 255).astype(np.uint8)
    rgba = np.dstack([np.full(alpha.shape, c, np.uint8) for c in colour] + [alpha])
    rgba[..., 0] = (xx * 7 % 256).astype(np.uint8)  # texture, so a redraw could not match by chance
    return Image.fromarray(rgba, mode="RGBA")


CENTRE = ProductPlacement(scale=0.5, x=0.5, y=0.5)  # 32 px product on a 64 px canvas: no resampling


def opaque_pixels_match(output, product, box):
    alpha = np.asarray(product.getchannel("A"))
    region = np.asarray(output)[box[1]:box[3], box[0]:box[2]]
    return np.array_equal(region[alpha == 255], np.asarray(product.convert("RGB"))[alpha == 255])


def test_every_opaque_product_pixel_is_exactly_the_input(generator):
    product = product_png()
    out = generator.generate(rich_plan(), fast(seed=5, n_images=2), images=rich_images(),
                           product=product_lock(product, placement=CENTRE))
    assert [im.size for im in out] == [(64, 64), (64, 64)]
    assert all(opaque_pixels_match(im, product, (16, 16, 48, 48)) for im in out)
    # semi-transparent rim pixels are blended: between the product and what was generated there
    rim = (np.asarray(product.getchannel("A")) > 0) & (np.asarray(product.getchannel("A")) < 255)
    assert rim.any()


def test_a_scaled_product_keeps_the_placed_pixels(generator):
    product = product_png((40, 24))
    placement = ProductPlacement(scale=0.75, x=0.4, y=0.6)
    out = generator.generate(prompt_only_plan("a collar"), fast(), product=product_lock(product, placement=placement))
    placed = place_product(product_lock(product, placement=placement), (64, 64))
    layer = np.asarray(placed.layer)
    opaque = layer[..., 3] == 255
    assert placed.box == (2, 24, 50, 53)  # 48 px wide (0.75 x 64), centred at (25.6, 38.4)
    assert np.array_equal(np.asarray(out[0])[opaque], layer[..., :3][opaque])


def test_the_area_around_the_product_is_generated_and_reproducible(generator):
    kwargs = dict(images=rich_images(), product=product_lock(product_png(), placement=CENTRE))
    first = generator.generate(rich_plan(), fast(seed=2), **kwargs)[0]
    again = generator.generate(rich_plan(), fast(seed=2), **kwargs)[0]
    other = generator.generate(rich_plan(), fast(seed=3), **kwargs)[0]
    assert np.array_equal(pixels(first), pixels(again))
    outside = np.ones((64, 64), bool)
    outside[16:48, 16:48] = False
    blank = np.full((64, 64, 3), 127)
    assert np.abs(pixels(first)[outside] - blank[outside]).mean() > 5  # not the blank canvas
    assert not np.array_equal(pixels(first)[outside], pixels(other)[outside])


def test_the_inpaint_decoder_gets_the_blend_and_a_mask_that_keeps_the_product(generator, monkeypatch):
    from diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_inpainting import prepare_mask_and_masked_image

    calls = []
    real = generator.inpaint

    class Spy:
        unet = real.unet

        def __call__(self, **kwargs):
            calls.append(kwargs)
            return real(**kwargs)

    monkeypatch.setattr(KandinskyGenerator, "inpaint", property(lambda self: Spy()))
    generator.generate(prompt_only_plan("a collar"), fast(n_images=2), product=product_lock(product_png(), placement=CENTRE))
    (call,) = calls
    assert len(call["image"]) == len(call["mask_image"]) == 2 and call["image_embeds"].shape[0] == 2
    mask = np.asarray(call["mask_image"][0])
    alpha = np.asarray(product_png().getchannel("A"))
    assert (mask[16:48, 16:48][alpha == 255] == 0).all()  # diffusers >= 0.19: black = keep
    assert mask[:16].min() == 255 and mask[48:].min() == 255  # white = repaint
    # the installed pipeline turns that into 1 = keep for the product region
    keep, _ = prepare_mask_and_masked_image(call["image"][:1], call["mask_image"][:1], 64, 64)
    assert keep[0, 0, 32, 32] == 1 and keep[0, 0, 2, 2] == 0


@pytest.mark.parametrize("product, mask, placement, message", [
    (Image.new("RGB", (32, 32), "red"), None, CENTRE, "no transparent background: upload a PNG with transparency"),
    (Image.new("RGBA", (32, 32), (9, 9, 9, 255)), None, CENTRE, "no transparent background"),
    (Image.new("RGBA", (32, 32), (9, 9, 9, 0)), None, CENTRE, "empty"),
    (Image.new("RGB", (32, 32), "red"), Image.new("L", (16, 32), 255), CENTRE, "use a mask of the photo's exact size"),
    (Image.new("RGB", (32, 32), "red"), Image.new("L", (32, 32), 0), CENTRE, "mask is empty"),
    (product_png(), None, ProductPlacement(scale=0.5, x=0.9, y=0.5), "sticks out of the 64x64 canvas by 10px on "
                                                                     "the right"),
    (Image.new("RGB", (32, 32), "red"), Image.new("L", (32, 32), 255), ProductPlacement(1.0, 0.5, 0.5),
     "covers 100% of the 64x64 canvas"),
])
def test_unusable_products_are_refused_with_the_fix(generator, product, mask, placement, message):
    with pytest.raises(BadRequestError, match=message):
        generator.generate(prompt_only_plan("x"), fast(), product=product_lock(product, mask, placement))


def test_a_photo_with_a_mask_is_locked_like_a_transparent_png(generator):
    rgba = product_png()
    via_mask = generator.generate(prompt_only_plan("x"), fast(),
                                product=product_lock(rgba.convert("RGB"), rgba.getchannel("A"), CENTRE))
    via_alpha = generator.generate(prompt_only_plan("x"), fast(), product=product_lock(rgba, placement=CENTRE))
    assert np.array_equal(pixels(via_mask[0]), pixels(via_alpha[0]))


def test_a_variation_and_a_product_lock_cannot_be_combined(generator):
    with pytest.raises(BadRequestError, match="cannot be combined"):
        generator.generate(prompt_only_plan("x"), fast(), init_image=photo((1, 1, 1), (64, 64)),
                         product=product_lock(product_png(), placement=CENTRE))


def test_missing_inpaint_weights_are_reported_on_first_product_use(tmp_path):
    tiny = ensure_tiny_kandinsky()
    gen = KandinskyGenerator(str(tiny.prior), str(tiny.decoder), inpaint_decoder_id=str(tmp_path / "no-inpaint"))
    assert len(gen.generate(prompt_only_plan("x"), fast())) == 1  # plain generation never loads it
    with pytest.raises(WeightsMissing, match="no-inpaint not found.*run with internet once"):
        gen.generate(prompt_only_plan("x"), fast(), product=product_lock(product_png(), placement=CENTRE))


def test_the_inpaint_decoder_id_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("RDM_INPAINT_DECODER_ID", "/models/k22-inpaint")
    assert load_settings().inpaint_decoder_id == "/models/k22-inpaint"
    monkeypatch.delenv("RDM_INPAINT_DECODER_ID")
    assert load_settings().inpaint_decoder_id == "kandinsky-community/kandinsky-2-2-decoder-inpaint"
