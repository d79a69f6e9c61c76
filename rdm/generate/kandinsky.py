"""Kandinsky 2.2 in this process: prior + decoder (+ img2img sharing the decoder's modules), and the
inpainting decoder for the product lock, loaded on first use."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from PIL import Image

from rdm.errors import OutOfGPUMemoryError, WeightsMissing
from rdm.generate.base import BaseGenerator, Progress, image_key
from rdm.generate.settings import GenerationSettings, GeneratorInfo
from rdm.plan import ConditioningPlan
from rdm.generate.product import PlacedProduct, ProductLock, place_product
from rdm.settings import DEFAULT_INPAINT_DECODER_ID


class KandinskyGenerator(BaseGenerator):
    """Kandinsky 2.2 prior + decoder (+ img2img sharing the decoder's modules), loaded once; the
    inpainting decoder (product lock) is loaded on first use."""

    def __init__(self, prior_id: str, decoder_id: str, device: str = "auto", dtype: str | None = None,
                 inpaint_decoder_id: str = DEFAULT_INPAINT_DECODER_ID) -> None:
        import torch
        from diffusers import KandinskyV22Img2ImgPipeline, KandinskyV22Pipeline, KandinskyV22PriorPipeline

        from rdm.generate.tiny import is_test_model

        # 1. device and precision: fp16 halves GPU memory; CPU kernels need fp32
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = dtype or ("float16" if device.startswith("cuda") else "float32")
        torch_dtype = getattr(torch, dtype)
        # 2. weights: local folder or Hugging Face id (from the local cache when offline)
        self.prior = _load_pipeline(KandinskyV22PriorPipeline, prior_id, torch_dtype).to(device)
        self.decoder = _load_pipeline(KandinskyV22Pipeline, decoder_id, torch_dtype).to(device)
        self.img2img = KandinskyV22Img2ImgPipeline(**self.decoder.components)
        for pipe in (self.prior, self.decoder, self.img2img):
            pipe.set_progress_bar_config(disable=True)
        self.device = device
        self.torch_dtype = torch_dtype
        self._inpaint = None
        self.info = GeneratorInfo(
            backend="local", prior_id=str(prior_id), decoder_id=str(decoder_id), device=device, dtype=dtype,
            test_model=is_test_model(prior_id) or is_test_model(decoder_id),
            gpu_name=torch.cuda.get_device_name(device) if device.startswith("cuda") else None,
            inpaint_decoder_id=str(inpaint_decoder_id), scheduler=type(self.decoder.scheduler).__name__)

    @property
    def inpaint(self):
        """``KandinskyV22InpaintPipeline``, loaded on first use: runs without a product never need it."""
        if self._inpaint is None:
            from diffusers import KandinskyV22InpaintPipeline

            pipe = _load_pipeline(KandinskyV22InpaintPipeline, self.info.inpaint_decoder_id, self.torch_dtype)
            pipe.set_progress_bar_config(disable=True)
            self._inpaint = pipe.to(self.device)
        return self._inpaint

    def _generate(self, plan, settings, images, init_image, product, progress):
        import torch

        try:
            with torch.inference_mode():
                return self._run(plan, settings, images, init_image, product, progress)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise OutOfGPUMemoryError(
                f"out of GPU memory on {self.info.gpu_name} generating {settings.n_images} image(s) at "
                f"{settings.size[0]}x{settings.size[1]}: lower the number of images or the size, or free the GPU"
            ) from exc

    def _run(self, plan: ConditioningPlan, settings: GenerationSettings, images: Mapping[str, Image.Image],
             init_image: Image.Image | None, product: ProductLock | None,
             progress: Progress | None) -> list[Image.Image]:
        import torch

        n = settings.n_images
        # 1. one CPU generator per output image: noise is identical on every device and any n_images
        generators = [torch.Generator("cpu").manual_seed(settings.seed + k) for k in range(n)]
        # 2. all text items (and a negative prompt) through the prior in one batched call
        texts = [item.text for item in plan.text_items]
        prompts = texts + ([settings.negative_prompt] if settings.negative_prompt else [])
        text_embeds = self._prior_embeds(prompts, settings, generators, progress) if prompts else None
        # 3. all distinct pictures through the prior's CLIP image encoder in one forward pass
        keys = list(dict.fromkeys(image_key(i) for i in plan.image_items))
        image_embeds = dict(zip(keys, self._image_embeds([images[key] for key in keys])))
        # 4. the blend: sum(w_i * emb_i), one row per output image (weights already sum to 1)
        dim = self.prior.prior.config.embedding_dim
        blend = torch.zeros(n, dim, dtype=torch.float32, device=self.device)
        for j, item in enumerate(plan.text_items):
            blend += item.weight * text_embeds[j]
        for item in plan.image_items:
            blend += item.weight * image_embeds[image_key(item)]
        negative = (text_embeds[len(texts)] if settings.negative_prompt
                    else self.prior.get_zero_embed(n, device=self.device).float())
        # 5. the decoder (img2img from the photo, or inpainting around the product) turns the blend into pixels
        if product is not None:
            return self._inpaint_around(blend, negative, settings, generators, place_product(product, settings.size),
                                        progress)
        return self._decode(blend, negative, settings, generators, init_image, progress)

    def _prior_embeds(self, prompts: list[str], settings: GenerationSettings, generators: list,
                      progress: Progress | None):
        """Image embeddings shaped (len(prompts), n_images, dim) from a single prior call."""
        n = settings.n_images
        # rows come out prompt-major (repeat_interleave), so row j*n+k draws from image k's generator
        out = self.prior(prompts, num_images_per_prompt=n, num_inference_steps=settings.prior_steps,
                         guidance_scale=settings.prior_guidance, generator=[g for _ in prompts for g in generators],
                         output_type="pt", callback_on_step_end=_step_callback("prior", settings.prior_steps, progress))
        return out.image_embeds.float().reshape(len(prompts), n, -1)

    def _image_embeds(self, pictures: list[Image.Image]):
        if not pictures:
            return []
        encoder = self.prior.image_encoder
        pixels = self.prior.image_processor([p.convert("RGB") for p in pictures], return_tensors="pt").pixel_values
        return encoder(pixels.to(device=self.device, dtype=encoder.dtype)).image_embeds.float()

    def _decode(self, blend, negative, settings: GenerationSettings, generators: list,
                init_image: Image.Image | None, progress: Progress | None) -> list[Image.Image]:
        common = _decoder_args(blend, negative, settings, generators, self.decoder.unet.dtype)
        if init_image is None:
            callback = _step_callback("decoder", settings.steps, progress)
            return list(self.decoder(**common, callback_on_step_end=callback).images)
        # img2img runs only the last `strength` share of the schedule
        callback = _step_callback("decoder", int(settings.steps * settings.strength), progress)
        photo = init_image.convert("RGB")
        return list(self.img2img(**common, image=[photo] * settings.n_images, strength=settings.strength,
                                 callback_on_step_end=callback).images)

    def _inpaint_around(self, blend, negative, settings: GenerationSettings, generators: list,
                        placed: PlacedProduct, progress: Progress | None) -> list[Image.Image]:
        pipe = self.inpaint
        common = _decoder_args(blend, negative, settings, generators, pipe.unet.dtype)
        # one canvas and mask per image: the pipeline concatenates them with the latents batch by batch
        n = settings.n_images
        generated = pipe(**common, image=[placed.canvas] * n, mask_image=[placed.repaint_mask] * n,
                         callback_on_step_end=_step_callback("decoder", settings.steps, progress)).images
        # the decoder only approximates kept pixels (MoVQ round trip): the product's own pixels go back on top
        return [placed.paste_onto(image) for image in generated]


def _decoder_args(blend, negative, settings: GenerationSettings, generators: list, dtype) -> dict:
    """The arguments every Kandinsky 2.2 decoder pipeline takes, from the blend and the settings."""
    width, height = settings.size
    return dict(image_embeds=blend.to(dtype), negative_image_embeds=negative.to(dtype), width=width,
                height=height, num_inference_steps=settings.steps, guidance_scale=settings.guidance,
                generator=generators, output_type="pil")


def _step_callback(stage: str, total: int, progress: Progress | None):
    if progress is None:
        return None

    def callback(pipe, step, timestep, callback_kwargs):
        progress(stage, step + 1, total)
        return callback_kwargs

    return callback


def _load_pipeline(cls, model_id: str | Path, torch_dtype):
    """``cls.from_pretrained`` with an actionable error when the weights are not on this machine."""
    model_id = str(model_id)
    local = Path(model_id).expanduser()
    looks_local = local.exists() or model_id.startswith(("/", ".", "~"))
    hint = "run with internet once, or set HF_HOME / point to a local folder"
    if looks_local and not (local / "model_index.json").is_file():
        raise WeightsMissing(f"weights for {model_id} not found (no model_index.json there): {hint}")
    try:
        return cls.from_pretrained(str(local) if looks_local else model_id, dtype=torch_dtype)
    except OSError as exc:
        raise WeightsMissing(f"weights for {model_id} not found: {hint} ({exc})") from exc

