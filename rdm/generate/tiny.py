"""A tiny Kandinsky 2.2 (prior + decoder + inpainting decoder) with random weights: the CPU test backend.

It is built from config objects, saved with ``save_pretrained`` and loaded back with
``from_pretrained`` — the same path the real weights take — so tests exercise the real classes.
Its images are noise; everything it produces is labelled as test-model output (see
``TEST_MODEL_MARKER``). It is never the default backend.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rdm.generate.settings import GenerationSettings

# Bump when the configs below change so stale caches are rebuilt instead of reused.
TINY_VERSION = 4
TEST_MODEL_MARKER = "rdm-test-model.json"
EMBED_DIM = 32  # stands in for the real prior's 1280-d CLIP ViT-bigG/14 embedding
# A few steps at a small size run the whole code path in seconds on a CPU (its output is noise anyway).
TEST_MODEL_SETTINGS = GenerationSettings(steps=4, prior_steps=2, size=(128, 128))


@dataclass(frozen=True)
class TinyKandinsky:
    prior: Path
    decoder: Path
    inpaint: Path  # the inpainting decoder (product lock)

    def folders(self) -> tuple[Path, ...]:
        return (self.prior, self.decoder, self.inpaint)


def default_tiny_dir() -> Path:
    """Where the tiny model is cached: env RDM_TINY_DIR, else ~/.cache/rdm/tiny-kandinsky-vN."""
    override = os.environ.get("RDM_TINY_DIR", "").strip()
    if override:
        return Path(override)
    return Path.home() / ".cache" / "rdm" / f"tiny-kandinsky-v{TINY_VERSION}"


def is_test_model(folder: str | Path) -> bool:
    """True for a local model folder that this module built (random weights)."""
    return (Path(folder) / TEST_MODEL_MARKER).is_file()


def ensure_tiny_kandinsky(folder: str | Path | None = None) -> TinyKandinsky:
    """Return the tiny model's folders, building and saving it first if it is not cached."""
    root = Path(folder) if folder is not None else default_tiny_dir()
    paths = TinyKandinsky(prior=root / "prior", decoder=root / "decoder", inpaint=root / "inpaint")
    if all(is_test_model(p) for p in paths.folders()):
        return paths
    root.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so a half-written model is never picked up; if another
    # process won the race, its complete copy is used and ours is discarded.
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        _save_tiny(staging)
        try:
            os.replace(staging, root)
        except OSError:
            if not all(is_test_model(p) for p in paths.folders()):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return paths


def _save_tiny(root: Path) -> None:
    prior, decoder = build_tiny_pipelines()
    inpaint = build_tiny_inpaint(decoder)
    marker = json.dumps({"test_model": True, "tiny_version": TINY_VERSION,
                         "description": "tiny Kandinsky 2.2 with random weights (RDM Studio test backend)"})
    for name, pipe in (("prior", prior), ("decoder", decoder), ("inpaint", inpaint)):
        pipe.save_pretrained(root / name)
        (root / name / TEST_MODEL_MARKER).write_text(marker, encoding="utf-8")


def build_tiny_pipelines(seed: int = 0):
    """Build (prior pipeline, decoder pipeline) in memory with seeded random weights."""
    import torch
    from diffusers import (DDPMScheduler, KandinskyV22Pipeline, KandinskyV22PriorPipeline,
                           PriorTransformer, UnCLIPScheduler, VQModel)
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModelWithProjection,
                              CLIPVisionConfig, CLIPVisionModelWithProjection)

    torch.manual_seed(seed)
    tokenizer = _tiny_tokenizer()
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=EMBED_DIM, projection_dim=EMBED_DIM,
        intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, max_position_embeddings=tokenizer.model_max_length))
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=EMBED_DIM, projection_dim=EMBED_DIM, image_size=64, patch_size=16,
        intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, num_channels=3))
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}, do_resize=True,
        do_center_crop=True, do_normalize=True, resample=3,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
    prior_model = PriorTransformer(num_attention_heads=2, attention_head_dim=12, embedding_dim=EMBED_DIM,
                                   num_layers=1, num_embeddings=tokenizer.model_max_length)
    # Random init leaves clip_std at zero, which makes every output embedding vanish.
    prior_model.clip_std = torch.nn.Parameter(torch.ones_like(prior_model.clip_std))
    prior = KandinskyV22PriorPipeline(
        prior=prior_model, image_encoder=image_encoder, text_encoder=text_encoder, tokenizer=tokenizer,
        image_processor=image_processor,
        scheduler=UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample",
                                  num_train_timesteps=1000, clip_sample=True, clip_sample_range=10.0))

    unet = _tiny_unet(in_channels=4)
    # Four blocks give the real MoVQ's 8x spatial factor, so sizes map to latents as in production.
    movq = VQModel(
        in_channels=3, out_channels=3, latent_channels=4, vq_embed_dim=4, num_vq_embeddings=12,
        block_out_channels=[32, 32, 32, 32], layers_per_block=1, norm_num_groups=32, norm_type="spatial",
        down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
        up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3)
    decoder = KandinskyV22Pipeline(
        unet=unet, movq=movq,
        scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085,
                                beta_end=0.012, clip_sample=False, prediction_type="epsilon",
                                steps_offset=1))
    return prior, decoder


def build_tiny_inpaint(decoder, seed: int = 1):
    """The inpainting decoder: same design as the decoder, but its UNet reads 9 channels (4 noisy
    latents + 4 masked-image latents + 1 mask, as KandinskyV22InpaintPipeline concatenates them);
    it shares the decoder's MoVQ, as the real inpaint weights use the same MoVQ."""
    import torch
    from diffusers import DDPMScheduler, KandinskyV22InpaintPipeline

    torch.manual_seed(seed)
    return KandinskyV22InpaintPipeline(unet=_tiny_unet(in_channels=9), movq=decoder.movq,
                                       scheduler=DDPMScheduler.from_config(decoder.scheduler.config))


def _tiny_unet(in_channels: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        in_channels=in_channels, out_channels=8,  # mean and variance, as in the real decoder
        addition_embed_type="image", encoder_hid_dim=EMBED_DIM, encoder_hid_dim_type="image_proj",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(32, 64), layers_per_block=1,
        cross_attention_dim=32, attention_head_dim=4, resnet_time_scale_shift="scale_shift",
        class_embed_type=None)


def _tiny_tokenizer():
    """CLIP's own BPE vocabulary (bundled with open_clip), so prompts tokenize and truncate at 77
    tokens exactly as in the real prior."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as fh:
        merges = [tuple(line.split()) for line in fh.read().split("\n")[1:49152 - 256 - 2 + 1]]  # CLIP's slice
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, model_max_length=77)
