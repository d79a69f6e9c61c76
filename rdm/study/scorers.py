"""Scorers that judge a study's images, each with a model of its own (never the retrieval encoder unless
asked): CLIP score and VQAScore, plus reference fidelity and diversity from a CLIP scorer's embeddings.

Named like ``clip`` / ``clip:MODEL/PRETRAINED`` (open_clip) and ``vqa`` / ``vqa:HF_ID`` (transformers BLIP
VQA); ``clip:tiny`` and ``vqa:tiny`` are the same classes at toy size with random weights, built from
config, for tests. Real weights load from the usual caches (``HF_HOME``); missing ones raise
``WeightsMissing`` with what to do.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
from PIL import Image

from rdm.encoders import load_encoder, pick_device, tiny_encoder
from rdm.errors import BadRequestError, WeightsMissing

DEFAULT_CLIP = "ViT-L-14/openai"  # larger than the DB's ViT-B-32: a judge that did not choose the references
DEFAULT_VQA = "Salesforce/blip-vqa-base"
VQA_QUESTION = 'Does this figure show "{}"? Please answer yes or no.'  # Lin et al. 2024, VQAScore
SCORE_DIGITS = 4


@dataclass(frozen=True)
class ImageScores:
    """One image's scores: against the full prompt and against each requirement, in order."""

    prompt: float
    requirements: tuple[float, ...]


class Scorer(Protocol):
    name: str

    def score(self, images: Sequence[Image.Image], prompt: str,
              requirements: Sequence[str]) -> list[ImageScores]: ...


class ClipScorer:
    """CLIP score: the cosine between each image and each text (prompt, requirements)."""

    def __init__(self, spec: str = DEFAULT_CLIP, device: str = "auto"):
        self.name = f"clip:{spec}"
        # the tiny judge has weights of its own, apart from the tiny DB encoder that chose the references
        self.encoder = tiny_encoder(seed=1) if spec == "tiny" else load_encoder(f"open_clip:{spec}", device)

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.asarray(self.encoder.encode_images(list(images)), np.float32)

    def score(self, images: Sequence[Image.Image], prompt: str,
              requirements: Sequence[str]) -> list[ImageScores]:
        texts = np.asarray(self.encoder.encode_texts([prompt, *requirements]), np.float32)
        sims = np.round(self.embed(images) @ texts.T, SCORE_DIGITS)
        return [ImageScores(float(row[0]), tuple(float(v) for v in row[1:])) for row in sims]


class VqaScorer:
    """VQAScore: the probability that a VQA model answers "yes" to whether the image shows the text.

    The answer's first token is read off BLIP's text decoder after the question has attended to the
    image (the path ``BlipForQuestionAnswering.generate`` takes), so the score is P("yes") rather
    than a sampled word.
    """

    def __init__(self, model, processor, name: str, device: str):
        self.model, self.processor, self.name, self.device = model.eval(), processor, name, device
        tokenizer = processor.tokenizer
        self.yes_id = tokenizer.convert_tokens_to_ids("yes")
        if self.yes_id == tokenizer.unk_token_id:
            raise BadRequestError(f"the VQA model {name} has no 'yes' token: pick a BLIP VQA model")
        self.start_id = model.config.text_config.bos_token_id
        self.max_tokens = model.config.text_config.max_position_embeddings  # a long ad prompt is cut, not an error

    @torch.no_grad()
    def yes_probability(self, images: Sequence[Image.Image], texts: Sequence[str]) -> np.ndarray:
        """(images, texts) probabilities of "yes"."""
        questions = [VQA_QUESTION.format(t) for t in texts]
        out = np.zeros((len(images), len(texts)), np.float32)
        for i, image in enumerate(images):
            batch = self.processor(images=[image.convert("RGB")] * len(questions), text=questions,
                                   return_tensors="pt", padding=True, truncation=True,
                                   max_length=self.max_tokens).to(self.device)
            pixels = batch["pixel_values"].to(self.model.dtype)
            seen = self.model.vision_model(pixel_values=pixels).last_hidden_state
            seen_mask = torch.ones(seen.shape[:-1], dtype=torch.long, device=self.device)
            asked = self.model.text_encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                            encoder_hidden_states=seen, encoder_attention_mask=seen_mask)[0]
            start = torch.full((len(questions), 1), self.start_id, dtype=torch.long, device=self.device)
            logits = self.model.text_decoder(input_ids=start, encoder_hidden_states=asked,
                                             encoder_attention_mask=batch["attention_mask"]).logits[:, 0, :]
            out[i] = torch.softmax(logits.float(), dim=-1)[:, self.yes_id].cpu().numpy()
        return out

    def score(self, images: Sequence[Image.Image], prompt: str,
              requirements: Sequence[str]) -> list[ImageScores]:
        probs = np.round(self.yes_probability(images, [prompt, *requirements]), SCORE_DIGITS)
        return [ImageScores(float(row[0]), tuple(float(v) for v in row[1:])) for row in probs]


def load_vqa(model_id: str = DEFAULT_VQA, device: str = "auto") -> VqaScorer:
    from transformers import BlipForQuestionAnswering, BlipProcessor

    if model_id == "tiny":
        return tiny_vqa()
    device = pick_device(device)
    try:
        processor = BlipProcessor.from_pretrained(model_id)
        model = BlipForQuestionAnswering.from_pretrained(
            model_id, dtype=torch.float16 if device.startswith("cuda") else torch.float32).to(device)
    except (OSError, ValueError) as exc:
        raise WeightsMissing(
            f"weights for the VQA scorer {model_id} not found ({type(exc).__name__}: {str(exc)[:200]}): run with "
            "internet once to fill the Hugging Face cache, set HF_HOME to a cache that has it, pass a local "
            "folder (--scorer vqa:/path/to/blip-vqa), or score with clip only") from exc
    return VqaScorer(model, processor, name=f"vqa:{model_id}", device=device)


# the question's words and a few answers; anything else is [UNK] to the tiny model, which is noise anyway
TINY_WORDS = ("does this figure show please answer yes or no a an the of on in with and dog cat toy bed bowl food "
              "collar leash sofa product photo ad").split()


def tiny_vqa() -> VqaScorer:
    """BLIP VQA at toy size: the real classes (processor, tokenizer, model) with seeded random weights."""
    from transformers import (BertTokenizer, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor,
                              BlipProcessor)

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *TINY_WORDS, '"', "?", ".", ","]
    folder = Path(tempfile.mkdtemp(prefix="rdm-tiny-vqa-"))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    config = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, encoder_hidden_size=32, max_position_embeddings=128,
                         bos_token_id=vocab.index("[DEC]"), pad_token_id=0, sep_token_id=vocab.index("[SEP]")))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BlipForQuestionAnswering(config)
        for p in model.parameters():  # BLIP's own init (std 0.02) answers every question alike at this size
            torch.nn.init.normal_(p, std=0.5)
    return VqaScorer(model, processor, name="vqa:tiny", device="cpu")


def make_scorer(spec: str, device: str = "auto") -> Scorer:
    """``clip``, ``clip:MODEL/PRETRAINED``, ``clip:tiny``, ``vqa``, ``vqa:HF_ID_OR_FOLDER`` or ``vqa:tiny``."""
    kind, _, model = spec.partition(":")
    if kind == "clip":
        return ClipScorer(model or DEFAULT_CLIP, device)
    if kind == "vqa":
        return load_vqa(model or DEFAULT_VQA, device)
    raise BadRequestError(f"unknown scorer {spec!r}: use clip[:MODEL/PRETRAINED|tiny] or vqa[:HF_ID|tiny]")
